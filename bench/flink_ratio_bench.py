"""The production Flink job as a ratio of the bare SESSION TVF on the same events, same run (issue 11, target 1).

``python -m bench.flink_ratio_bench [--events 1000000 | --input EVENTS] [--repeat N] [--variants bare,prod,...]
[--jfr prod] [--json out]``

Every variant is one SQL job in a fresh process and JVM with the CLI's bounded-run configuration
(:func:`localdev.flink_runner.runtime_config`, :func:`localdev.flink_runner.config.jvm_options`), run back to
back on one file of time-ordered events (``--repeat`` interleaves the variants and reports medians):

* ``bare``: Flink's ``json`` format with typed columns, watermark 5 s, one SESSION TVF (count, first and last
  time) into one filesystem sink: what Flink does with the same events and no rules of ours;
  ``bare_raw_json_value``: the same query over raw lines and JSON_VALUE columns;
* ``prod``: the production job exactly as :func:`include.flink_app.flink_job.build_job` renders it (raw records,
  reject rules, dedup, late split, four sinks); ``prod@REF``: as commit REF rendered it, with REF's source-format jar,
  run with today's runtime configuration and JVM options (before/after of the job itself in one run; add
  ``;jvm:default;execution.checkpointing.interval=2 s`` for the runner's runtime before bb6fc15);
* ``prod_*``: the production job with one feature taken out, to see where the time goes;
* any variant ``;key=value`` (a Flink option) or ``;jvm:OPTION`` (a JVM option; ``;jvm:default`` runs the JVM as
  PyFlink starts it).

Measured per variant: wall phases, the JVM's CPU seconds while the job runs (steadier than wall time on a shared
machine), and, sampled from the mini-cluster's REST API while it runs, busy/idle/back-pressured time and records
per job vertex (Flink's own accounting), and the CPU seconds of the JVM's threads by name (``thread_cpu_s``: each
task thread is one chain of operators; also the JIT compilers, GC, REST and metric threads). ``--jfr VARIANT`` adds a Java Flight Recorder profile: samples by
category (:data:`JFR_CATEGORIES`), by task thread and by hottest frame. Ratios: bare / variant, of job wall time
and of job CPU time.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.trees import extract_tree

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TS_FORMAT = "'yyyy-MM-dd''T''HH:mm:ss.SSS''Z'''"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the jobs -------------------------------------------------------------------------------------------------


def bare_job(source: Path, output: Path) -> tuple[list[str], list[str]]:
    """The bare SESSION TVF: Flink's json format, typed columns, one window aggregation, one sink."""
    ddl = [
        f"""CREATE TABLE events (
            event_id STRING, user_id INT, device_id STRING, client_event STRING, client_timestamp STRING,
            countrycode STRING,
            rowtime AS TO_TIMESTAMP_LTZ(client_timestamp, {TS_FORMAT}, 'UTC'),
            WATERMARK FOR rowtime AS rowtime - INTERVAL '5' SECOND
        ) WITH ('connector' = 'filesystem', 'path' = '{source}', 'format' = 'json')""",
        f"""CREATE TABLE sessions_sink (
            user_id INT, device_id STRING, session_start TIMESTAMP_LTZ(3), session_end TIMESTAMP_LTZ(3),
            event_count BIGINT
        ) WITH ('connector' = 'filesystem', 'path' = '{output}/sessions', 'format' = 'json')""",
    ]
    inserts = [
        """INSERT INTO sessions_sink
        SELECT user_id, device_id, MIN(rowtime), window_end, COUNT(*)
        FROM TABLE(SESSION(TABLE events PARTITION BY (user_id, device_id), DESCRIPTOR(rowtime),
            INTERVAL '60' SECOND))
        GROUP BY user_id, device_id, window_start, window_end"""
    ]
    return ddl, inserts


