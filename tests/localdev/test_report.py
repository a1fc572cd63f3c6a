"""The analytics report from a small real data set in the lake's real layouts (moto S3: the reads are under test).

Events come from the producer, the stream's sessions and metrics from the reference sessionizer (what the Flink
job must write), the compacted Parquet in the compaction's schema and manifest; every chart's numbers are
checked against counts made here independently of the report's code.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.compaction import layout as compaction_layout
from include.compaction.events_table import EVENTS_SCHEMA
from include.config import Settings
from include.producer import ProducerParams, generate
from include.sessions.contract import SessionContract
from localdev.reference import check_records, closed_sessions, metrics, sessionize
from localdev.report import EmptyLakeError, LakeReadError, build_report
from localdev.report.lake import SESSIONS_SCHEMA
from tests.moto_s3 import s3_with_bucket

HOUR = datetime(2026, 11, 27, 10, tzinfo=UTC)
START, END = HOUR + timedelta(minutes=20), HOUR + timedelta(minutes=32)
SETTINGS = Settings()
BUCKET = SETTINGS.bucket
CONTRACT = SessionContract()
REPORT_COUNTS = {
    "matched": 300,
    "late": 2,
    "duplicate": 1,
    "rule_difference": 1,
    "missing_in_stream": 0,
    "missing_in_batch": 0,
    "mismatch": 0,
    "deferred": 17,
}


def _events_table(events) -> pa.Table:
    return pa.table(
        {
            "event_id": [e.event_id for e in events],
            "user_id": [e.user_id for e in events],
            "device_id": [e.device_id for e in events],
            "client_event": [e.client_event for e in events],
            "client_timestamp": [datetime.fromtimestamp(e.event_ms / 1000, UTC) for e in events],
            "countrycode": [e.countrycode for e in events],
        },
        schema=EVENTS_SCHEMA,
    )


def _utf8(*texts: str) -> bool:
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _json_lines(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture(scope="module")
def data():
    """Producer records of 12 minutes -> valid events, the stream's (closed) sessions, all batch sessions."""
    batch = generate(
        ProducerParams(
            users=800, events_per_second=6, seed=11, duplicate_fraction=0.03, malformed_fraction=0.02
        ),
        START,
        END,
    )
    records = [r.data.decode("utf-8", "replace") for r in batch.records]
    checked = check_records(records, CONTRACT, now_ms=int(END.timestamp() * 1000))
    assert len(checked.events) > 2000 and checked.rejected  # a real data set, with rejected records
    # Compaction cannot store what is not UTF-8 (e.g. a lone surrogate escape): it quarantines those events.
    compacted = [e for e in checked.events if _utf8(e.device_id, e.client_event, e.countrycode, e.event_id)]
    return {
        "events": compacted,
        "stream": closed_sessions(checked.events, CONTRACT),
        "batch": sessionize(compacted, CONTRACT),
        "metrics": metrics(checked.events, CONTRACT),
        "rejected": checked.rejected,
    }


