"""Run the sessions job locally in PyFlink, one separate process (and JVM) per job.

Used by the CLI (bounded: one time-ordered file, read to the end) and by the local endpoint's
kinesisanalyticsv2 emulation (continuous: a spool directory). The job is built by the same code as on Managed
Flink (:func:`include.flink_app.flink_job.job_from_properties`), with ``filesystem`` connectors instead of
``kinesis`` and ``s3://``. Measured traps this module is shaped by:

* parallelism 1: with several readers the watermark (and so lateness) depends on thread timing;
* ``pipeline.auto-watermark-interval`` must be > 0 or a source-side watermark is never emitted;
* files read out of arrival order make whole files late: writers drop files into ``<spool>/inbox`` and the
  runner's feeder concatenates them, in name (= arrival) order, into one new file under ``<spool>/flink``, the
  next only once the job has started reading the last, so the file source never discovers two files at once;
* checkpoints must go to the file system (the default in-memory storage fails above 5 MiB of state), and the
  restart strategy is ``none``, so a crashing job surfaces as FAILED with its reason instead of restarting
  forever;
* PyFlink 2.3's Python ``stop_with_savepoint`` wrapper is broken, so the Java JobClient is called through py4j;
  a savepoint that fails (its target cannot be written, say) leaves the job running, as Flink does: the runner
  goes on feeding and watching it and :func:`stop_job` raises :class:`SavepointError`;
* ``flink.config.0`` is applied after the runner's own configuration, so keys that would override what the
  runner relies on are refused up front (:func:`check_flink_config`);
* a bounded run takes no periodic checkpoints (its files commit when the input ends), and the CLI checks its
  input while the job starts (:func:`run_bounded`'s ``check_input``);
* the JVM runs ParallelGC, and C1 only where start-up dominates (:func:`localdev.flink_runner.config.jvm_options`).

Control and status go through files in the job directory, so a handle can be re-opened by another process
(:meth:`JobHandle.load`). Every wait has a timeout; a dead runner process reads as FAILED with its log tail.
The job directory also records the runner's and the JVM's PIDs (the JVM's command line carries a marker), so
that :func:`kill_job` can clean up after an owner that died, without ever signalling a recycled PID.

The package's parts: :mod:`.control` (start, stop, wait; one runner process per job), :mod:`.job_dir` (handle,
status and the files that carry them), :mod:`.config` (the runner's Flink configuration and the
``flink.config.0`` checks), :mod:`.feeder` (the spool inbox and its feeder), :mod:`.job_process` (the runner
process, ``python -m localdev.flink_runner``, which calls :func:`include.flink_app.main.run`), :mod:`.processes`
(finding and killing an orphaned job's processes), :mod:`.outputs` (committed sink rows) and :mod:`.bounded`
(the CLI's bounded run). Import what you need from here.
"""

from localdev.flink_runner.bounded import BoundedRun, run_bounded
from localdev.flink_runner.config import (
    FlinkConfigError,
    check_flink_config,
    local_sink_properties,
    runtime_config,
)
from localdev.flink_runner.control import (
    PROJECT_ROOT,
    start_bounded_job,
    start_job,
    stop_job,
    wait_for_job,
)
from localdev.flink_runner.feeder import SpoolFeeder, spool_events, spool_inbox, spool_source
from localdev.flink_runner.job_dir import (
    CANCELED,
    FAILED,
    FINISHED,
    JVM_MARKER_PROPERTY,
    RUNNING,
    STARTING,
    STOPPED,
    TERMINAL_STATES,
    FlinkJobError,
    JobHandle,
    JobStatus,
    SavepointError,
    describe,
    job_status,
    remove_job_dir,
    wait_for_state,
)
from localdev.flink_runner.outputs import OUTPUT_TABLES, committed_files, read_rows
from localdev.flink_runner.processes import job_processes, kill_job

__all__ = [
    "CANCELED",
    "FAILED",
    "FINISHED",
    "JVM_MARKER_PROPERTY",
    "OUTPUT_TABLES",
    "PROJECT_ROOT",
    "RUNNING",
    "STARTING",
    "STOPPED",
    "TERMINAL_STATES",
    "BoundedRun",
    "FlinkConfigError",
    "FlinkJobError",
    "JobHandle",
    "JobStatus",
    "SavepointError",
    "SpoolFeeder",
    "check_flink_config",
    "committed_files",
    "describe",
    "job_processes",
    "job_status",
    "kill_job",
    "local_sink_properties",
    "read_rows",
    "remove_job_dir",
    "run_bounded",
    "runtime_config",
    "spool_events",
    "spool_inbox",
    "spool_source",
    "start_bounded_job",
    "start_job",
    "stop_job",
    "wait_for_job",
    "wait_for_state",
]
