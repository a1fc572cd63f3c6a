"""Strict reading of a local JSON-lines events file for offline sessionizing.

The engines would route a bad record to their rejected output; a person running the CLI on a file wants to
hear about it instead, so every line is checked first and the first problem is an error naming the line, the
field and the value.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from include.events_schema import EVENT_FIELDS
from include.sessions.contract import LATE_MARGIN_MS, SessionContract
from localdev.reference import fields_of, reject_reason, timestamp_ms

_STRING_FIELDS = ("event_id", "device_id", "client_event", "client_timestamp", "countrycode")


class InputError(ValueError):
    """The input file has a bad line; the message names the file, the line, the field and the value."""


@dataclass(frozen=True)
class EventsFile:
    path: Path
    #: Non-blank lines, as read (without the newline), in file order.
    records: list[str]
    #: 1-based line number of each record.
    line_numbers: list[int]
    #: Epoch ms of each record's client_timestamp.
    event_ms: list[int]


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_events_file(
    path: str | os.PathLike, contract: SessionContract, now_ms: int | None = None
) -> EventsFile:
    """Read and check every line; raise InputError at the first bad one."""
    source = Path(path)
    if not source.is_file():
        raise InputError(f"input file {source} does not exist or is not a file")
    records: list[str] = []
    line_numbers: list[int] = []
    event_ms: list[int] = []
    with open(source, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            where = f"{source} line {line_no}"
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise InputError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{where}: not valid JSON ({exc.msg} at column {exc.colno}): {_short(line)}"
                ) from None
            if not isinstance(obj, dict):
                raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__} {_short(obj)}")
            unknown = sorted(set(obj) - set(EVENT_FIELDS))
            if unknown:
                raise InputError(f"{where}: unknown field {unknown[0]} = {_short(obj[unknown[0]])}")
            for name in EVENT_FIELDS:
                if name not in obj:
                    raise InputError(f"{where}: field {name} is missing")
            for name in _STRING_FIELDS:
                if not isinstance(obj[name], str):
                    raise InputError(f"{where}: {name} must be a string, got {_short(obj[name])}")
            user_id = obj["user_id"]
            if isinstance(user_id, bool) or not isinstance(user_id, int):
                raise InputError(f"{where}: user_id must be an integer, got {_short(user_id)}")
            failure = reject_reason(fields_of(obj), contract, now_ms)
            if failure is not None:
                name, reason = failure
                raise InputError(f"{where}: {reason}: {name} = {_short(obj.get(name))}")
            records.append(line)
            line_numbers.append(line_no)
            event_ms.append(timestamp_ms(obj["client_timestamp"]))
    return EventsFile(source, records, line_numbers, event_ms)


def check_time_order(events: EventsFile, contract: SessionContract) -> None:
    """Refuse input the streaming engine would call late: each event must be within the watermark delay
    (less the late margin) of the largest client_timestamp before it."""
    allowed = contract.watermark_delay_ms - LATE_MARGIN_MS
    max_ms, max_line = None, None
    for ms, line_no in zip(events.event_ms, events.line_numbers, strict=True):
        if max_ms is not None and max_ms - ms > allowed:
            raise InputError(
                f"{events.path} line {line_no}: client_timestamp is {max_ms - ms} ms before the one on line "
                f"{max_line}; --engine flink reads the file in order with a {contract.watermark_delay_ms} ms "
                "watermark delay and would call this event late: sort the file by client_timestamp"
            )
        if max_ms is None or ms > max_ms:
            max_ms, max_line = ms, line_no