def _put(s3, key: str, body: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def _write_lake(s3, data, *, batch_sessions: bool = True, reconciliation: bool = True) -> None:
    part = "dt=2026-11-27/hr=10/"
    stream = SETTINGS.streaming_prefix
    _put(s3, f"{stream}sessions/{part}part-0a1b-0-0", _json_lines(data["stream"][: len(data["stream"]) // 2]))
    _put(s3, f"{stream}sessions/{part}part-0a1b-0-1", _json_lines(data["stream"][len(data["stream"]) // 2 :]))
    # Not committed yet / a marker: a reader must skip both (the bogus row would change every count).
    bogus = dict(data["stream"][0], session_id="in-progress", session_start="2026-11-27T10:59:00.000Z")
    _put(s3, f"{stream}sessions/{part}.part-0a1b-0-2.inprogress.1", _json_lines([bogus]))
    _put(s3, f"{stream}sessions/{part}_SUCCESS", b"")
    _put(s3, f"{stream}metrics/{part}part-77-0-0", _json_lines(data["metrics"]))
    _put(
        s3,
        f"{stream}rejected_events/dt=2026-11-27/hr=10/part-5-0-0",
        _json_lines(
            {"reason": r["reason"], "record": r["record"], "arrival_time": "x"} for r in data["rejected"]
        ),
    )

    data_key = compaction_layout.compacted_hour_prefix(SETTINGS, HOUR) + compaction_layout.DATA_FILE_NAME
    _put(s3, data_key, _parquet(_events_table(data["events"])))
    manifest = {
        "hour": "2026-11-27T10:00:00Z",
        "counts": {
            "written_rows": len(data["events"]),
            "quarantined_by_reason": {"invalid_json": 3, "wrong_type": 2},
        },
        "outputs": {"data_files": [{"key": data_key, "rows": len(data["events"])}], "quarantine_files": []},
    }
    _put(s3, compaction_layout.manifest_key(SETTINGS, HOUR), json.dumps(manifest).encode())
    # A compacted file no manifest points at (a half-published hour): never read.
    _put(s3, compaction_layout.compacted_hour_prefix(SETTINGS, HOUR) + "part-99999.parquet", b"not parquet")

    if batch_sessions:
        table = pa.Table.from_pylist(data["batch"], schema=SESSIONS_SCHEMA)
        _put(s3, f"{SETTINGS.batch_sessions_prefix}{part}part-00000.parquet", _parquet(table))
    if reconciliation:
        report = {
            "hour": "2026-11-27T10:00:00.000Z",
            "status": "passed",
            "passed": True,
            "counts": REPORT_COUNTS,
            "totals": {"match_rate": 0.9868},
        }
        _put(s3, f"{SETTINGS.reconciliation_reports_prefix}{part}report.json", json.dumps(report).encode())


@pytest.fixture
def s3():
    with s3_with_bucket(BUCKET) as client:
        yield client


@pytest.fixture(scope="module")
def full_report(data, tmp_path_factory):
    """The report of the whole lake, its hours left to the default (the hours with data): built once, as the
    rendering of its eight charts is most of these tests' time."""
    out = tmp_path_factory.mktemp("report")
    with s3_with_bucket(BUCKET) as client:
        _write_lake(client, data)
        return build_report(client, BUCKET, SETTINGS, None, out), out


def _per_minute(sessions) -> Counter:
    """Sessions by the minute of session_start, parsed as datetimes (not by the report's string slicing)."""
    starts = [datetime.strptime(s["session_start"], "%Y-%m-%dT%H:%M:%S.%fZ") for s in sessions]
    return Counter(ts.replace(second=0, microsecond=0) for ts in starts)


class _Tables(HTMLParser):
    """The report's data tables, by id, as lists of rows of cell text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self._current: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._current = attrs.get("id", "")
            self.tables[self._current] = []
        elif tag == "tr" and self._current is not None:
            self.tables[self._current].append([])
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "table":
            self._current = None

    def handle_data(self, text):
        if self._current is not None and self.tables[self._current]:
            self.tables[self._current][-1].append(text)


def test_report_charts_hold_the_numbers_the_data_implies(full_report, data):
    files, tmp_path = full_report
    charts = {c.name: c for c in files.analytics.charts}
    assert set(charts) == {
        "sessions_per_minute",
        "session_duration",
        "events_per_session",
        "top_events",
        "countries",
        "devices",
        "metrics_per_minute",
        "reconciliation",
    }

    # Sessions per minute: every minute from the first to the last session start, zeros included.
    stream_minutes, batch_minutes = _per_minute(data["stream"]), _per_minute(data["batch"])
    first, last = min(batch_minutes), max(batch_minutes)
    expected = []
    minute = first
    while minute <= last:
        expected.append((minute.strftime("%Y-%m-%dT%H:%M"), stream_minutes[minute], batch_minutes[minute]))
        minute += timedelta(minutes=1)
    assert charts["sessions_per_minute"].rows == expected
    assert (
        sum(r[1] for r in expected) == len(data["stream"]) < len(data["batch"])
    )  # open sessions: batch only

    durations = charts["session_duration"]
    assert sum(durations.column("stream")) == len(data["stream"])
    assert sum(durations.column("batch")) == len(data["batch"])
    assert durations.rows[0][2] == sum(1 for s in data["batch"] if s["duration_ms"] == 0)
    assert durations.rows[-1][2] == sum(1 for s in data["batch"] if s["duration_ms"] >= 1_800_000)
    per_session = charts["events_per_session"]
    assert per_session.rows[0][1:] == (
        sum(1 for s in data["stream"] if s["event_count"] == 1),
        sum(1 for s in data["batch"] if s["event_count"] == 1),
    )
    assert sum(per_session.column("batch")) == len(data["batch"])

    by_event = Counter(e.client_event for e in data["events"])
    assert charts["top_events"].rows == sorted(by_event.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
    by_country = Counter(e.countrycode for e in data["events"])
    sessions_by_country = Counter(s["countrycode"] for s in data["stream"])
    for country, events, sessions in charts["countries"].rows:
        assert (events, sessions) == (by_country[country], sessions_by_country[country])
    assert charts["countries"].column("events") == sorted(by_country.values(), reverse=True)[:12]
    by_device = Counter(e.device_id for e in data["events"])
    assert {row[0]: row[1] for row in charts["devices"].rows} == dict(by_device)

    # Per-minute metrics: the stream's events per minute (summed over the metric groups) and the batch count.
    metric_rows = charts["metrics_per_minute"]
    stream_per_minute = Counter()
    for row in data["metrics"]:
        stream_per_minute[row["window_start"][:16]] += row["events"]
    events_per_minute = Counter(
        datetime.fromtimestamp(e.event_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M") for e in data["events"]
    )
    assert {r[0]: r[-2] for r in metric_rows.rows} == dict(stream_per_minute)
    assert {r[0]: r[-1] for r in metric_rows.rows} == dict(events_per_minute)

    assert charts["reconciliation"].rows == [
        ("2026-11-27T10", "passed", *REPORT_COUNTS.values(), 0.9868),
    ]
    headline = dict(files.analytics.headline)
    assert headline["compacted events"] == f"{len(data['events']):,}"
    assert headline["rejected by the stream"] == f"{len(data['rejected']):,}"
    assert headline["quarantined by compaction"] == "5: invalid_json 3, wrong_type 2"

    # The files: one PNG per chart, the same bytes embedded in the self-contained HTML, the numbers beneath.
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(f"{n}.png" for n in charts)
    html = files.html.read_text("utf-8")
    parser = _Tables()
    parser.feed(html)
    assert len(parser.images) == len(charts) == 8
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in parser.images}
    assert embedded == {path.read_bytes() for path in files.pngs.values()}
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in embedded)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing fetched from the network
    table = parser.tables["data-sessions_per_minute"]
    assert [tuple(cells) for cells in table[1:]] == [(m, str(s), str(b)) for m, s, b in expected]


def test_report_recomputes_batch_sessions_when_none_are_published(s3, data, tmp_path):
    _write_lake(s3, data, batch_sessions=False, reconciliation=False)
    files = build_report(s3, BUCKET, SETTINGS, [HOUR], tmp_path)
    names = [c.name for c in files.analytics.charts]
    assert "reconciliation" not in names and len(files.pngs) == 7
    batch_minutes = _per_minute(data["batch"])
    rows = files.analytics.chart("sessions_per_minute").rows
    assert {r[0]: r[2] for r in rows if r[2]} == {
        m.strftime("%Y-%m-%dT%H:%M"): n for m, n in batch_minutes.items()
    }
    notes = " ".join(files.analytics.notes)
    assert "recomputed here from the compacted Parquet" in notes and "No reconciliation report" in notes


def test_report_default_hours_are_the_hours_with_data(full_report):
    files, _ = full_report
    assert files.lake.hours == [HOUR]


def test_empty_lake_fails_with_a_clear_message(s3, tmp_path):
    with pytest.raises(
        EmptyLakeError, match=rf"nothing to report: .*s3://{BUCKET}/manifests/compaction/.*make demo"
    ):
        build_report(s3, BUCKET, SETTINGS, None, tmp_path)
    with pytest.raises(EmptyLakeError, match=r"nothing to report for hours 2026-11-27T10"):
        build_report(s3, BUCKET, SETTINGS, [HOUR], tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_missing_bucket_is_named(s3, tmp_path):
    with pytest.raises(LakeReadError, match="bucket 'no-such-lake' does not exist"):
        build_report(s3, "no-such-lake", SETTINGS, None, tmp_path)


def test_a_manifest_pointing_at_a_missing_file_is_named(s3, data, tmp_path):
    _write_lake(s3, data)
    data_key = compaction_layout.compacted_hour_prefix(SETTINGS, HOUR) + compaction_layout.DATA_FILE_NAME
    s3.delete_object(Bucket=BUCKET, Key=data_key)
    with pytest.raises(
        LakeReadError, match=re.escape(f"lists s3://{BUCKET}/{data_key}, which does not exist")
    ):
        build_report(s3, BUCKET, SETTINGS, [HOUR], tmp_path)
