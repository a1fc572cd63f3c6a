"""The parts of the local Managed Flink on their own: spool, bridge, uploader, configuration and runner glue."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from localdev import flink_runner
from localdev.aws.base import AwsError
from localdev.aws.firehose.sources import SourceRecord
from localdev.aws.flink import descriptions
from localdev.aws.flink.bridge import Bridge, arrival_key, parse_start, to_line
from localdev.aws.flink.jobs import (
    GROUP_FLINK,
    JobRequest,
    RunnerError,
    SessionsJobRunner,
    duration_ms,
    kill_orphaned_jobs,
)
from localdev.aws.flink.runs import restore_failure
from localdev.aws.flink.spool import Spool, SpoolError, from_ranges, to_ranges
from localdev.aws.flink.uploader import Uploader, committed_files, parse_s3_url
from localdev.file_pickup import UNREAD_ATIME, atime_tracks_reads
from tests.local_aws.support import alive, wait_for

LOG = logging.getLogger("test.kda")


def read(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


# -- spool ------------------------------------------------------------------------------------------------


def test_atime_moves_on_this_machine(tmp_path):
    # The publication rule relies on it; a noatime mount would use the timed fallback instead.
    assert atime_tracks_reads(tmp_path)


def test_ranges_round_trip():
    assert to_ranges([5, 1, 2, 3, 7, 8]) == [[1, 3], [5, 5], [7, 8]]
    assert from_ranges([[1, 3], [5, 5]]) == {1, 2, 3, 5}
    assert to_ranges([]) == []


def test_publish_is_visible_unread_until_read_and_keeps_positions(tmp_path):
    spool = Spool(tmp_path / "spool", 0.5)
    seq = spool.publish([b'{"a":1}', b'{"a":2}'], {"streams": {"arn": {"shards": {"s0": {"sequence": "2"}}}}})
    path = spool.source_dir() / spool.file_name(seq)
    assert path.parent.name == "flink" and path.parent.parent == spool.epoch_dir()
    assert os.stat(path).st_atime == UNREAD_ATIME
    assert not spool.picked_up(seq)
    assert read(path) == b'{"a":1}\n{"a":2}\n'
    assert spool.picked_up(seq)
    assert spool.positions() == {"streams": {"arn": {"shards": {"s0": {"sequence": "2"}}}}}
    with pytest.raises(ValueError):
        spool.publish([], {})


def test_timed_fallback_without_atime(tmp_path):
    spool = Spool(tmp_path / "spool", 0.1)
    spool.atime_ok = False
    seq = spool.publish([b"x"], {})
    assert not spool.picked_up(seq)
    time.sleep(0.75)  # 2 monitor intervals + 0.5 s
    assert spool.picked_up(seq)


def test_restore_parks_later_files_and_never_reuses_a_sequence_number(tmp_path):
    spool = Spool(tmp_path / "spool", 0.5)
    for i in range(3):
        spool.publish([f"r{i}".encode()], {"after": i})
    saved = spool.snapshot_state()
    assert saved == {"epoch": spool.epoch, "visible": [[1, 3]]}
    spool.publish([b"r3"], {"after": 3})
    spool.publish([b"r4"], {"after": 4})
    later = spool.snapshot_state()

    spool.restore(saved)
    assert spool.visible() == [1, 2, 3]
    assert spool.positions() == {"after": 2}  # the bridge resumes right after the snapshot's newest file
    assert spool.publish([b"again"], {"after": "x"}) == 6

    spool.restore(later)  # the later snapshot gets its own files back, without the other branch's file 6
    assert spool.visible() == [1, 2, 3, 4, 5]
    assert spool.positions() == {"after": 4}

    fresh = spool.new_epoch()
    assert spool.visible() == [] and spool.epoch == fresh
    assert spool.prune(keep=[later["epoch"]]) == []
    spool.restore(later)
    assert spool.visible() == [1, 2, 3, 4, 5]
    assert spool.prune(keep=[]) == [fresh]


def test_restore_of_a_snapshot_whose_files_are_gone_fails_clearly(tmp_path):
    spool = Spool(tmp_path / "spool", 0.5)
    spool.publish([b"a"], {})
    saved = spool.snapshot_state()
    (spool.source_dir() / spool.file_name(1)).unlink()
    with pytest.raises(SpoolError, match=r"\[\[1, 1\]\]"):
        spool.restore(saved)
    with pytest.raises(SpoolError, match="epoch 99"):
        spool.restore({"epoch": 99, "visible": []})


def test_a_crash_inside_publish_leaves_no_half_file(tmp_path):
    spool = Spool(tmp_path / "spool", 0.5)
    spool.publish([b"a"], {"after": 1})
    # A crash after the manifest of file 2 was written but before the file appeared:
    manifest = tmp_path / "spool" / "manifests" / f"{spool.epoch:06d}" / f"{2:012d}.json"
    manifest.write_text(json.dumps({"seq": 2, "positions": {"after": 2}}))
    (tmp_path / "spool" / "tmp" / ".000000000002.half").write_bytes(b"half")
    reopened = Spool(tmp_path / "spool", 0.5)
    assert not manifest.exists()
    assert list((tmp_path / "spool" / "tmp").iterdir()) == []
    assert reopened.positions() == {"after": 1}


# -- bridge -----------------------------------------------------------------------------------------------


def test_lines_and_merge_order():
    assert to_line(b'{"a": 1}\n') == (b'{"a": 1}', False)
    assert to_line(b'{"a":\n 1}\r\n') == (b'{"a":  1}', True)
    same_ms = [
        SourceRecord(b'{"client_timestamp": "2026-01-01T00:00:09.000Z"}', 5, "s0", "1"),
        SourceRecord(b'{"client_timestamp": "2026-01-01T00:00:01.000Z"}', 5, "s1", "1"),
        SourceRecord(b"not json", 4, "s1", "2"),
    ]
    ordered = sorted(same_ms, key=arrival_key)
    assert [r.data[:8] for r in ordered] == [b"not json", same_ms[1].data[:8], same_ms[0].data[:8]]


def test_parse_start():
    assert parse_start({}, 12.0) == ("TRIM_HORIZON", 12.0)
    assert parse_start({"source.init.position": "latest"}, 12.0) == ("LATEST", 12.0)
    assert parse_start(
        {"source.init.position": "AT_TIMESTAMP", "source.init.timestamp": "2026-01-01T00:00:00Z"}, 0
    ) == ("AT_TIMESTAMP", 1767225600.0)
    with pytest.raises(ValueError, match="source.init.position"):
        parse_start({"source.init.position": "EARLIEST"}, 0)
    with pytest.raises(ValueError, match="source.init.timestamp"):
        parse_start({"source.init.position": "AT_TIMESTAMP", "source.init.timestamp": "soon"}, 0)


class SlowReader(threading.Thread):
    """Reads spool files like the job's single reader, slowly, and checks the one-unread-file rule."""

    def __init__(self, spool: Spool):
        super().__init__(daemon=True)
        self.spool = spool
        self.stopping = threading.Event()
        self.lines: list[bytes] = []
        self.max_unread = 0
        self.done: set[str] = set()

    def run(self) -> None:
        while not self.stopping.is_set():
            files = sorted(p for p in self.spool.source_dir().glob("*.jsonl") if p.name not in self.done)
            unread = [p for p in files if os.stat(p).st_atime == UNREAD_ATIME]
            self.max_unread = max(self.max_unread, len(unread))
            for path in files[:1]:
                self.lines.extend(read(path).splitlines())
                self.done.add(path.name)
            time.sleep(0.15)


