"""Parameters of the mock producer, validated before anything is generated or sent.

The single source of the producer's params: each field declares its default, bounds and description once
(:func:`include.dag_params.param`), the ``clickstream_producer`` DAG's trigger form is generated from them, and
:meth:`ProducerParams.from_dict` enforces the same bounds plus the rules across fields. Every rejection names
the field and the offending value so a bad trigger fails at once with a message a person can act on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from include.dag_params import check_fields, from_mapping, param

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

#: Every ``ProducedRecord.kind``: good records and their copies first, then the malformed reason codes.
RECORD_KINDS: tuple[str, ...] = ("valid", "late", "duplicate", "resent") + MALFORMED_KINDS

MAX_USERS = 1_000_000
MAX_EVENTS_PER_SECOND = 50_000
#: A simulated user is busy for a session (about 90 s) plus more than 60 s of idle time before the next one,
#: so one user produces at most ~0.05 events/s. The busiest tenth of users is 2.5 times as active as the
#: average, so capping the average at a fifth of that keeps sessions realistic and the rate achievable.
MAX_EVENTS_PER_USER_PER_SECOND = 0.01
MAX_LATE_DELAY_SECONDS = 7 * 24 * 3600
MAX_RESEND_DELAY_SECONDS = 7 * 24 * 3600
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class ProducerParams:
    """What to simulate: who (seed, users), how much (events_per_second) and which faults to inject.

    ``events_per_second`` is the average rate of base events over the population; duplicates and resent
    copies come on top of it, malformed records replace the event they were made from, and late events are
    sent ``late_delay_seconds`` after their client_timestamp instead of at it.

    The defaults are what every scheduled run of ``clickstream_producer`` sends (a scheduled run has no conf):
    20 events/s (1,200 per minute, ~72k per event hour: enough for sessions and hourly compaction to be
    meaningful, far below one shard's 1,000 records/s) from 10,000 users, which leaves room to raise the rate
    fivefold in the trigger form before the per-user cap applies. Faults are off; a late event, once enabled,
    is 15 minutes late: past compaction's allowed lateness plus the Firehose buffer, so it exercises the
    late-data path instead of landing just in time. A resent copy, once enabled, follows its original by 15
    minutes: past the stream's dedup horizon (``SessionContract.dedup_horizon_ms``, 10 minutes), which a
    duplicate sent right after its original never is.
    """

    seed: int = param(
        0,
        "Seed of the simulation: the events of an interval are a pure function of (seed, interval).",
        minimum=0,
        maximum=MAX_SEED,
    )
    users: int = param(10_000, "Number of simulated users.", minimum=1, maximum=MAX_USERS)
    events_per_second: float = param(
        20.0,
        f"Average rate of base events; at most {MAX_EVENTS_PER_USER_PER_SECOND} × users.",
        exclusive_minimum=0,
        maximum=MAX_EVENTS_PER_SECOND,
    )
    late_fraction: float = param(
        0.0, "Fraction of events sent late_delay_seconds after their client_timestamp.", minimum=0, maximum=1
    )
    late_delay_seconds: float = param(
        900.0, "How late a late event is sent, in seconds.", minimum=0.001, maximum=MAX_LATE_DELAY_SECONDS
    )
    duplicate_fraction: float = param(
        0.0, "Fraction of events sent a second time (same event_id).", minimum=0, maximum=1
    )
    resend_fraction: float = param(
        0.0,
        "Fraction of events sent again (same event_id) resend_delay_seconds after the original.",
        minimum=0,
        maximum=1,
    )
    resend_delay_seconds: float = param(
        900.0,
        "How long after the original a resent copy is sent, in seconds (the stream forgets an event_id "
        "after its dedup horizon, 600 s).",
        minimum=0.001,
        maximum=MAX_RESEND_DELAY_SECONDS,
    )
    malformed_fraction: float = param(
        0.0,
        "Fraction of events replaced by a malformed record of one of malformed_kinds.",
        minimum=0,
        maximum=1,
    )
    malformed_kinds: tuple[str, ...] = param(
        MALFORMED_KINDS,
        "Reason codes the malformed records are drawn from.",
        items_enum=MALFORMED_KINDS,
        min_items=1,
        unique_items=True,
    )

    def __post_init__(self) -> None:
        # Lists from JSON become tuples so the params stay hashable (they key the generator's cache).
        if isinstance(self.malformed_kinds, list):
            object.__setattr__(self, "malformed_kinds", tuple(self.malformed_kinds))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ProducerParams:
        """Build and validate params from a mapping (e.g. DAG params); unknown keys are rejected by name."""
        return from_mapping(cls, values, "producer").validate()

    @classmethod
    def coerce(cls, value: ProducerParams | Mapping[str, Any] | None) -> ProducerParams:
        """Accept params or a mapping, and always return validated params."""
        if isinstance(value, ProducerParams):
            return value.validate()
        return cls.from_dict(value)

    def validate(self) -> ProducerParams:
        """Raise ValueError naming the first bad field and its value; return self so calls can chain.

        Each field's bounds are its :func:`~include.dag_params.param` declaration (the same the DAG's trigger
        form enforces); the rules across fields follow.
        """
        check_fields(self)
        if self.late_fraction + self.malformed_fraction > 1:
            raise ValueError(
                "late_fraction + malformed_fraction must be at most 1 (an event is late or malformed, not "
                "both), "
                f"got {self.late_fraction!r} + {self.malformed_fraction!r}"
            )
        eps = self.events_per_second
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

    @property
    def resend_delay_ms(self) -> int:
        return max(1, round(self.resend_delay_seconds * 1000))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for reports and XCom); round-trips through :meth:`from_dict`."""
        out = asdict(self)
        out["malformed_kinds"] = list(self.malformed_kinds)
        return out
