"""What a ``clickstream_reconciliation`` run can be told, declared once (defaults, bounds, help) for the code and
the DAG's trigger form (:func:`include.dag_params.airflow_params`). The tunables of the comparison itself
(settle minutes, pass share) are deployment settings (:class:`include.config.Settings`), not per-run params: a
report must mean the same thing whichever run wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from include.dag_params import check_fields, from_mapping, param


@dataclass(frozen=True)
class ReconcileParams:
    """The DAG's params; every instance is valid (checked on construction, errors name the field)."""

    stream_started_at: str = param(
        "",
        "UTC ISO-8601 time the stream started (e.g. 2026-11-24T08:00:00Z). Hours ending at or before it are "
        "reported batch_only and do not wait for the stream. Empty: an hour without any stream output is "
        "batch_only.",
    )
    wait_for_stream: bool = param(
        True,
        "Wait until the stream's progress marker (max window_end of its per-minute metrics) passes the hour's "
        "settle horizon. Turn off only for hours the stream will never reach (it was torn down).",
    )
    repair: bool = param(
        False,
        "Repair run after a stream outage was fixed: the batch sessions stand in for the sessions the stream "
        "missed or got wrong, and the hour is reported 'repaired' (with the previous status and the count) "
        "when nothing else is unexplained.",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        self.stream_started()  # a bad timestamp fails here, naming the field

    def stream_started(self) -> datetime | None:
        if not self.stream_started_at:
            return None
        try:
            value = datetime.fromisoformat(self.stream_started_at.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"stream_started_at must be an ISO-8601 timestamp like 2026-11-24T08:00:00Z, "
                f"got {self.stream_started_at!r}"
            ) from None
        if value.tzinfo is None:
            raise ValueError(f"stream_started_at must carry a time zone (Z), got {self.stream_started_at!r}")
        return value.astimezone(UTC)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ReconcileParams:
        """Params from a mapping (DAG params, ``--conf``); missing keys take their defaults, unknown ones fail."""
        return from_mapping(cls, values, "reconciliation")

    @classmethod
    def coerce(cls, value: ReconcileParams | Mapping[str, Any] | None) -> ReconcileParams:
        return value if isinstance(value, ReconcileParams) else cls.from_dict(value)
