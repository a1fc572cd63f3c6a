"""Parameters of the mock producer, validated before anything is generated or sent.

The DAG hands user-supplied JSON to :meth:`ProducerParams.from_dict`; every rejection names the field and the
offending value so a bad trigger fails at once with a message a person can act on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

#: Reason codes of the injected malformed records; the compaction's validator uses the same codes.
MALFORMED_KINDS: tuple[str, ...] = (
    "invalid_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "unparseable_timestamp",
    "timestamp_not_utc",
    "unknown_device_id",
    "invalid_countrycode",
    "user_id_out_of_range",
    "empty_string",
    "invalid_utf8",
    "duplicate_field",
)

#: Every ``ProducedRecord.kind``: good records first, then the malformed reason codes.
RECORD_KINDS: tuple[str, ...] = ("valid", "late", "duplicate") + MALFORMED_KINDS

MAX_USERS = 1_000_000
MAX_EVENTS_PER_SECOND = 50_000
#: A simulated user is busy for a session (about 90 s) plus more than 60 s of idle time before the next one,
#: so one user produces at most ~0.05 events/s. The busiest tenth of users is 2.5 times as active as the
#: average, so capping the average at a fifth of that keeps sessions realistic and the rate achievable.
MAX_EVENTS_PER_USER_PER_SECOND = 0.01
MAX_LATE_DELAY_SECONDS = 7 * 24 * 3600
MAX_SEED = 2**63 - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)  # NaN and infinity would poison every comparison below
    )


@dataclass(frozen=True)
class ProducerParams:
    """What to simulate: who (seed, users), how much (events_per_second) and which faults to inject.

    ``events_per_second`` is the average rate of base events over the population; duplicates come on top of
    it, malformed records replace the event they were made from, and late events are sent
    ``late_delay_seconds`` after their client_timestamp instead of at it.
    """

    seed: int = 0
    users: int = 10_000
    events_per_second: float = 20.0
    late_fraction: float = 0.0
    late_delay_seconds: float = 900.0
    duplicate_fraction: float = 0.0
    malformed_fraction: float = 0.0
    malformed_kinds: tuple[str, ...] = MALFORMED_KINDS

    def __post_init__(self) -> None:
        # Lists from JSON become tuples so the params stay hashable (they key the generator's cache).
        if isinstance(self.malformed_kinds, list):
            object.__setattr__(self, "malformed_kinds", tuple(self.malformed_kinds))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ProducerParams:
        """Build and validate params from a mapping (e.g. DAG params); unknown keys are rejected by name."""
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise ValueError(f"producer params must be a mapping of names to values, got {values!r}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in values if k not in known)
        if unknown:
            raise ValueError(
                f"unknown producer parameter(s) {', '.join(repr(k) for k in unknown)}; "
                f"known parameters are {', '.join(known)}"
            )
        kinds = values.get("malformed_kinds", MALFORMED_KINDS)
        if isinstance(kinds, list | tuple):
            kinds = tuple(kinds)
        params = cls(**{**dict(values), "malformed_kinds": kinds})
        return params.validate()

    @classmethod
    def coerce(cls, value: ProducerParams | Mapping[str, Any] | None) -> ProducerParams:
        """Accept params or a mapping, and always return validated params."""
        if isinstance(value, ProducerParams):
            return value.validate()
        return cls.from_dict(value)

    def validate(self) -> ProducerParams:
        """Raise ValueError naming the first bad field and its value; return self so calls can chain."""
        if not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer between 0 and {MAX_SEED}, got {self.seed!r}")
        if not _is_int(self.users) or not 1 <= self.users <= MAX_USERS:
            raise ValueError(f"users must be an integer between 1 and {MAX_USERS}, got {self.users!r}")
        eps = self.events_per_second
        if not _is_number(eps) or not 0 < eps <= MAX_EVENTS_PER_SECOND:
            raise ValueError(
                f"events_per_second must be a number greater than 0 and at most {MAX_EVENTS_PER_SECOND}, "
                f"got {eps!r}"
            )
        for name in ("late_fraction", "duplicate_fraction", "malformed_fraction"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
        delay = self.late_delay_seconds
        if not _is_number(delay) or not 0.001 <= delay <= MAX_LATE_DELAY_SECONDS:
            raise ValueError(
                f"late_delay_seconds must be a number between 0.001 and {MAX_LATE_DELAY_SECONDS}, "
                f"got {delay!r}"
            )
        if self.late_fraction + self.malformed_fraction > 1:
            raise ValueError(
                "late_fraction + malformed_fraction must be at most 1 (an event is late or malformed, not "
                "both), "
                f"got {self.late_fraction!r} + {self.malformed_fraction!r}"
            )
        kinds = self.malformed_kinds
        if not isinstance(kinds, tuple) or not kinds or not all(isinstance(k, str) for k in kinds):
            raise ValueError(
                "malformed_kinds must be a non-empty list of reason codes from "
                f"{', '.join(MALFORMED_KINDS)}, "
                f"got {kinds!r}"
            )
        bad = [k for k in kinds if k not in MALFORMED_KINDS]
        if bad:
            raise ValueError(
                f"malformed_kinds has unknown reason code(s) {', '.join(repr(k) for k in bad)}; "
                f"known codes are {', '.join(MALFORMED_KINDS)}"
            )
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"malformed_kinds lists a reason code more than once: {kinds!r}")
        max_eps = self.users * MAX_EVENTS_PER_USER_PER_SECOND
        if eps > max_eps + 1e-9:
            need = math.ceil(eps / MAX_EVENTS_PER_USER_PER_SECOND)
            raise ValueError(
                f"events_per_second={eps!r} is too high for users={self.users}: a simulated user averages at "
                f"most {MAX_EVENTS_PER_USER_PER_SECOND} events/s, so use users >= {need} or "
                f"events_per_second <= {max_eps:g}"
            )
        return self

    @property
    def late_delay_ms(self) -> int:
        return max(1, round(self.late_delay_seconds * 1000))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for reports and XCom); round-trips through :meth:`from_dict`."""
        out = asdict(self)
        out["malformed_kinds"] = list(self.malformed_kinds)
        return out
