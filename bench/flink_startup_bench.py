"""Start-up of the Flink job, before and after a change, same run (issue 11, target 5).

``python -m bench.flink_startup_bench --input EVENTS.jsonl [--ref COMMIT] [--json out.json]``

Two paths, each measured with this tree's code and with ``--ref``'s (its ``include``, ``localdev`` and ``bench``
extracted with git archive, run in a subprocess):

* ``clickstream sessionize --engine flink`` on the events file: from the command's start to the job's first read
  of the input (the JVM's file offset in /proc, probed from outside, so both trees are measured alike), with the
  runner's own phases (process, JVM, table environment, planning and submission; newer runners also report the
  source's first output record);
* StartApplication to RUNNING on the local endpoint (its kinesisanalyticsv2 service, a Kinesis source, 1 s
  checkpoints as in tests/local_aws/test_kinesisanalytics_flink.py: RUNNING means the first checkpoint is done).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class FirstReadProbe(threading.Thread):
    """Notes when a job's JVM (its PID from the runner's status file) has first read from the input file: the
    offset of its open descriptor in /proc/<pid>/fdinfo. The same for any tree, and independent of Flink's REST
    metrics, which the mini-cluster refreshes only every 10 s by default."""

    def __init__(self, status_file: Path, input_file: Path) -> None:
        super().__init__(daemon=True)
        self.status_file, self.input_file = status_file, str(input_file.resolve())
        self.first_read_at: float | None = None
        self.stop = threading.Event()

    def _read_offset(self, pid: int) -> int:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == self.input_file:
                    info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
                    return int(info.split("pos:", 1)[1].split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return 0

    def run(self) -> None:
        pid = None
        while not self.stop.is_set() and self.first_read_at is None:
            try:
                pid = pid or json.loads(self.status_file.read_text()).get("jvm_pid")
                if pid and self._read_offset(int(pid)) > 0:
                    self.first_read_at = time.time()
            except (OSError, ValueError):
                pass
            self.stop.wait(0.05)


def measure_cli(events: Path, work: Path) -> dict[str, Any]:
    """``sessionize --engine flink`` on ``events``: seconds from the command's start to each phase."""
    work_dir, output = work / "cli-work", work / "cli-sessions.jsonl"
    probe = FirstReadProbe(work_dir / "job" / "status.json", events)
    probe.start()
    started = time.time()
    command = [sys.executable, "-m", "localdev.cli", "sessionize", "--engine", "flink"]
    command += ["--input", str(events), "--output", str(output), "--work-dir", str(work_dir)]
    done = subprocess.run(command, capture_output=True, text=True)
    ended = time.time()
    probe.stop.set()
    probe.join(5)
    if done.returncode:
        raise RuntimeError(f"sessionize failed: {done.stderr[-2000:]}")
    timings = json.loads((work_dir / "job" / "status.json").read_text())["timings"]
    result = {
        f"{name}_s": round(at - started, 2) for name, at in sorted(timings.items(), key=lambda kv: kv[1])
    }
    if probe.first_read_at:
        result["first_input_read_s"] = round(probe.first_read_at - started, 2)
    result["total_s"] = round(ended - started, 2)
    result["sessions"] = sum(1 for _ in open(output))
    return result