def test_bridge_publishes_one_file_at_a_time_and_resumes_exactly(endpoint, client, tmp_path):
    kinesis = client("kinesis")
    kinesis.create_stream(StreamName="bridge-src", ShardCount=2)
    arn = kinesis.describe_stream_summary(StreamName="bridge-src")["StreamDescriptionSummary"]["StreamARN"]
    spool = Spool(tmp_path / "spool", 0.1)
    fatal: list[str] = []

    def put(tag: str, n: int) -> None:
        for i in range(n):
            kinesis.put_record(
                StreamName="bridge-src", Data=f'{{"id": "{tag}-{i}"}}'.encode(), PartitionKey=str(i)
            )

    put("a", 60)
    reader = SlowReader(spool)
    reader.start()
    bridge = Bridge(spool, kinesis, arn, ("TRIM_HORIZON", spool.epoch_created()), LOG, fatal.append)
    bridge.start()
    put("b", 60)
    wait_for(lambda: len(reader.lines) >= 120, 30, "120 lines read")
    bridge.stop()
    put("c", 30)  # while no bridge runs
    again = Bridge(spool, kinesis, arn, ("TRIM_HORIZON", spool.epoch_created()), LOG, fatal.append)
    again.start()
    wait_for(lambda: len(reader.lines) >= 150, 30, "150 lines read")
    time.sleep(0.5)
    again.stop()
    reader.stopping.set()
    reader.join(5)

    ids = [json.loads(line)["id"] for line in reader.lines]
    assert sorted(ids) == sorted({f"{t}-{i}" for t, n in (("a", 60), ("b", 60), ("c", 30)) for i in range(n)})
    assert [i for i in ids if i.startswith("a")] == [f"a-{i}" for i in range(60)]  # arrival order kept
    assert ids.index("c-0") > max(ids.index(f"b-{i}") for i in range(60))
    assert reader.max_unread <= 1
    assert fatal == []
    assert again.stats["records_read"] == 30