def bare_raw_job(source: Path, output: Path) -> tuple[list[str], list[str]]:
    """The bare SESSION TVF over raw lines and JSON_VALUE columns (as the production source read them before its
    own format, include/flink_app/java): what that extraction costs against Flink's json format, with no rule of
    ours."""
    ddl, inserts = bare_job(source, output)
    fields = ("event_id", "user_id", "device_id", "client_event", "client_timestamp", "countrycode")
    columns = ", ".join(
        f"{f} AS "
        + (f"CAST(JSON_VALUE(record, '$.{f}') AS INT)" if f == "user_id" else f"JSON_VALUE(record, '$.{f}')")
        for f in fields
    )
    ddl[0] = f"""CREATE TABLE events (
            record STRING, {columns},
            rowtime AS TO_TIMESTAMP_LTZ(JSON_VALUE(record, '$.client_timestamp'), {TS_FORMAT}, 'UTC'),
            WATERMARK FOR rowtime AS rowtime - INTERVAL '5' SECOND
        ) WITH ('connector' = 'filesystem', 'path' = '{source}', 'format' = 'raw')"""
    return ddl, inserts


def prod_job(source: Path, output: Path) -> tuple[list[str], list[str], dict[str, str]]:
    """The production job as the CLI's bounded run builds it (filesystem source, local sinks)."""
    from include.flink_app import flink_job
    from include.sessions.contract import SessionContract
    from localdev.flink_runner.config import local_sink_properties

    contract = SessionContract()
    spec = flink_job.build_job(
        contract,
        flink_job.source_options({"connector": "filesystem", "path": str(source)}),
        flink_job.sink_options(local_sink_properties(output, 60_000)),
    )
    return list(spec.ddl), list(spec.inserts), dict(spec.config)