def measure_start_application(work: Path) -> dict[str, Any]:
    """StartApplication to RUNNING on a fresh local endpoint (1 s checkpoints), and the runner's phases."""
    from localdev.aws.clients import local_client
    from localdev.aws.endpoint import LocalEndpoint, free_port_pair

    endpoint = LocalEndpoint(free_port_pair(), work / "endpoint")
    endpoint.start(timeout=120)
    try:
        s3, kinesis, kda = (local_client(s, endpoint.url) for s in ("s3", "kinesis", "kinesisanalyticsv2"))
        s3.create_bucket(Bucket="bench-lake")
        s3.put_object(Bucket="bench-lake", Key="code/app.zip", Body=b"PK\x05\x06" + b"\0" * 18)
        kinesis.create_stream(StreamName="clicks", ShardCount=1)
        arn = kinesis.describe_stream_summary(StreamName="clicks")["StreamDescriptionSummary"]["StreamARN"]
        groups = {
            "consumer.config.0": {"stream.arn": arn, "aws.region": "us-east-1"},
            "sink.config.0": {"output.path": "s3://bench-lake/app", "rollover.interval": "1 s"},
        }
        kda.create_application(
            ApplicationName="bench-app",
            RuntimeEnvironment="FLINK-2_3",
            ServiceExecutionRole="arn:aws:iam::123456789012:role/bench",
            ApplicationConfiguration={
                "ApplicationCodeConfiguration": {
                    "CodeContent": {
                        "S3ContentLocation": {
                            "BucketARN": "arn:aws:s3:::bench-lake",
                            "FileKey": "code/app.zip",
                        }
                    },
                    "CodeContentType": "ZIPFILE",
                },
                "EnvironmentProperties": {
                    "PropertyGroups": [{"PropertyGroupId": g, "PropertyMap": m} for g, m in groups.items()]
                },
                "FlinkApplicationConfiguration": {
                    "CheckpointConfiguration": {"ConfigurationType": "CUSTOM", "CheckpointInterval": 1000}
                },
            },
        )
        started = time.time()
        kda.start_application(ApplicationName="bench-app")
        while True:
            status = kda.describe_application(ApplicationName="bench-app")["ApplicationDetail"][
                "ApplicationStatus"
            ]
            if status == "RUNNING":
                running = time.time()
                break
            if status == "READY" or time.time() - started > 600:
                raise RuntimeError(f"the application did not reach RUNNING (status {status})")
            time.sleep(0.1)
        status_files = list((work / "endpoint").rglob("job/status.json"))
        timings = json.loads(status_files[0].read_text())["timings"] if status_files else {}
        result = {f"{n}_s": round(at - started, 2) for n, at in sorted(timings.items(), key=lambda kv: kv[1])}
        result.pop("first_record_s", None)
        result["running_s"] = round(running - started, 2)
        kda.stop_application(ApplicationName="bench-app", Force=True)
        while kda.describe_application(ApplicationName="bench-app")["ApplicationDetail"][
            "ApplicationStatus"
        ] != ("READY"):
            time.sleep(0.2)
        return result
    finally:
        endpoint.stop()


def measure(events: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="flink-startup-") as tmp:
        work = Path(tmp)
        return {"cli": measure_cli(events, work), "start_application": measure_start_application(work)}


def tree_at(ref: str, work: Path) -> Path:
    """``include``, ``localdev`` and ``bench`` of commit ``ref`` (this bench file added if the commit lacks it)."""
    from bench.trees import extract_tree  # here: this file also runs inside trees that have no bench.trees

    tree = extract_tree(ref, work)
    (tree / "bench" / Path(__file__).name).write_text(Path(__file__).read_text())
    return tree


def run_in(tree: Path, events: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-m", "bench.flink_startup_bench", "--measure", "--input", str(events)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(f"measuring in {tree} failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="time-ordered events (JSON lines)")
    parser.add_argument("--ref", default=None, help="also measure this commit (before)")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    events = args.input.resolve()
    if args.measure:
        print(json.dumps(measure(events)))
        return 0
    from bench.machine import print_machine

    print_machine()
    results: dict[str, Any] = {"input": str(events), "load_avg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="flink-startup-trees-") as tmp:
        if args.ref:
            results[f"before ({args.ref})"] = run_in(tree_at(args.ref, Path(tmp)), events)
            print(json.dumps(results[f"before ({args.ref})"]), flush=True)
        results["after (this tree)"] = run_in(PROJECT_ROOT, events)
    results["load_avg_end"] = os.getloadavg()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