def test_bridge_latest_skips_what_came_before_and_a_missing_stream_is_fatal(endpoint, client, tmp_path):
    kinesis = client("kinesis")
    kinesis.create_stream(StreamName="bridge-latest", ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName="bridge-latest")["StreamDescriptionSummary"]["StreamARN"]
    kinesis.put_record(StreamName="bridge-latest", Data=b'{"id": "old"}', PartitionKey="k")
    time.sleep(0.05)
    spool = Spool(tmp_path / "spool", 0.1)
    bridge = Bridge(spool, kinesis, arn, ("LATEST", time.time()), LOG, lambda reason: None)
    bridge.start()
    kinesis.put_record(StreamName="bridge-latest", Data=b'{"id": "new"}', PartitionKey="k")
    wait_for(lambda: spool.visible(), 10, "a spool file")
    bridge.stop()
    assert read(spool.source_dir() / spool.file_name(spool.visible()[0])) == b'{"id": "new"}\n'

    fatal: list[str] = []
    gone = Bridge(
        spool, kinesis, arn.replace("bridge-latest", "no-such"), ("TRIM_HORIZON", 0.0), LOG, fatal.append
    )
    gone.start()
    gone.join(10)
    assert fatal and "no-such" in fatal[0]


# -- uploader ---------------------------------------------------------------------------------------------


class FakeS3:
    def __init__(self) -> None:
        self.puts: list[tuple[str, str, bytes]] = []

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> dict:  # noqa: N803 - boto3's names
        self.puts.append((Bucket, Key, Body))
        return {}


def test_uploader_copies_committed_files_once(tmp_path):
    out = tmp_path / "out"
    part_dir = out / "sessions" / "dt=2026-01-01" / "hr=10"
    part_dir.mkdir(parents=True)
    (part_dir / "part-1-0-0").write_bytes(b"one\n")
    (part_dir / ".part-2-0-0.inprogress.abc").write_bytes(b"in progress\n")
    (part_dir / "_SUCCESS").write_bytes(b"")
    (out / ".staging").mkdir()
    (out / ".staging" / "part-x").write_bytes(b"hidden dir\n")
    assert [p.relative_to(out).as_posix() for p in committed_files(out)] == [
        "sessions/dt=2026-01-01/hr=10/_SUCCESS",
        "sessions/dt=2026-01-01/hr=10/part-1-0-0",
    ]
    s3 = FakeS3()
    uploader = Uploader(out, "lake", "flink/app", s3, tmp_path / "uploads.json", LOG, "t")
    assert uploader.sweep() == 2
    assert sorted(key for _, key, _ in s3.puts) == [
        "flink/app/sessions/dt=2026-01-01/hr=10/_SUCCESS",
        "flink/app/sessions/dt=2026-01-01/hr=10/part-1-0-0",
    ]
    assert uploader.sweep() == 0
    # Flink commits the in-progress file by renaming it: uploaded once, under its final name.
    os.replace(part_dir / ".part-2-0-0.inprogress.abc", part_dir / "part-2-0-0")
    again = Uploader(out, "lake", "flink/app", s3, tmp_path / "uploads.json", LOG, "t")  # ledger survives
    assert again.sweep() == 1
    assert s3.puts[-1] == ("lake", "flink/app/sessions/dt=2026-01-01/hr=10/part-2-0-0", b"in progress\n")


def test_parse_s3_url():
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError, match="not an s3:// URL"):
        parse_s3_url("/tmp/out")
    with pytest.raises(ValueError, match="names no bucket"):
        parse_s3_url("s3:///x")


# -- configuration ------------------------------------------------------------------------------------------


def code(**content: Any) -> dict:
    return {"CodeContentType": "ZIPFILE", "CodeContent": content}


