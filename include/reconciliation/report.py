"""The hour's report: counts per cause, totals on both sides, the pass/fail decision and the differences.

``report.json`` is deterministic for the same inputs (no run timestamps), so a rerun publishes the same bytes.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from include.reconciliation.classify import CAUSES, EXPLAINED, RECONCILED_TABLE, UNEXPLAINED
from include.reconciliation.hour_sessions import BatchSessions
from include.reconciliation.options import HourWindow, ReconcileOptions
from include.sessions.contract import iso_ms

_HOUR = timedelta(hours=1)

STATUS_PASSED = "passed"
STATUS_FAILED = "failed"
#: No stream output for the hour (before the stream existed): the batch sessions stand alone, not a failure.
STATUS_BATCH_ONLY = "batch_only"
#: A repair run after a stream outage: the published batch sessions stand in for what the stream missed.
STATUS_REPAIRED = "repaired"


@dataclass
class Report:
    hour: str
    status: str
    passed: bool
    counts: dict[str, int]
    totals: dict[str, Any]
    thresholds: dict[str, Any]
    window: dict[str, str]
    differences: list[dict[str, Any]] = field(default_factory=list)
    #: All differences, also those left out of ``differences`` by the report limit.
    differences_total: int = 0
    #: Set by a repair run (include.reconciliation.repair): previous status and sessions served from batch.
    repair: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"

    def write(self, path: str | os.PathLike) -> Path:
        """Write report.json atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.to_json())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def summary(self) -> str:
        """A few lines for logs and the terminal."""
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items() if v)
        b, s = self.totals["batch"], self.totals["stream"]
        return (
            f"hour {self.hour}: {self.status.upper()} - {counts or 'no sessions'}; match rate "
            f"{self.totals['match_rate']:.4%}; batch {b['sessions']} sessions / {b['events']} events, stream "
            f"{s['sessions']} sessions / {s['events']} events, {s['late_events']} late, "
            f"{s['rejected_records']} rejected; unexplained {self.totals['unexplained_sessions']} sessions / "
            f"{self.totals['unexplained_events']} events"
        )


_DIFF_COLUMNS = (
    "cause, side, user_id, device_id, start_ms, batch_session_id, batch_start_ms, batch_last_ms, batch_events, "
    "stream_sessions, stream_events, stream_desc, ledger_events, rejected_events, added_events, extra_copies"
)
_DIFF_WHERE = "cause NOT IN ('matched', 'deferred') ORDER BY user_id, device_id, start_ms, side"


def _stream_desc(text: str | None) -> list[dict[str, Any]]:
    out = []
    for item in (text or "").split(";"):
        if item:
            session_id, start, last, count = item.split("|")
            out.append(
                {
                    "session_id": session_id,
                    "session_start": start,
                    "last_event_at": last,
                    "event_count": int(count),
                }
            )
    return out


def _difference(row: dict[str, Any]) -> dict[str, Any]:
    batch = None
    if row["batch_session_id"] is not None:
        batch = {
            "session_id": row["batch_session_id"],
            "session_start": iso_ms(row["batch_start_ms"]),
            "last_event_at": iso_ms(row["batch_last_ms"]),
            "event_count": row["batch_events"],
        }
    return {
        "user_id": row["user_id"],
        "device_id": row["device_id"],
        "session_start": iso_ms(row["start_ms"]),
        "cause": row["cause"],
        "batch": batch,
        "stream": _stream_desc(row["stream_desc"]),
        "evidence": {
            "late_ledger_events": int(row["ledger_events"]),
            "stream_rejected_events": int(row["rejected_events"]),
            "quarantined_events_stream_accepted": int(row["added_events"]),
            "extra_raw_copies": int(row["extra_copies"]),
        },
    }


