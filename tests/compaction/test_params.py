"""CompactionOptions / CompactionParams: the one source of the compaction's defaults, and that they take effect.

That the DAG's Params equal these declarations (keys, defaults, schemas, help) and that the form and the code
accept the same values is checked for every DAG in tests/dags/test_dag_params.py.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path

import pytest

from include.compaction import CompactionOptions, CompactionParams, compact_hour, read_manifest
from include.dag_params import param_specs
from tests.compaction.helpers import BUCKET, SETTINGS, event, put_raw


def run(s3, hour, now, options=None):
    return compact_hour(s3, BUCKET, hour, settings=SETTINGS, now=now, code_version="t", options=options)


def test_the_dag_params_are_the_options_plus_waiting_and_late_data():
    options = list(param_specs(CompactionOptions))
    params = list(param_specs(CompactionParams))
    assert params[: len(options)] == options
    assert params[len(options) :] == [
        "allowed_lateness_seconds",
        "on_late_data",
        "late_check_hours",
    ]
    assert isinstance(
        CompactionParams(), CompactionOptions
    )  # the DAG's params go to compact_hour as they are


def test_defaults_and_derived_values():
    options = CompactionOptions()
    assert options.max_future_skew == timedelta(minutes=5)
    assert options.duckdb_memory_limit == "256MB"
    assert CompactionOptions(duckdb_memory_limit_mb=1024).duckdb_memory_limit == "1024MB"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("chunk_rows", 0, "chunk_rows must be a positive integer, got 0"),
        ("row_group_rows", True, "row_group_rows must be a positive integer, got True"),
        (
            "max_future_skew_seconds",
            -1,
            "max_future_skew_seconds must be an integer between 0 and 86400, got -1",
        ),
        (
            "duckdb_memory_limit_mb",
            32,
            "duckdb_memory_limit_mb must be an integer between 64 and 65536, got 32",
        ),
        ("duckdb_threads", 1.5, "duckdb_threads must be an integer between 1 and 64, got 1.5"),
        ("local_work_dir", None, "local_work_dir must be a string, got None"),
    ],
)
def test_invalid_options_cannot_be_built(field, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        CompactionOptions(**{field: value})


def test_params_from_a_partial_mapping_take_the_defaults_and_refuse_unknown_keys():
    params = CompactionParams.from_dict({"on_late_data": "alert", "late_check_hours": 2})
    assert params == dataclasses.replace(CompactionParams(), on_late_data="alert", late_check_hours=2)
    assert CompactionParams.from_dict(None) == CompactionParams()
    with pytest.raises(ValueError, match="unknown compaction parameter.*'late_hours'"):
        CompactionParams.from_dict({"late_hours": 2})
    with pytest.raises(ValueError, match="on_late_data must be one of 'recompact', 'alert', got 'ignore'"):
        CompactionParams.from_dict({"on_late_data": "ignore"})


def test_max_future_skew_decides_what_is_in_the_future(s3, hour):
    """A record 30 minutes ahead of the processing time: quarantined with the default 5 min, kept with 1 h."""
    early_now = hour + timedelta(minutes=20)  # processing time 20 min into the hour
    put_raw(s3, hour, [event(hour, offset_ms=50 * 60_000), event(hour, offset_ms=1)])
    strict = run(s3, hour, early_now)
    assert strict.quarantined_by_reason == {"timestamp_in_future": 1}
    lenient = run(s3, hour, early_now, CompactionOptions(max_future_skew_seconds=3600))
    assert (lenient.quarantined, lenient.written_rows) == (0, 2)
    assert read_manifest(s3, BUCKET, hour, settings=SETTINGS)["max_future_skew_seconds"] == 3600.0


def test_local_work_dir_holds_the_working_files_and_is_left_clean(s3, hour, now, tmp_path, monkeypatch):
    from include.compaction import dedup_sort

    seen = []
    real = dedup_sort.dedup_sort_write

    def watching(spill_files, out_path, work_dir, options):
        seen.append((Path(work_dir).parent, [Path(f).parent for f in spill_files]))
        return real(spill_files, out_path, work_dir, options)

    monkeypatch.setattr(dedup_sort, "dedup_sort_write", watching)
    put_raw(s3, hour, [event(hour, offset_ms=i) for i in range(5)])
    result = run(s3, hour, now, CompactionOptions(local_work_dir=str(tmp_path), chunk_rows=2))
    assert result.written_rows == 5
    [(parent, spill_dirs)] = seen
    assert parent == tmp_path and len(spill_dirs) == 3 and {d.parent for d in spill_dirs} == {tmp_path}
    assert list(tmp_path.iterdir()) == []


def test_a_missing_local_work_dir_fails_naming_it(s3, hour, now, tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=f"local_work_dir must be an existing directory, got '{missing}'"):
        run(s3, hour, now, CompactionOptions(local_work_dir=str(missing)))


def test_options_must_be_compaction_options(s3, hour, now):
    with pytest.raises(TypeError, match="options must be a CompactionOptions, got dict"):
        run(s3, hour, now, {"chunk_rows": 5})