def test_configuration_checks_name_the_field():
    s3 = {"S3ContentLocation": {"BucketARN": "arn:aws:s3:::b", "FileKey": "k.zip"}}
    desc = descriptions.configuration_description({"ApplicationCodeConfiguration": code(**s3)})
    flink = desc["FlinkApplicationConfigurationDescription"]
    assert flink["CheckpointConfigurationDescription"] == descriptions.DEFAULT_CHECKPOINT
    assert flink["ParallelismConfigurationDescription"]["CurrentParallelism"] == 1
    assert desc["ApplicationSnapshotConfigurationDescription"] == {"SnapshotsEnabled": False}
    cases = [
        (
            {"ApplicationCodeConfiguration": {"CodeContentType": "PLAINTEXT", "CodeContent": {}}},
            "CodeContentType",
        ),
        ({"ApplicationCodeConfiguration": code(**s3, ZipFileContent=b"z")}, "exactly one of"),
        (
            {
                "ApplicationCodeConfiguration": code(
                    S3ContentLocation={"BucketARN": "arn:aws:s3:::b/x", "FileKey": "k"}
                )
            },
            "BucketARN",
        ),
        (
            {
                "ApplicationCodeConfiguration": code(**s3),
                "FlinkApplicationConfiguration": {"CheckpointConfiguration": {"CheckpointInterval": 5}},
            },
            "ConfigurationType CUSTOM",
        ),
        ({}, "ApplicationCodeConfiguration is required"),
        ({"ApplicationCodeConfiguration": code(**s3), "VpcConfigurations": [{"x": 1}]}, "VpcConfigurations"),
    ]
    for cfg, needle in cases:
        with pytest.raises(AwsError) as exc:
            descriptions.configuration_description(cfg)
        assert exc.value.code == "InvalidArgumentException" and needle in exc.value.message, cfg

    updated = descriptions.apply_update(
        desc,
        {
            "FlinkApplicationConfigurationUpdate": {
                "CheckpointConfigurationUpdate": {
                    "ConfigurationTypeUpdate": "CUSTOM",
                    "CheckpointIntervalUpdate": 2000,
                }
            },
            "ApplicationCodeConfigurationUpdate": {
                "CodeContentUpdate": {"S3ContentLocationUpdate": {"FileKeyUpdate": "v2.zip"}}
            },
        },
    )
    checkpoint = updated["FlinkApplicationConfigurationDescription"]["CheckpointConfigurationDescription"]
    assert checkpoint["ConfigurationType"] == "CUSTOM" and checkpoint["CheckpointInterval"] == 2000
    location = updated["ApplicationCodeConfigurationDescription"]["CodeContentDescription"]
    assert location["S3ApplicationCodeLocationDescription"] == {
        "BucketARN": "arn:aws:s3:::b",
        "FileKey": "v2.zip",
    }
    with pytest.raises(AwsError) as exc:
        descriptions.apply_update(desc, {"SqlApplicationConfigurationUpdate": {"x": 1}})
    assert exc.value.message == (
        "ApplicationConfigurationUpdate.SqlApplicationConfigurationUpdate is not supported by the local "
        "companion (Flink applications only)"
    )

    with pytest.raises(AwsError, match="SnapshotName is required"):
        descriptions.restore_description(
            {"ApplicationRestoreConfiguration": {"ApplicationRestoreType": "RESTORE_FROM_CUSTOM_SNAPSHOT"}}
        )


def test_describe_shows_a_failure_within_the_description_limit():
    app = {
        "name": "a",
        "arn": "arn",
        "runtime": "FLINK-2_3",
        "status": "READY",
        "version": 1,
        "created": 1.0,
        "config": descriptions.configuration_description(
            {"ApplicationCodeConfiguration": code(ZipFileContent=b"zip")}
        ),
        "restore": {"ApplicationRestoreType": "RESTORE_FROM_LATEST_SNAPSHOT"},
        "description": "my app",
        "failure": {"time": 0.0, "reason": "x" * 5000},
    }
    text = descriptions.describe(app)["ApplicationDescription"]
    assert text.startswith("my app\n\n[local companion] last run FAILED at 1970-01-01T00:00:00.000Z: xxx")
    assert len(text) == descriptions.MAX_DESCRIPTION


