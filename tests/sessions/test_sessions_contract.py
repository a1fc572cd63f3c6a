"""The contract, the template rendering, the job configuration and the CLI's input checks (no JVM).

The application zip and its entry point are tested in tests/flink_app.
"""

from __future__ import annotations

import json
import re

import pytest

from include.flink_app import flink_job
from include.sessions import templates
from include.sessions.contract import ContractError, SessionContract, iso_ms
from localdev import cli
from localdev.event_files import InputError, check_time_order, read_events_file
from tests.sessions.golden import T, event

CONTRACT = SessionContract()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"gap_ms": 0}, "gap_ms must be positive, got 0"),
        ({"gap_ms": 1.5}, "gap_ms must be an integer"),
        ({"time_zone": "Europe/Berlin"}, "time_zone must be 'UTC'"),
        ({"dedup_horizon_ms": 1_000}, "dedup_horizon_ms (1000) must not be shorter than watermark_delay_ms"),
        ({"metrics_window_ms": 7_000}, "metrics_window_ms must divide a day"),
        ({"session_key": ("user_id",)}, "session_key must be"),
    ],
)
def test_contract_rejects_bad_values_naming_them(changes, message):
    with pytest.raises(ContractError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CONTRACT.replace(**changes)


def test_contract_round_trips_through_properties_and_names_bad_ones():
    changed = CONTRACT.replace(gap_ms=30_000, watermark_delay_ms=2_000)
    assert SessionContract.from_properties(changed.to_properties()) == changed
    with pytest.raises(ContractError, match="'gap.ms' must be an integer, got 'soon'"):
        SessionContract.from_properties({"gap.ms": "soon"})
    with pytest.raises(ContractError, match="unknown contract property 'gap'"):
        SessionContract.from_properties({"gap": "1"})


def test_changing_the_gap_changes_both_engines_sql():
    for contract, flink_literal in (
        (CONTRACT, "INTERVAL '60' SECOND(2)"),
        (CONTRACT.replace(gap_ms=90_500), "INTERVAL '90.500' SECOND(2, 3)"),
    ):
        flink_sql = templates.render("flink/inserts.sql", contract)
        batch_sql = templates.render(
            "batch/sessions.sql",
            contract,
            source="raw_events",
            source_kind="raw",
            arrival_order="arrival_order",
        )
        assert f"DESCRIPTOR(rowtime),\n        {flink_literal}))" in flink_sql
        # inclusive gap: a step of exactly gap_ms to the previous / next event stays in the session
        by_key = "OVER (PARTITION BY user_id, device_id ORDER BY event_ms, client_event, event_id)"
        assert f"event_ms - lag(event_ms) {by_key} <= {contract.gap_ms} THEN FALSE" in batch_sql
        assert f"lead(event_ms) {by_key} - event_ms <= {contract.gap_ms} THEN FALSE" in batch_sql
        # the end is the last event plus the gap
        assert re.search(
            rf"make_timestamp\(\(last_ms \+ {contract.gap_ms}\) \* 1000\), [^)]*\) AS session_end", batch_sql
        )


def test_render_names_missing_templates_and_values():
    with pytest.raises(templates.TemplateError, match="no SQL template 'flink/nope.sql'"):
        templates.render("flink/nope", CONTRACT)
    with pytest.raises(templates.TemplateError, match="needs a value that was not given"):
        templates.render("flink/source.sql", CONTRACT)


def test_split_statements_respects_strings_and_comments():
    sql = "SELECT 'a;b' AS x; -- a comment; with a semicolon\nSELECT 'it''s';\n\n-- only a comment\n"
    assert templates.split_statements(sql) == [
        "SELECT 'a;b' AS x",
        "-- a comment; with a semicolon\nSELECT 'it''s'",
    ]


def test_kinesis_job_properties_render_the_aws_connector_and_s3_sinks():
    job = flink_job.job_from_properties(
        {
            "kinesis.analytics.flink.run.options": {"python": "main.py"},
            "consumer.config.0": {
                "stream.arn": "arn:aws:kinesis:eu-west-1:123456789012:stream/clickstream-events",
                "aws.region": "eu-west-1",
            },
            "sink.config.0": {"output.path": "s3://clickstream-lake/flink/"},
            "contract.config.0": {"gap.ms": "120000"},
            "flink.config.0": {"table.exec.source.idle-timeout": "30 s"},
        }
    )
    source = job.ddl[0]
    assert "'connector' = 'kinesis'" in source and "'source.init.position' = 'TRIM_HORIZON'" in source
    assert f"'format' = '{flink_job.SOURCE_FORMAT}'" in source
    assert "'path' = 's3://clickstream-lake/flink/sessions'" in job.script()
    assert "INTERVAL '120' SECOND(3)" in job.script()
    assert job.config["table.exec.state.ttl"] == "600000 ms" and job.config["table.local-time-zone"] == "UTC"
    assert job.config["table.exec.source.idle-timeout"] == "30 s"
    assert len(job.inserts) == 4 and all(s.startswith("INSERT INTO") for s in job.inserts)


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ({"sink.config.0": {"output.path": "/x"}}, "'consumer.config.0' is required"),
        (
            {"consumer.config.0": {"aws.region": "eu-west-1"}, "sink.config.0": {"output.path": "/x"}},
            "stream.arn",
        ),
        (
            {
                "consumer.config.0": {"connector": "filesystem", "path": "/x", "bogus": "1"},
                "sink.config.0": {"output.path": "/x"},
            },
            r"unknown properties \['bogus'\]",
        ),
        (
            {"consumer.config.0": {"connector": "kafka"}, "sink.config.0": {"output.path": "/x"}},
            "got 'kafka'",
        ),
        (
            {"consumer.config.0": {"connector": "filesystem", "path": "/x"}, "sink.config.0": {}},
            "output.path",
        ),
        ({"consumer.config.0": {}, "sink.config.0": {}, "other.config.0": {}}, "unknown property groups"),
        (
            {
                "consumer.config.0": {"connector": "filesystem", "path": "/x"},
                "sink.config.0": {"output.path": "/x"},
                "flink.config.0": {"table.exec.state.ttl": "1 h"},
            },
            "derived from the session contract",
        ),
    ],
)
def test_job_properties_errors_name_group_and_key(groups, message):
    with pytest.raises(flink_job.JobConfigError, match=message):
        flink_job.job_from_properties(groups)


