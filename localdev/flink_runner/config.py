"""The Flink configuration of a local run, and the checks that keep ``flink.config.0`` from overriding it.

Measured traps it is shaped by: parallelism 1 (with several readers the watermark, and so lateness, depends on
thread timing); ``pipeline.auto-watermark-interval`` > 0 (or a source-side watermark is never emitted);
checkpoints on the file system (the default in-memory storage fails above 5 MiB of state); restart strategy
``none``, so a crashing job surfaces as FAILED with its reason instead of restarting forever; every address on
127.0.0.1; the source format's jar on ``pipeline.jars`` (built from its sources on first use).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from include.flink_app import flink_job, format_jar


class FlinkConfigError(ValueError):
    """A ``flink.config.0`` key the local run cannot honour; the message names the key and its value."""


def runtime_config(
    checkpoint_dir: Path,
    checkpoint_interval_ms: int | None,
    watermark_interval_ms: int,
    restore_savepoint: str | None,
    allow_non_restored_state: bool = False,
) -> dict[str, str]:
    """The runner's own Flink configuration of one job (see the module docstring); ValueError for a 0 interval.

    ``allow_non_restored_state`` (the application's AllowNonRestoredState) lets a restore skip savepoint state
    that no operator of the job claims, as Managed Flink does; otherwise such a restore fails.

    ``checkpoint_interval_ms`` None takes no periodic checkpoints: a bounded run, which is never restored, commits
    its files when its input ends, and snapshotting the dedup state every few seconds cost it 5 % of its CPU.
    """
    if watermark_interval_ms <= 0:
        raise ValueError(
            f"watermark_interval_ms must be > 0 (0 disables periodic watermarks), got {watermark_interval_ms}"
        )
    config = {
        "parallelism.default": "1",
        "pipeline.auto-watermark-interval": f"{watermark_interval_ms} ms",
        **(
            {"execution.checkpointing.interval": f"{checkpoint_interval_ms} ms"}
            if checkpoint_interval_ms is not None
            else {}
        ),
        "execution.checkpointing.storage": "filesystem",
        "execution.checkpointing.dir": checkpoint_dir.resolve().as_uri(),
        "execution.checkpointing.savepoint-dir": (checkpoint_dir / "savepoints").resolve().as_uri(),
        "restart-strategy.type": "none",
        # The REST API serves metrics at most this old (default 10 s): the runner notes the first record with it.
        "metrics.fetcher.update-interval": "500",
        "rest.bind-address": "127.0.0.1",
        "rest.address": "127.0.0.1",
        "jobmanager.bind-host": "127.0.0.1",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
    }
    if restore_savepoint:
        config["execution.state-recovery.path"] = str(restore_savepoint)
        config["execution.state-recovery.ignore-unclaimed-state"] = (
            "true" if allow_non_restored_state else "false"
        )
    # The job's source format (include/flink_app/java); the application zip carries the same jar under lib/.
    return flink_job.with_jar(config, format_jar.cached())


#: ``flink.config.0`` key prefixes a local run refuses, with the reason the error gives.
_REFUSED_PREFIXES = (
    (
        ("execution.checkpointing.", "state.checkpoints.", "state.savepoints."),
        "the runner sets checkpoints and savepoints (the checkpoint interval comes from "
        "CheckpointConfiguration)",
    ),
    (("execution.state-recovery.",), "the restore path comes from the snapshot the application restores"),
    (
        ("restart-strategy",),
        "the restart strategy stays 'none', so that a crashing job surfaces as FAILED with its reason",
    ),
    (
        (
            "rest.",
            "jobmanager.",
            "taskmanager.",
            "blob.",
            "metrics.",
            "queryable-state.",
            "pekko.",
            "high-availability",
            "web.",
            "cluster.",
            "execution.target",
            "python.",
        ),
        "the local mini-cluster's processes, addresses and ports are the runner's (it listens on 127.0.0.1 only)",
    ),
)
#: Parallelism keys and the values that keep a local run at parallelism 1.
_PARALLELISM_KEYS = {"parallelism.default": ("1",), "table.exec.resource.default-parallelism": ("1", "-1")}


def check_flink_config(flink_config: Mapping[str, str], runtime_config: Mapping[str, str]) -> dict[str, str]:
    """``flink.config.0`` as strings, or FlinkConfigError naming the first key (and value) a local run refuses.

    The group is applied after the runner's own configuration (see :func:`include.flink_app.main.run`), so a
    key here would override it: parallelism above 1 (nondeterministic watermarks, so lateness), checkpoint and
    savepoint locations, restart strategy, addresses and ports, batch mode or no periodic watermarks are
    refused; table and pipeline options (``table.exec.source.idle-timeout``, ``pipeline.name``, ...) pass.
    """
    config = {str(k).strip(): str(v).strip() for k, v in flink_config.items()}
    for key, value in config.items():
        reason = None
        if key in _PARALLELISM_KEYS:
            if value not in _PARALLELISM_KEYS[key]:
                reason = (
                    "a local run keeps parallelism 1 (with several readers the watermark, and so which events "
                    "are late, depends on thread timing)"
                )
        elif key == "execution.runtime-mode":
            if value.lower() != "streaming":
                reason = "the sessions job runs in streaming mode"
        elif key == "pipeline.auto-watermark-interval":
            if re.fullmatch(r"0+\s*[a-z]*", value.lower()):
                reason = "an interval of 0 disables periodic watermarks, so no session would ever close"
        else:
            for prefixes, why in _REFUSED_PREFIXES:
                if key.startswith(prefixes):
                    reason = why
                    break
            else:
                if key in runtime_config:
                    reason = "the local runner sets it"
        if reason:
            raise FlinkConfigError(
                f"{flink_job.GROUP_FLINK} {key!r} = {value!r} cannot be used by the local Flink run: {reason}"
            )
    return config


#: A bounded input below this many bytes (about 190k events) is start-up bound: see :func:`jvm_options`.
SMALL_INPUT_BYTES = 32 * 1024 * 1024


def jvm_options(mode: str, input_bytes: int | None = None) -> list[str]:
    """JVM options of a local job's JVM (measured with bench/flink_ratio_bench.py on this 2-core machine).

    * ParallelGC: the job is about throughput, not pauses; 14 % less CPU than G1 over 500k events.
    * C1 only (no C2) where start-up dominates: half the JVM's CPU until the job runs (14 -> 8 CPU-s, mostly
      C2 compiling the planner), for the same job CPU over 500k events (36.0 vs 36.7 s): C2's better code only
      repays its compilations on big inputs. So: continuous jobs (local ones see a trickle of events) and bounded
      inputs under :data:`SMALL_INPUT_BYTES`.
    """
    options = ["-XX:+UseParallelGC"]
    if mode == "continuous" or (input_bytes is not None and input_bytes < SMALL_INPUT_BYTES):
        options.append("-XX:TieredStopAtLevel=1")
    return options


def local_sink_properties(output_dir: Path, rollover_interval_ms: int) -> dict[str, str]:
    """``sink.config.0`` for local directories: short rollover so committed files appear within seconds."""
    return {
        "output.path": str(output_dir.resolve()),
        "rollover.interval": f"{rollover_interval_ms} ms",
        "check.interval": f"{max(100, rollover_interval_ms // 2)} ms",
    }