def test_runner_glue_refuses_what_it_cannot_run(tmp_path):
    assert duration_ms("1 min", "k") == 60_000
    assert duration_ms("500 ms", "k") == 500
    assert duration_ms("2 s", "k") == 2000
    with pytest.raises(RunnerError, match="rollover"):
        duration_ms("soon", "rollover")
    request = JobRequest(
        name="t",
        groups={
            "consumer.config.0": {"connector": "filesystem", "path": str(tmp_path)},
            "sink.config.0": {"output.path": str(tmp_path)},
            GROUP_FLINK: {"table.exec.source.idle-timeout": "1 s", "parallelism.default": "4"},
        },
        spool_dir=tmp_path,
        output_dir=tmp_path,
        work_dir=tmp_path,
    )
    # Refused before any process starts, naming the group, the key and its value.
    with pytest.raises(RunnerError, match=r"flink.config.0 'parallelism.default' = '4' .*parallelism 1"):
        SessionsJobRunner().start(request)
    assert not (tmp_path / "job").exists()
    request.groups.pop(GROUP_FLINK)
    request.groups["contract.config.0"] = {"gap.ms": "soon"}
    with pytest.raises(RunnerError, match="gap.ms"):
        SessionsJobRunner().start(request)


def test_bridge_waits_for_pickup_except_for_a_restored_unread_file(endpoint, client, tmp_path):
    kinesis = client("kinesis")
    kinesis.create_stream(StreamName="bridge-grace", ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName="bridge-grace")["StreamDescriptionSummary"]["StreamARN"]
    spool = Spool(tmp_path / "spool", 0.1)
    first = spool.publish([b'{"id": "before"}'], {})  # nobody reads it
    kinesis.put_record(StreamName="bridge-grace", Data=b'{"id": "next"}', PartitionKey="k")

    waiting = Bridge(spool, kinesis, arn, ("TRIM_HORIZON", 0.0), LOG, lambda reason: None)
    waiting.start()
    wait_for(lambda: waiting.stats["records_read"] == 1, 10, "the record read")
    time.sleep(0.6)
    waiting.stop()
    assert spool.visible() == [first]  # held back: the job has not picked up file 1

    graced = Bridge(spool, kinesis, arn, ("TRIM_HORIZON", 0.0), LOG, lambda reason: None)
    graced.unread_grace = (first, 0.3)
    graced.start()
    wait_for(lambda: len(spool.visible()) == 2, 10, "publication after the grace")
    graced.stop()
    assert read(spool.source_dir() / spool.file_name(spool.visible()[1])) == b'{"id": "next"}\n'


def test_a_restore_skips_unclaimed_state_only_when_the_application_allows_it(tmp_path):
    """AllowNonRestoredState reaches Flink as execution.state-recovery.ignore-unclaimed-state on a restore."""
    key = "execution.state-recovery.ignore-unclaimed-state"
    assert key not in flink_runner.runtime_config(tmp_path, 1000, 200, None, True)
    strict = flink_runner.runtime_config(tmp_path, 1000, 200, "/snap/sp-1")
    allowing = flink_runner.runtime_config(tmp_path, 1000, 200, "/snap/sp-1", True)
    assert (strict[key], allowing[key]) == ("false", "true")
    assert (
        strict["execution.state-recovery.path"] == allowing["execution.state-recovery.path"] == "/snap/sp-1"
    )
    # the application's property groups cannot set it around the API
    with pytest.raises(flink_runner.FlinkConfigError, match="snapshot"):
        flink_runner.check_flink_config({key: "true"}, strict)


def test_flink_config_passes_table_options_and_refuses_what_breaks_a_local_run(tmp_path):
    runtime = flink_runner.runtime_config(tmp_path, 1000, 200, None)
    allowed = {
        "table.exec.source.idle-timeout": "1 s",
        "pipeline.name": "mine",
        "parallelism.default": "1",
        "table.exec.resource.default-parallelism": "-1",
        "pipeline.auto-watermark-interval": "1 s",
        "execution.runtime-mode": "STREAMING",
    }
    assert flink_runner.check_flink_config(allowed, runtime) == allowed
    refused = {
        "parallelism.default": ("2", "parallelism 1"),
        "table.exec.resource.default-parallelism": ("4", "parallelism 1"),
        "execution.checkpointing.interval": ("10 s", "CheckpointConfiguration"),
        "execution.checkpointing.dir": ("file:///elsewhere", "checkpoints and savepoints"),
        "execution.state-recovery.path": ("/tmp/sp", "snapshot"),
        "restart-strategy.type": ("fixed-delay", "FAILED"),
        "rest.bind-address": ("0.0.0.0", "127.0.0.1"),
        "taskmanager.data.bind-host": ("0.0.0.0", "127.0.0.1"),
        "blob.server.port": ("6124", "127.0.0.1"),
        "execution.runtime-mode": ("batch", "streaming"),
        "pipeline.auto-watermark-interval": ("0 ms", "periodic watermarks"),
    }
    for key, (value, why) in refused.items():
        with pytest.raises(flink_runner.FlinkConfigError) as exc:
            flink_runner.check_flink_config({"pipeline.name": "x", key: value}, runtime)
        assert f"flink.config.0 {key!r} = {value!r}" in str(exc.value) and why in str(exc.value), exc.value