def differences_table(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every difference (rows neither matched nor deferred), one row each; timestamps as the wire format."""
    return con.sql(
        f"""
        SELECT cause, side, user_id, device_id,
            strftime(make_timestamp(start_ms * 1000), '%Y-%m-%dT%H:%M:%S.%gZ') AS session_start,
            batch_session_id,
            strftime(make_timestamp(batch_start_ms * 1000), '%Y-%m-%dT%H:%M:%S.%gZ') AS batch_session_start,
            strftime(make_timestamp(batch_last_ms * 1000), '%Y-%m-%dT%H:%M:%S.%gZ') AS batch_last_event_at,
            batch_events AS batch_event_count,
            CAST(stream_sessions AS BIGINT) AS stream_sessions,
            CAST(stream_events AS BIGINT) AS stream_event_count,
            stream_desc AS stream_session_list,
            CAST(ledger_events AS BIGINT) AS late_ledger_events,
            CAST(rejected_events AS BIGINT) AS stream_rejected_events,
            CAST(added_events AS BIGINT) AS quarantined_events_stream_accepted,
            CAST(extra_copies AS BIGINT) AS extra_raw_copies
        FROM {RECONCILED_TABLE}
        WHERE {_DIFF_WHERE}
        """
    ).to_arrow_table()


def write_differences(table: pa.Table, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return path


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    return con.execute(sql).fetchall()[0]


def build_report(
    con: duckdb.DuckDBPyConnection,
    views: dict[str, str],
    batch: BatchSessions,
    window: HourWindow,
    options: ReconcileOptions,
    batch_counts: dict[str, int] | None = None,
) -> Report:
    """Counts, totals and the decision from table ``reconciled`` and the input views."""
    hs, he, gap, horizon = window.hour_start_ms, window.hour_end_ms, window.gap_ms, window.horizon_ms
    counts = dict.fromkeys(CAUSES, 0)
    for cause, n in con.execute(f"SELECT cause, count(*) FROM {RECONCILED_TABLE} GROUP BY cause").fetchall():
        counts[cause] = n
    batch_sessions, batch_events = _one(
        con,
        f"SELECT count(*), coalesce(sum(batch_events), 0) FROM {RECONCILED_TABLE} "
        "WHERE side = 'batch' AND cause <> 'deferred'",
    )
    compared_stream_events = _one(
        con, f"SELECT coalesce(sum(stream_events), 0) FROM {RECONCILED_TABLE} WHERE cause <> 'deferred'"
    )[0]
    deltas = dict(
        con.execute(
            f"SELECT cause, coalesce(sum(abs(coalesce(batch_events, 0) - stream_events)), 0) "
            f"FROM {RECONCILED_TABLE} WHERE cause NOT IN ('matched', 'deferred') GROUP BY cause"
        ).fetchall()
    )
    # The wire format sorts like time, so hour ranges are string comparisons (no parsing).
    h0, h1 = f"'{iso_ms(hs)}'", f"'{iso_ms(he)}'"
    stream_sessions, stream_events, stream_deferred = _one(
        con,
        f"""
        SELECT count(*), coalesce(sum(event_count), 0),
            coalesce(count_if(last_event_at > '{iso_ms(horizon - gap)}'), 0)
        FROM (
            SELECT DISTINCT user_id, device_id, session_start, last_event_at, event_count
            FROM {views["stream_sessions"]}
            WHERE session_start >= {h0} AND session_start < {h1}
        )
        """,
    )
    late_events = _one(
        con,
        f"SELECT count(DISTINCT lower(event_id)) FROM {views['stream_late']} "
        f"WHERE client_timestamp >= {h0} AND client_timestamp < {h1}",
    )[0]
    rejected_records = _one(
        con,
        f"SELECT count(*) FROM {views['stream_rejected']} WHERE arrival_time >= {h0} AND arrival_time < {h1}",
    )[0]
    late_arrivals = _one(
        con, f"SELECT count(*) FROM {views['stream_late']} WHERE arrival_time >= {h0} AND arrival_time < {h1}"
    )[0]
    extra_copies = _one(
        con,
        f"SELECT coalesce(sum(c.copies - 1), 0) FROM {batch.events_table} e "
        f"JOIN (SELECT lower(event_id) AS event_id, max(copies) AS copies FROM {views['raw_copies']} GROUP BY 1) c "
        f"ON c.event_id = e.event_id WHERE e.event_ms >= {hs} AND e.event_ms < {he}",
    )[0]
    hour_events = _one(
        con, f"SELECT count(*) FROM {batch.events_table} WHERE event_ms >= {hs} AND event_ms < {he}"
    )[0]

    unexplained_sessions = sum(counts[c] for c in UNEXPLAINED)
    unexplained_events = int(sum(deltas.get(c, 0) for c in UNEXPLAINED))
    share = options.max_unexplained_share
    passed = unexplained_sessions <= share * batch_sessions and unexplained_events <= share * batch_events
    stream_output = stream_sessions + rejected_records + late_arrivals
    before_stream = options.stream_started_at is not None and options.stream_started_at >= window.hour + _HOUR
    batch_only = before_stream or (options.stream_started_at is None and stream_output == 0)
    if batch_only:
        status, passed = STATUS_BATCH_ONLY, True
        counts = {"batch_only": int(batch_sessions), "deferred": int(batch.deferred)}
        unexplained_sessions = unexplained_events = 0
    else:
        status = STATUS_PASSED if passed else STATUS_FAILED

    totals = {
        "batch": {
            "sessions": int(batch_sessions),
            "events": int(batch_events),
            "deferred_sessions": int(batch.deferred),
            "hour_events": int(hour_events),
            "window_events": int(batch.window_events),
            "extra_raw_copies": int(extra_copies),
            "duplicate_rate": round(extra_copies / (hour_events + extra_copies), 6) if hour_events else 0.0,
            **{k: int(v) for k, v in (batch_counts or {}).items()},
        },
        "stream": {
            "sessions": int(stream_sessions),
            "events": int(stream_events),
            "deferred_sessions": int(stream_deferred),
            "compared_events": int(compared_stream_events),
            "late_events": int(late_events),
            "rejected_records": int(rejected_records),
        },
        "match_rate": round(counts.get("matched", 0) / batch_sessions, 6) if batch_sessions else 0.0,
        "explained_events": {c: int(deltas.get(c, 0)) for c in EXPLAINED},
        "unexplained_sessions": int(unexplained_sessions),
        "unexplained_events": unexplained_events,
    }
    thresholds = {
        "max_unexplained_share": share,
        "max_unexplained_sessions": share * batch_sessions,
        "max_unexplained_events": share * batch_events,
        "settle_minutes": options.settle_minutes,
        "gap_ms": gap,
    }
    rows = []
    total = 0
    if not batch_only:
        total = _one(
            con, f"SELECT count(*) FROM {RECONCILED_TABLE} WHERE cause NOT IN ('matched', 'deferred')"
        )[0]
        limit = options.report_differences_limit
        cursor = con.execute(
            f"SELECT {_DIFF_COLUMNS} FROM {RECONCILED_TABLE} WHERE {_DIFF_WHERE}"
            + (f" LIMIT {int(limit)}" if limit is not None else "")
        )
        names = [d[0] for d in cursor.description]
        rows = [_difference(dict(zip(names, r, strict=True))) for r in cursor.fetchall()]
    return Report(
        hour=iso_ms(hs),
        status=status,
        passed=passed,
        counts=counts,
        totals=totals,
        thresholds=thresholds,
        window=window.describe(),
        differences=rows,
        differences_total=int(total),
    )