def _write(tmp_path, lines):
    path = tmp_path / "events.jsonl"
    path.write_text("".join(x + "\n" for x in lines))
    return path


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ("[1]", "line 2: expected a JSON object, got list"),
        (json.dumps({**event("x", 1, T), "extra": 1}), "line 2: unknown field extra = 1"),
        (
            json.dumps({k: v for k, v in event("x", 1, T).items() if k != "countrycode"}),
            "field countrycode is missing",
        ),
        (json.dumps({**event("x", 1, T), "user_id": "1"}), "user_id must be an integer, got '1'"),
        (
            json.dumps(event("x", 1, T))[:-1] + ', "user_id": 2}',
            "line 2: field user_id appears more than once .1, then 2",
        ),
        (
            json.dumps({**event("x", 1, T), "device_id": "m\udc00"}),
            "device_id contains an unpaired surrogate escape, which is not valid Unicode",
        ),
        ("\ufeff" + json.dumps(event("x", 1, T)), "line 2: not valid JSON (Unexpected UTF-8 BOM"),
        (
            json.dumps({**event("x", 1, T), "user_id": -4}),
            "user_id is not a positive 32-bit integer: user_id = -4",
        ),
        (
            json.dumps({**event("x", 1, T), "client_timestamp": "2024-03-10 09:00:00"}),
            "client_timestamp is not a valid ISO-8601 UTC timestamp like 2026-11-27T10:15:30.123Z: "
            "client_timestamp = '2024-03-10 09:00:00'",
        ),
    ],
)
def test_cli_input_errors_name_line_field_and_value(tmp_path, bad, message):
    path = _write(tmp_path, [json.dumps(event("ok", 1, T)), bad])
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(")):
        read_events_file(path, CONTRACT)


def test_cli_refuses_unordered_input_for_flink_before_starting_a_jvm(tmp_path, capsys):
    path = _write(tmp_path, [json.dumps(event("a", 1, T + 10_000)), "", json.dumps(event("b", 1, T))])
    check_time_order(read_events_file(path, CONTRACT), CONTRACT.replace(watermark_delay_ms=20_000))  # fine
    with pytest.raises(InputError, match="line 3: client_timestamp is 10000 ms before the one on line 1"):
        check_time_order(read_events_file(path, CONTRACT), CONTRACT)
    out = tmp_path / "sessions.jsonl"
    assert cli.main(["sessionize", "--engine", "flink", "--input", str(path), "--output", str(out)]) == 1
    assert "sort the file by client_timestamp" in capsys.readouterr().err and not out.exists()


def test_cli_duckdb_writes_sorted_sessions(tmp_path):
    path = _write(
        tmp_path,
        [json.dumps(event("b", 2, T)), json.dumps(event("a", 1, T + 5)), json.dumps(event("c", 1, T))],
    )
    out = tmp_path / "s.jsonl"
    assert cli.main(["sessionize", "--engine", "duckdb", "--input", str(path), "--output", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["user_id"], r["event_count"], r["session_start"]) for r in rows] == [
        (1, 2, iso_ms(T)),
        (2, 1, iso_ms(T)),
    ]