def _sleeper(*args: str) -> subprocess.Popen:
    """A process that sleeps, with ``args`` on its command line (as the runner's and the JVM's carry theirs)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", *args], start_new_session=True
    )
    # Popen returns amid the exec: the new command line shows a moment later.
    wait_for(lambda: Path(f"/proc/{proc.pid}/cmdline").read_bytes(), 10, "the command line")
    return proc


def test_orphaned_jobs_are_killed_only_when_their_job_dir_vouches_for_them(tmp_path):
    job_dir = tmp_path / "services/kinesisanalytics/apps/us-east-1__a/runs/20260101T000000/job"
    job_dir.mkdir(parents=True)

    def record(runner_pid: int, jvm_pid: int) -> None:
        handle = flink_runner.JobHandle(
            job_dir, runner_pid, "continuous", tmp_path, tmp_path, None, jvm_marker="m-123"
        )
        handle.save()
        (job_dir / "status.json").write_text(json.dumps({"state": "RUNNING", "jvm_pid": jvm_pid}))

    strangers = [_sleeper(), _sleeper("-Dclickstream.flink.job=other")]
    runner = _sleeper("localdev.flink_runner", "--job-dir", str(job_dir))
    jvm = _sleeper("-Dclickstream.flink.job=m-123")
    try:
        record(strangers[0].pid, strangers[1].pid)  # recycled PIDs: other processes now
        assert kill_orphaned_jobs(tmp_path) == []
        assert all(p.poll() is None for p in strangers)

        record(runner.pid, jvm.pid)
        assert flink_runner.job_processes(job_dir) == {"runner": runner.pid, "jvm": jvm.pid}
        assert kill_orphaned_jobs(tmp_path) == sorted([runner.pid, jvm.pid])
        assert runner.wait(10) == -9 and jvm.wait(10) == -9
        assert all(alive(p.pid) for p in strangers)
        assert kill_orphaned_jobs(tmp_path) == []  # nothing left to kill
    finally:
        for proc in [*strangers, runner, jvm]:
            proc.kill()
            proc.wait(10)


# -- the reason a run that restored a snapshot failed --------------------------------------------------------

CANNOT_MAP = (
    "java.lang.IllegalStateException: Failed to rollback to checkpoint/savepoint file:/sp. Cannot map "
    "checkpoint/savepoint state for operator 0a44 to the new program, because the operator is not available in "
    "the new program. If you want to allow to skip this, you can set the --allowNonRestoredState option on the CLI."
)


def test_a_snapshot_whose_state_does_not_fit_is_named_with_its_version_and_the_way_out():
    app = {"version": 4, "snapshots": {"snap-1": {"name": "snap-1", "version": 2}}}
    reason = restore_failure(app, {"name": "snap-1"}, f"the Flink job ended (FAILED): {CANNOT_MAP}")
    assert reason.startswith(
        "the job could not restore snapshot snap-1 (taken by application version 2, the application is now "
        "version 4): the snapshot belongs to an older job graph, whose state Flink cannot map onto the current "
        "job. Start with ApplicationRestoreType SKIP_RESTORE_FROM_SNAPSHOT"
    )
    assert reason.endswith("Flink: " + CANNOT_MAP[CANNOT_MAP.index("Cannot map") :])
    # a restore record not (or no longer) in the application names its own version, or none
    assert "(taken by application version 4, the current one)" in restore_failure(
        {"version": 4}, {"name": "x", "version": 4}, CANNOT_MAP
    )
    assert restore_failure({"version": 4}, {"name": "x"}, CANNOT_MAP).startswith(
        "the job could not restore snapshot x: the snapshot belongs to an older job graph"
    )


@pytest.mark.parametrize(
    ("restore", "reason"),
    [
        ({"name": "snap-1"}, "the Flink job ended (FAILED): poison record CRASH"),  # not about the state
        (None, CANNOT_MAP),  # nothing was restored: Flink's words stand as they are
    ],
)
def test_other_failures_keep_their_reason(restore, reason):
    assert restore_failure({"version": 2, "snapshots": {}}, restore, reason) == reason