def prod_job_at(
    ref: str, source: Path, output: Path, work: Path
) -> tuple[list[str], list[str], dict[str, str]]:
    """The production job as commit ``ref`` rendered it (its tree extracted with git archive), with the source
    format's jar built from that commit's Java sources, to compare before and after in one run."""
    tree = extract_tree(ref, work)
    # The commit's own source-format jar too (built from its Java sources), where it has one.
    code = (
        "import json, sys; from pathlib import Path; from bench.flink_ratio_bench import prod_job\n"
        "ddl, inserts, config = prod_job(Path(sys.argv[1]), Path(sys.argv[2]))\n"
        "try:\n"
        "    from include.flink_app import flink_job, format_jar\n"
        "    config = flink_job.with_jar(config, format_jar.cached())\n"
        "except ImportError:\n"
        "    pass\n"
        "print(json.dumps([ddl, inserts, config]))"
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    bench_file = tree / "bench" / "flink_ratio_bench.py"
    if not bench_file.exists():  # an older commit: borrow this renderer, the SQL stays the commit's
        bench_file.write_text(Path(__file__).read_text())
    out = subprocess.run(
        [sys.executable, "-c", code, str(source), str(output)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(f"rendering the job at {ref} failed: {out.stderr[-2000:]}")
    ddl, inserts, config = json.loads(out.stdout.splitlines()[-1])
    return ddl, inserts, config


def _view_name(statement: str) -> str | None:
    match = re.match(r"CREATE TEMPORARY VIEW (\w+)", statement)
    return match.group(1) if match else None


def variant_job(
    name: str, source: Path, output: Path, work: Path
) -> tuple[list[str], list[str], dict[str, str]]:
    """``name``'s statements: bare, prod, prod@REF, or prod with one feature removed (see the module docstring)."""
    if name.startswith("prod@"):
        return prod_job_at(name.split("@", 1)[1], source, output, work)
    if name in ("bare", "bare_raw_json_value"):
        ddl, inserts = (bare_job if name == "bare" else bare_raw_job)(source, output)
        return ddl, inserts, {"table.local-time-zone": "UTC"}
    ddl, inserts, config = prod_job(source, output)
    if name == "prod":
        return ddl, inserts, config
    views = {_view_name(s): i for i, s in enumerate(ddl) if _view_name(s)}
    if name == "prod_sessions_sink_only":
        inserts = [s for s in inserts if s.startswith("INSERT INTO sessions_sink")]
    elif name == "prod_no_dedup":
        ddl[views["unique_events"]] = (
            "CREATE TEMPORARY VIEW unique_events AS SELECT event_id, CAST(user_id AS INT) AS user_id, device_id, "
            "client_event, client_timestamp, countrycode, rowtime, arrival_time FROM checked_events "
            "WHERE reason IS NULL"
        )
    elif name == "prod_no_reject_rules":
        ddl[views["checked_events"]] = (
            "CREATE TEMPORARY VIEW checked_events AS SELECT record, event_id, user_id, device_id, client_event, "
            "client_timestamp, countrycode, rowtime, arrival_time, CAST(NULL AS STRING) AS reason "
            "FROM events_raw WHERE TRIM(record) <> ''"
        )
    elif name == "prod_source_only":
        # The raw source and its JSON_VALUE columns, straight into the sessions (no rules, dedup, late, sinks).
        ddl[views["checked_events"]] = (
            "CREATE TEMPORARY VIEW checked_events AS SELECT record, event_id, user_id, device_id, client_event, "
            "client_timestamp, countrycode, rowtime, arrival_time, CAST(NULL AS STRING) AS reason "
            "FROM events_raw WHERE TRIM(record) <> ''"
        )
        ddl[views["unique_events"]] = (
            "CREATE TEMPORARY VIEW unique_events AS SELECT event_id, CAST(user_id AS INT) AS user_id, device_id, "
            "client_event, client_timestamp, countrycode, rowtime, arrival_time FROM checked_events"
        )
        inserts = [s for s in inserts if s.startswith("INSERT INTO sessions_sink")]
    else:
        raise ValueError(f"unknown variant {name!r}")
    return ddl, inserts, config


VARIANTS = (
    "bare",
    "bare_raw_json_value",
    "prod",
    "prod_sessions_sink_only",
    "prod_no_dedup",
    "prod_no_reject_rules",
    "prod_source_only",
)


# -- one job in its own process -------------------------------------------------------------------------------


def _rest(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return json.loads(resp.read())


TASK_METRICS = (
    "accumulateBusyTimeMs",
    "accumulateIdleTimeMs",
    "accumulateBackPressuredTimeMs",
    "numRecordsIn",
    "numRecordsOut",
)


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of each thread of a process so far: thread id -> (name, seconds), from /proc."""
    result = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        result[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    return result


#: Thread name prefixes of the JVM and the mini-cluster's own services (not operators): JIT, GC, REST, metrics.
SERVICE_THREADS = {
    "jit": ("C1 Compiler", "C2 Compiler"),
    "gc": ("GC Thread", "VM Thread"),
    "cluster": ("flink-", "Flink-", "Sweeper", "Service Thread", "OutputFlusher", "Thread-", "main"),
}


def cpu_split(threads: dict[str, float]) -> dict[str, float]:
    """Thread CPU seconds as operators (task threads and source readers), jit, gc and cluster services (the REST
    metric sampling of this bench included)."""
    split = dict.fromkeys(("operators", *SERVICE_THREADS), 0.0)
    for name, seconds in threads.items():
        kind = next((k for k, prefixes in SERVICE_THREADS.items() if name.startswith(prefixes)), "operators")
        split[kind] += seconds
    return {f"{kind}_cpu_s": round(seconds, 1) for kind, seconds in split.items()}


def cpu_by_thread_name(samples: dict[int, tuple[str, float]], before: dict[int, tuple[str, float]]) -> dict:
    """CPU seconds spent while the job ran, summed by thread name (a task thread is named after its operator
    chain, truncated by Linux to 15 characters; other threads are grouped as such)."""
    totals: collections.Counter[str] = collections.Counter()
    for tid, (name, seconds) in samples.items():
        totals[name] += seconds - (before.get(tid, (name, 0.0))[1])
    return {name: round(seconds, 1) for name, seconds in totals.most_common() if seconds >= 0.1}


class Sampler(threading.Thread):
    """Samples the running job's vertices through the mini-cluster's REST API (last values win), and the CPU
    time of the JVM's threads (the last value seen of each thread: a task's CPU per operator chain)."""

    def __init__(self, port: int, job_id: str, jvm_pid: int | None = None) -> None:
        super().__init__(daemon=True)
        self.port, self.job_id, self.jvm_pid = port, job_id, jvm_pid
        self.threads: dict[int, tuple[str, float]] = {}
        self.vertices: dict[str, dict[str, Any]] = {}
        self.first_record_at: float | None = None
        self.running_at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.jvm_pid is not None:
                try:
                    self.threads.update(thread_cpu(self.jvm_pid))
                except OSError:
                    pass
            try:
                self.sample()
            except Exception:  # the cluster shuts down when the bounded job ends
                pass
            self.stop.wait(0.5)

    def sample(self) -> None:
        job = _rest(self.port, f"/jobs/{self.job_id}")
        if job.get("state") == "RUNNING" and self.running_at is None:
            self.running_at = time.time()
        for vertex in job.get("vertices", []):
            ids = ",".join(f"0.{m}" for m in TASK_METRICS)
            values = _rest(self.port, f"/jobs/{self.job_id}/vertices/{vertex['id']}/metrics?get={ids}")
            metrics = {item["id"].split(".", 1)[1]: float(item["value"]) for item in values}
            if metrics:
                self.vertices[vertex["name"][:160]] = metrics
            if self.first_record_at is None and metrics.get("numRecordsOut", 0) > 0:
                self.first_record_at = time.time()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child(spec_path: Path) -> int:
    """Run one job (``--child``): build the table environment, submit, sample, write timings and metrics."""
    spec = json.loads(spec_path.read_text())
    timings = {"process_start": time.time()}
    from include.flink_app.flink_job import create_table_env

    timings["imported"] = time.time()
    t_env = create_table_env(spec["config"])
    timings["env_ready"] = time.time()
    from pyflink.java_gateway import get_gateway

    jvm_pid = int(get_gateway().jvm.java.lang.ProcessHandle.current().pid())
    cpu = {"env_ready": _cpu_s(jvm_pid)}
    for statement in spec["ddl"]:
        t_env.execute_sql(statement)
    statement_set = t_env.create_statement_set()
    for insert in spec["inserts"]:
        statement_set.add_insert_sql(insert)
    if spec.get("explain"):
        Path(spec["explain"]).write_text(statement_set.explain())
    timings["planned"] = time.time()
    cpu["planned"] = _cpu_s(jvm_pid)
    result = statement_set.execute()
    timings["submitted"] = time.time()
    cpu["submitted"] = _cpu_s(jvm_pid)
    threads_at_submit = thread_cpu(jvm_pid)
    job_id = result.get_job_client()._j_job_client.getJobID().toString()
    sampler = Sampler(int(spec["config"]["rest.port"]), job_id, jvm_pid)
    sampler.start()
    result.wait()
    timings["ended"] = time.time()
    cpu["ended"] = _cpu_s(jvm_pid)
    sampler.threads.update(thread_cpu(jvm_pid))
    if spec.get("jfr"):  # dump now: the gateway JVM may be gone before it writes the recording at exit
        subprocess.run(["jcmd", str(jvm_pid), "JFR.dump", f"filename={spec['jfr']}"], capture_output=True)
    sampler.stop.set()
    sampler.join(5)
    timings["running"] = sampler.running_at
    timings["first_record"] = sampler.first_record_at
    Path(spec["result"]).write_text(
        json.dumps(
            {
                "timings": timings,
                "cpu": cpu,
                "vertices": sampler.vertices,
                "thread_cpu_s": cpu_by_thread_name(sampler.threads, threads_at_submit),
            }
        )
    )
    return 0


def run_variant(
    name: str, source: Path, work: Path, jfr: bool = False, explain: bool = False
) -> dict[str, Any]:
    """Run one variant in a fresh process and JVM; its phases, vertex metrics and output counts.

    ``name`` is a variant, optionally followed by ``;key=value`` Flink options (``prod;pipeline.object-reuse=true``)
    and ``;jvm:OPTION`` JVM options added to the runner's (``prod;jvm:-XX:TieredStopAtLevel=1``; ``;jvm:default``: none).
    """
    from localdev.flink_runner.config import jvm_options, runtime_config

    base, *options = name.split(";")
    variant_jvm_options = [o[4:] for o in options if o.startswith("jvm:")]
    options = [o for o in options if not o.startswith("jvm:")]
    run_dir = Path(tempfile.mkdtemp(prefix=re.sub(r"[^\w.-]", "_", name)[:80] + "-", dir=work))
    output = run_dir / "output"
    ddl, inserts, config = variant_job(base, source, output, work)
    # The bounded run's checkpoints: none (``;execution.checkpointing.interval=2 s`` gives the runner's old ones).
    runtime = runtime_config(run_dir / "checkpoints", None, 200, None)
    spec = {
        "config": {
            **runtime,
            **config,
            **dict(o.split("=", 1) for o in options),
            "rest.port": str(_free_port()),
        },
        "ddl": ddl,
        "inserts": inserts,
        "result": str(run_dir / "result.json"),
        "explain": str(run_dir / "explain.txt") if explain else None,
        "jfr": str(run_dir / "profile.jfr") if jfr else None,
    }
    (run_dir / "spec.json").write_text(json.dumps(spec))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env["_python_worker_execution_mode"] = "process"
    # The runner's JVM options for such an input, then the variant's own; ``;jvm:default`` runs the JVM as PyFlink
    # starts it (as the runner did before it chose options).
    plain = "default" in variant_jvm_options
    variant_jvm_options = [o for o in variant_jvm_options if o != "default"]
    runner_options = [] if plain else jvm_options("bounded", source.stat().st_size)
    env["JVM_ARGS"] = " ".join([*runner_options, *variant_jvm_options, env.get("JVM_ARGS", "")]).strip()
    if jfr:
        env["JVM_ARGS"] = (
            f"{env.get('JVM_ARGS', '')} -XX:FlightRecorderOptions=stackdepth=256 "
            "-XX:StartFlightRecording=settings=profile"
        ).strip()
    started = time.time()
    with open(run_dir / "child.log", "wb") as log:
        code = subprocess.run(
            [sys.executable, "-m", "bench.flink_ratio_bench", "--child", str(run_dir / "spec.json")],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        ).returncode
    finished = time.time()
    if code != 0:
        raise RuntimeError(f"variant {name} failed ({code}); log: {run_dir / 'child.log'}")
    result = json.loads((run_dir / "result.json").read_text())
    t = result["timings"]
    phases = {
        "wall_s": round(finished - started, 2),
        "python_start_s": round(t["process_start"] - started, 2),
        "jvm_start_s": round(t["env_ready"] - t["imported"], 2),
        "plan_s": round(t["planned"] - t["env_ready"], 2),
        "submit_s": round(t["submitted"] - t["planned"], 2),
        "job_s": round(t["ended"] - t["submitted"], 2),
        "job_cpu_s": round(result["cpu"]["ended"] - result["cpu"]["submitted"], 2),
        "plan_cpu_s": round(result["cpu"]["planned"] - result["cpu"]["env_ready"], 2),
        "startup_cpu_s": round(result["cpu"]["submitted"], 2),
    }
    if t.get("first_record"):
        phases["to_first_record_s"] = round(t["first_record"] - started, 2)
    counts = {}
    for table in ("sessions", "metrics", "late_events", "rejected_events"):
        files = [p for p in (output / table).rglob("*") if p.is_file() and not p.name.startswith((".", "_"))]
        if files:
            counts[table] = sum(sum(1 for _ in open(p, "rb")) for p in files)
    vertices = {
        vertex: {
            "busy_s": round(m.get("accumulateBusyTimeMs", 0) / 1000, 1),
            "backpressured_s": round(m.get("accumulateBackPressuredTimeMs", 0) / 1000, 1),
            "idle_s": round(m.get("accumulateIdleTimeMs", 0) / 1000, 1),
            "records_in": int(m.get("numRecordsIn", 0)),
            "records_out": int(m.get("numRecordsOut", 0)),
        }
        for vertex, m in result["vertices"].items()
    }
    out = {
        "variant": name,
        **phases,
        "rows": counts,
        "vertices": vertices,
        "thread_cpu_s": result.get("thread_cpu_s", {}),
        **cpu_split(result.get("thread_cpu_s", {})),
        "dir": str(run_dir),
    }
    if jfr:
        out["jfr_top"] = jfr_top(run_dir / "profile.jfr")
    return out


#: Where a JFR sample's time goes: a sample with a frame of one of the first categories (JSON and checkpoints,
#: whose work happens in shared libraries) belongs to it; else, walking its stack from the executing frame
#: outwards, the first frame that matches one of the others (substrings of "package/Class.method") names it.
JFR_PRIORITY_CATEGORIES = 3
JFR_CATEGORIES = (
    ("JSON functions (JSON_VALUE, JSON_QUERY)", ("SqlJsonUtils", "jayway")),
    ("JSON format (source/sink rows)", ("formats/json",)),
    ("checkpoints", ("Snapshot", "AsyncCheckpointRunnable")),
    ("file source: read and split lines", ("connector/file", "DelimitedInputFormat", "formats/raw")),
    (
        "file sinks: write and commit",
        ("filesystem/stream", "BucketWriter", "PartitionCommitter", "FileWriter"),
    ),
    ("state TTL", ("state/ttl",)),
    ("keyed state (heap)", ("state/heap", "InternalTimer", "TimerService")),
    ("dedup", ("Deduplicate",)),
    ("window aggregation", ("operators/window", "operators/aggregate")),
    ("regular expressions", ("java/util/regex",)),
    ("dates and times", ("java/time", "DateTimeUtils", "TimestampLtz", "DateFormat", "java/util/Calendar")),
    ("hashing keys", ("MurmurHash", "hashCode", "KeySelector")),
    ("serialization and network", ("io/network", "Serializer.", "RecordWriter", "DataOutput")),
    ("generated expressions (Calc, watermark)", ("StreamExecCalc", "Watermark", "CodeGen", "Generated")),
    (
        "class loading and code generation",
        ("ClassLoader", "ZipFile", "janino", "codehaus", "java/lang/invoke"),
    ),
)


def _jfr_category(frames: list[str]) -> str:
    for category, needles in JFR_CATEGORIES[:JFR_PRIORITY_CATEGORIES]:
        if any(needle in frame for frame in frames for needle in needles):
            return category
    for frame in frames:
        for category, needles in JFR_CATEGORIES[JFR_PRIORITY_CATEGORIES:]:
            if any(needle in frame for needle in needles):
                return category
    return "other"


def jfr_top(path: Path, limit: int = 25) -> dict[str, Any]:
    """A JFR recording's samples by category (:data:`JFR_CATEGORIES`), by thread and by hottest frame."""
    java = os.path.realpath(subprocess.check_output(["which", "java"], text=True).strip())
    java_home = Path(java).parents[1]
    printed = subprocess.run(
        [str(java_home / "bin" / "jfr"), "print", "--json", "--stack-depth", "300"]
        + ["--events", "jdk.ExecutionSample", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    events = json.loads(printed)["recording"]["events"]
    categories: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    for event in events:
        values = event["values"]
        frames = (values.get("stackTrace") or {}).get("frames") or []
        names = [f"{f['method']['type']['name']}.{f['method']['name']}" for f in frames]
        thread = (values.get("sampledThread") or {}).get("javaName") or "?"
        threads[re.sub(r"\[\d+\]|#\d+|\(\d+/\d+\)", "", thread)[:70]] += 1
        if names:
            self_time[names[0]] += 1
        categories[_jfr_category(names)] += 1
    total = max(len(events), 1)

    def share(counter: collections.Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, round(100 * count / total, 1)) for name, count in counter.most_common(n)]

    return {
        "samples": len(events),
        "categories_pct": share(categories, 20),
        "threads_pct": share(threads, 12),
        "self_pct": share(self_time, limit),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="run the variants this many times, interleaved")
    parser.add_argument("--variants", default="bare,prod", help=f"comma list or 'all' ({','.join(VARIANTS)})")
    parser.add_argument("--jfr", default="", help="comma list of variants to profile with JFR")
    parser.add_argument("--input", type=Path, default=None, help="use this events file instead of generating")
    parser.add_argument("--keep", type=Path, default=None, help="work directory to keep (default: temporary)")
    parser.add_argument("--explain", action="store_true", help="write each variant's plan (costs a planning)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child)
    from bench.flink_bench import generate
    from bench.machine import print_machine

    print_machine()
    variants = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    profiled = set(filter(None, args.jfr.split(",")))
    with tempfile.TemporaryDirectory(prefix="flink-ratio-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        source = args.input or work / "events.jsonl"
        if not args.input:
            generate(source, args.events, args.users, args.seed)
        results: dict[str, Any] = {
            "events": sum(1 for _ in open(source, "rb")),
            "input_mb": round(source.stat().st_size / 1e6, 1),
            "load_avg_start": os.getloadavg(),
            "runs": [],
        }
        for round_no in range(args.repeat):
            for name in variants:
                run = run_variant(
                    name, source, work, jfr=name in profiled and round_no == 0, explain=args.explain
                )
                run["round"] = round_no
                print(json.dumps(run), flush=True)
                results["runs"].append(run)
        results["load_avg_end"] = os.getloadavg()
    for key in ("job_s", "job_cpu_s", "operators_cpu_s"):
        medians = {
            name: statistics.median(r[key] for r in results["runs"] if r["variant"] == name)
            for name in variants
        }
        results[f"median_{key}"] = medians
        if "bare" in medians:
            results[f"ratio_to_bare_{key}"] = {n: round(medians["bare"] / v, 3) for n, v in medians.items()}
    text = json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=2)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
