"""The stream's three outputs for produced records, from the Python reference (no JVM): what the Flink job writes.

Records are read in send order; dedup keeps the first copy within the horizon (by send time), the watermark is
the largest event time seen minus the delay, an event below watermark + 2 ms is late, the rest are sessionized
(docs/sessions.md: Flink's sessions equal the batch sessions over all events except the late ones).
"""

from __future__ import annotations

from typing import Any

from include.producer.records import ProducedRecord
from include.sessions.contract import LATE_FIELDS, SessionContract, iso_ms
from localdev import reference


def stream_outputs(
    records: list[ProducedRecord], contract: SessionContract
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(sessions, late rows, rejected rows) of a stream that read ``records`` in order and then caught up."""
    first_arrival: dict[str, int] = {}
    max_event_ms: int | None = None
    on_time: list[reference.Event] = []
    late: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for record in records:
        text = record.data.decode("utf-8", errors="replace")
        if not text.strip():
            continue
        fields = reference.extract_fields(text)
        failure = reference.reject_reason(fields, contract, now_ms=record.emit_ms)
        if failure is not None:
            rejected.append({"reason": failure[1], "record": text, "arrival_time": iso_ms(record.emit_ms)})
            continue
        event = reference.to_event(fields)
        seen = first_arrival.get(event.event_id)
        if seen is not None and record.emit_ms - seen <= contract.dedup_horizon_ms:
            continue
        first_arrival[event.event_id] = record.emit_ms
        watermark = None if max_event_ms is None else max_event_ms - contract.watermark_delay_ms
        if watermark is not None and event.event_ms < watermark + contract.late_margin_ms:
            row = {name: fields[name] for name in LATE_FIELDS[:6]}
            row["user_id"] = int(row["user_id"])
            late.append({**row, "watermark_at": iso_ms(watermark), "arrival_time": iso_ms(record.emit_ms)})
        else:
            on_time.append(event)
        max_event_ms = event.event_ms if max_event_ms is None else max(max_event_ms, event.event_ms)
    return reference.sessionize(on_time, contract), late, rejected
