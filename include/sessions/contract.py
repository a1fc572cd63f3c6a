"""The session contract: one typed config that both engines' SQL is rendered from, so they cannot drift.

Flink SQL (streaming, ``include/sql/flink``) and DuckDB SQL (batch, ``include/sql/batch``) are Jinja templates
that read every tunable from :class:`SessionContract`; the rules that reject a malformed event are listed here
once (:data:`REJECT_RULES`) and rendered into both dialects. ``docs/sessions.md`` explains the definitions.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from include.events_schema import CLIENT_EVENT_MAX_LEN

#: The only session key the templates and the session id support (the id hashes exactly these fields).
SESSION_KEY: tuple[str, ...] = ("user_id", "device_id")

#: "First"/"last" event compare (client_timestamp, client_event, event_id). The SQL compares one string,
#: ``client_timestamp || CHR(1) || client_event || CHR(1) || event_id``, which orders the same way because the
#: timestamp has a fixed width and the reject rules refuse control characters in every field, so CHR(1) sorts
#: below any character a field can hold.

#: An event is late when ``client_timestamp < watermark + LATE_MARGIN_MS``. Flink fires a session window when the
#: watermark reaches ``session_end - 1 ms``; since the gap is inclusive, an event at exactly ``session_end``
#: (= watermark + 1 ms) would belong to an already emitted session. Calling it late keeps every emitted
#: session identical to the batch session over the same events, and the event is kept in the late sink.
LATE_MARGIN_MS = 2


@dataclass(frozen=True)
class RejectRule:
    """One reason to reject an event: ``check`` names a predicate each dialect renders for ``field``."""

    field: str
    check: str
    reason: str


#: Checked in this order; the first failing rule is the event's ``reason`` (identical text in both engines).
REJECT_RULES: tuple[RejectRule, ...] = (
    RejectRule("record", "not_json_object", "record is not a JSON object"),
    RejectRule("event_id", "null", "event_id is missing or null"),
    RejectRule("event_id", "bad_string", "event_id is empty or contains a control character"),
    RejectRule("user_id", "null", "user_id is missing or null"),
    RejectRule("user_id", "positive_int", "user_id is not a positive 32-bit integer"),
    RejectRule("device_id", "null", "device_id is missing or null"),
    RejectRule("device_id", "bad_string", "device_id is empty or contains a control character"),
    RejectRule("client_event", "null", "client_event is missing or null"),
    RejectRule("client_event", "bad_string", "client_event is empty or contains a control character"),
    RejectRule("client_event", "too_long", f"client_event is longer than {CLIENT_EVENT_MAX_LEN} characters"),
    RejectRule("client_timestamp", "null", "client_timestamp is missing or null"),
    RejectRule(
        "client_timestamp",
        "bad_timestamp",
        "client_timestamp is not a valid ISO-8601 UTC timestamp like 2026-11-27T10:15:30.123Z",
    ),
    RejectRule(
        "client_timestamp", "future", "client_timestamp is further ahead of the processing time than allowed"
    ),
    RejectRule("countrycode", "null", "countrycode is missing or null"),
    RejectRule("countrycode", "bad_string", "countrycode is empty or contains a control character"),
)


class ContractError(ValueError):
    """A contract value or property is invalid; the message names the field and the value."""


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError(f"{name} must be an integer number of milliseconds, got {value!r}")
    if value <= 0:
        raise ContractError(f"{name} must be positive, got {value!r}")
    return value


@dataclass(frozen=True)
class SessionContract:
    """Every definition shared by the streaming and the batch sessions (durations in milliseconds)."""

    #: Inactivity that ends a session. Inclusive: events exactly ``gap_ms`` apart are in the same session.
    gap_ms: int = 60_000
    #: Bounded out-of-orderness: the watermark trails the largest client_timestamp seen by this much.
    watermark_delay_ms: int = 5_000
    #: Copies of an event_id arriving within this (processing) time of the first copy count once.
    dedup_horizon_ms: int = 600_000
    #: Tumbling window of the per-minute metrics.
    metrics_window_ms: int = 60_000
    #: Events whose client_timestamp is further than this ahead of the processing time are rejected, so
    #: one client with a wrong clock cannot push the watermark into the future and make everything late.
    max_future_skew_ms: int = 300_000
    #: Time zone of every rendered timestamp and of the dt/hr partitions. Only UTC is supported.
    time_zone: str = "UTC"
    session_key: tuple[str, ...] = SESSION_KEY

    def __post_init__(self) -> None:
        for name in (
            "gap_ms",
            "watermark_delay_ms",
            "dedup_horizon_ms",
            "metrics_window_ms",
            "max_future_skew_ms",
        ):
            _positive_int(name, getattr(self, name))
        if self.time_zone != "UTC":
            raise ContractError(
                f"time_zone must be 'UTC' (partitions and timestamps are UTC), got {self.time_zone!r}"
            )
        if tuple(self.session_key) != SESSION_KEY:
            raise ContractError(f"session_key must be {SESSION_KEY!r}, got {self.session_key!r}")
        if self.dedup_horizon_ms < self.watermark_delay_ms:
            raise ContractError(
                f"dedup_horizon_ms ({self.dedup_horizon_ms}) must not be shorter than watermark_delay_ms "
                f"({self.watermark_delay_ms}): a duplicate forgotten before the watermark passes it would count twice"
            )
        if 86_400_000 % self.metrics_window_ms:
            raise ContractError(
                f"metrics_window_ms must divide a day so windows align with hours, got {self.metrics_window_ms}"
            )

    @property
    def late_margin_ms(self) -> int:
        return LATE_MARGIN_MS

    def replace(self, **changes: object) -> SessionContract:
        return dataclasses.replace(self, **changes)

    # -- properties (Managed Flink property group ``contract.config.0``) ---------------------------------------

    _PROPERTY_KEYS = {
        "gap.ms": "gap_ms",
        "watermark.delay.ms": "watermark_delay_ms",
        "dedup.horizon.ms": "dedup_horizon_ms",
        "metrics.window.ms": "metrics_window_ms",
        "max.future.skew.ms": "max_future_skew_ms",
        "time.zone": "time_zone",
    }

    def to_properties(self) -> dict[str, str]:
        """The contract as a string map, the form of a Managed Flink property group."""
        return {key: str(getattr(self, attr)) for key, attr in self._PROPERTY_KEYS.items()}

    @classmethod
    def from_properties(cls, props: Mapping[str, str] | None) -> SessionContract:
        """Defaults overridden by ``props``; unknown keys and non-integers are errors naming key and value."""
        values: dict[str, object] = {}
        for key, raw in (props or {}).items():
            attr = cls._PROPERTY_KEYS.get(key)
            if attr is None:
                raise ContractError(
                    f"unknown contract property {key!r} (value {raw!r}); known: {sorted(cls._PROPERTY_KEYS)}"
                )
            if attr == "time_zone":
                values[attr] = str(raw)
                continue
            try:
                values[attr] = int(str(raw).strip())
            except ValueError:
                raise ContractError(f"contract property {key!r} must be an integer, got {raw!r}") from None
        return cls(**values)


def session_id(user_id: int, device_id: str, session_start_ms: int) -> str:
    """md5 hex of ``"user_id|device_id|session_start_ms"``: the same expression in Flink SQL and DuckDB SQL."""
    return hashlib.md5(f"{user_id}|{device_id}|{session_start_ms}".encode()).hexdigest()


def iso_ms(epoch_ms: int) -> str:
    """Render epoch milliseconds as the wire format (UTC, three fractional digits, trailing Z)."""
    ts = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC).replace(microsecond=(epoch_ms % 1000) * 1000)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


#: Columns of a session row, in output order.
SESSION_FIELDS: tuple[str, ...] = (
    "session_id",
    "user_id",
    "device_id",
    "session_start",
    "last_event_at",
    "session_end",
    "duration_ms",
    "event_count",
    "first_event",
    "last_event",
    "countrycode",
)

#: Columns of a per-minute metrics row.
METRIC_FIELDS: tuple[str, ...] = (
    "window_start",
    "window_end",
    "countrycode",
    "device_id",
    "client_event",
    "events",
    "users",
)

#: Columns of a late-event row (the event, the watermark that made it late, and when it arrived).
LATE_FIELDS: tuple[str, ...] = (
    "event_id",
    "user_id",
    "device_id",
    "client_event",
    "client_timestamp",
    "countrycode",
    "watermark_at",
    "arrival_time",
)

#: Columns of a rejected-event row: the first failing rule, the record exactly as received, arrival time.
REJECTED_FIELDS: tuple[str, ...] = ("reason", "record", "arrival_time")
