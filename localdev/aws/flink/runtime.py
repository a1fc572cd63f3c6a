"""One run of an application: check it, bridge Kinesis into the spool, run the job, upload its output, stop it.

An :class:`AppRuntime` lives from StartApplication to the end of the stop (or failure). Its work happens in
background threads and reports back through :class:`RuntimeEvents`, which the handler turns into status
changes, snapshots and operation results. The local differences from AWS:

* the job is the repository's own sessions job (:mod:`include.flink_app.flink_job`) run by the local runner;
  the application's code zip is only checked to exist in S3 (a missing one fails the start as on AWS; the
  start-time checks and the local rewrite of the property groups are in :mod:`.plan`);
* ``consumer.config.0`` (Kinesis) is served by the :mod:`.bridge` into a spool directory that the job reads
  with the filesystem connector; ``sink.config.0``'s ``s3://`` path becomes a local directory that the
  :mod:`.uploader` copies to S3; parallelism is always 1.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from localdev.aws.firehose.streams import atomic_write_json, parse_arn
from localdev.aws.flink.bridge import Bridge
from localdev.aws.flink.jobs import RUNNING, TERMINAL, JobRequest, JobRunner, RunnerError
from localdev.aws.flink.plan import (
    GROUP_CONSUMER,
    MONITOR_INTERVAL_S,
    LaunchError,
    Plan,
    checkpoint_interval_ms,
    make_plan,
)
from localdev.aws.flink.spool import Spool, SpoolError
from localdev.aws.flink.uploader import Uploader

START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 120.0
#: How long a stop waits for the job to pick up the newest spool file before taking the savepoint.
PICKUP_WAIT_S = 5.0
#: How long a savepoint waits, beyond one checkpoint interval, for a just-started job to be ready for it.
READY_WAIT_S = 60.0
STATUS_POLL_S = 0.5
#: Run directories (job log, checkpoints) kept per application.
KEEP_RUNS = 5


class RuntimeEvents(Protocol):
    """What a run reports to its owner (the handler's :class:`~localdev.aws.flink.runs.Runs`)."""

    def running(self, runtime: AppRuntime) -> None: ...

    def failed(self, runtime: AppRuntime, reason: str) -> None: ...

    def stopped(self, runtime: AppRuntime, snapshot: dict | None) -> None: ...

    def stop_failed(self, runtime: AppRuntime, reason: str) -> None:
        """A stop with snapshot could not take the snapshot; the job runs on and the run is RUNNING again."""
        ...

    def snapshot_done(
        self, runtime: AppRuntime, name: str, snapshot: dict | None, error: str | None
    ) -> None: ...


def local_path(location: str) -> Path:
    """A savepoint location as a local path (Flink reports ``file:/...`` URIs)."""
    if location.startswith("file:"):
        location = urlparse(location).path
    return Path(location).resolve()


class AppRuntime:
    """One run of one application (see the module docstring); thread-safe, driven by the handler."""

    def __init__(
        self,
        app: dict,
        app_dir: Path,
        runner: JobRunner,
        client: Callable[..., Any],
        events: RuntimeEvents,
        log: logging.Logger,
    ):
        self.app = app  # a copy taken at start; the handler owns the live record
        self.key = f"{app['region']}/{app['name']}"
        self.app_dir = app_dir
        self.runner = runner
        self.client = client
        self.events = events
        self.log = log
        self.lock = threading.RLock()
        self.spool = Spool(app_dir / "spool", MONITOR_INTERVAL_S)
        self.bridge: Bridge | None = None
        self.uploader: Uploader | None = None
        self.handle: dict | None = None
        self.plan: Plan | None = None
        self.phase = "NEW"  # NEW → STARTING → RUNNING → STOPPING → DONE
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.swapping = False
        self.restore: dict | None = None
        self._finished = False
        self._forced = False  # a forced stop arrived (the job is being killed)
        self._watch_gen = 0  # the current watcher's number; an older one returns

    # -- paths ---------------------------------------------------------------------------------------------
    @property
    def output_dir(self) -> Path:
        return self.app_dir / "output"

    @property
    def job_file(self) -> Path:
        return self.app_dir / "job.json"

    def savepoint_dir(self, name: str) -> Path:
        return self.app_dir / "savepoints" / name

    # -- start ---------------------------------------------------------------------------------------------
    def start(self, restore: dict | None, allow_non_restored: bool) -> None:
        """Begin the run in the background; ``restore`` is a snapshot record (None: start without state)."""
        with self.lock:
            self.phase = "STARTING"
            self.restore = restore
        threading.Thread(
            target=self._start,
            args=(restore, allow_non_restored),
            name=f"kda-start-{self.app['name']}",
            daemon=True,
        ).start()

    def _start(self, restore: dict | None, allow_non_restored: bool) -> None:
        try:
            self.plan = make_plan(self.app, self.client, self.spool.source_dir(), self.output_dir)
            if restore is not None:
                try:
                    self.spool.restore(restore["spool"])
                except SpoolError as exc:
                    raise LaunchError(f"snapshot {restore['name']} cannot be restored: {exc}") from None
                if restore.get("unpicked") is not None:
                    self.spool.mark_unread(int(restore["unpicked"]))
            else:
                self.spool.new_epoch()
            self._housekeeping(restore)
            self._launch(restore.get("savepoint") if restore else None, allow_non_restored)
        except LaunchError as exc:
            self.fail(str(exc))
            return
        except RunnerError as exc:
            self.fail(str(exc))
            return
        except Exception as exc:
            self.log.exception("kinesisanalytics: starting %s failed", self.key)
            self.fail(f"{type(exc).__name__}: {exc}")
            return
        self._watch()

    def _housekeeping(self, restore: dict | None) -> None:
        """Drop what no snapshot can need any more: spool epochs, old runs, companion-shutdown savepoints."""
        keep = {int(s["spool"]["epoch"]) for s in self.app.get("snapshots", {}).values() if s.get("spool")}
        removed = self.spool.prune(keep)
        if removed:
            self.log.info("kinesisanalytics: %s: removed spool epochs %s", self.key, removed)
        runs = sorted((self.app_dir / "runs").glob("*")) if (self.app_dir / "runs").is_dir() else []
        for old in runs[:-KEEP_RUNS]:
            shutil.rmtree(old, ignore_errors=True)
        restoring = local_path(restore["savepoint"]) if restore and restore.get("savepoint") else None
        for suspended in (self.app_dir / "savepoints").glob("_suspend-*"):
            if (
                restoring is None
                or restoring != suspended.resolve()
                and suspended.resolve() not in restoring.parents
            ):
                shutil.rmtree(suspended, ignore_errors=True)

    def _launch(self, savepoint: str | None, allow_non_restored: bool) -> None:
        plan = self.plan
        assert plan is not None
        groups = {gid: dict(p) for gid, p in plan.groups.items()}
        groups[GROUP_CONSUMER]["path"] = str(self.spool.source_dir())  # the epoch may have changed on restore
        if self.cancel.is_set():
            raise LaunchError("the start was cancelled by a forced stop")
        work = self.app_dir / "runs" / time.strftime("%Y%m%dT%H%M%S")
        while work.exists():
            work = work.with_name(work.name + "x")
        work.mkdir(parents=True)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        request = JobRequest(
            name=f"kinesisanalytics/{self.key}",
            groups=groups,
            spool_dir=self.spool.epoch_dir(),
            output_dir=self.output_dir,
            work_dir=work,
            checkpoint_interval_ms=plan.checkpoint_interval_ms,
            monitor_interval_ms=int(MONITOR_INTERVAL_S * 1000),
            restore_savepoint=savepoint,
            allow_non_restored_state=allow_non_restored,
        )
        handle = self.runner.start(request)
        self._set_handle(handle)
        if self.cancel.is_set():  # stopped (or suspended) while the job was being launched
            raise LaunchError("the start was cancelled while the job was launching")
        self._start_side_threads()

    def _set_handle(self, handle: dict) -> None:
        # What the job started from goes along, so a re-adopted run can still be started over (see suspend).
        atomic_write_json(
            self.job_file, {"handle": handle, "spool_epoch": self.spool.epoch, "restore": self.restore}
        )
        self.handle = handle

    def adopt(self, handle: dict, running: bool, restore: dict | None) -> None:
        """Take over a job that survived a companion crash (kill -9): resume bridge, uploader and watching.

        ``running``: the application was already RUNNING (else it becomes so once the job is ready). Raises
        (LaunchError, ...) when the run cannot go on; the job is then killed by :meth:`fail`.
        """
        with self.lock:
            self.phase = "RUNNING" if running else "STARTING"
            self.restore = restore
        self.handle = handle
        self.plan = make_plan(self.app, self.client, self.spool.source_dir(), self.output_dir)
        self._start_side_threads()
        threading.Thread(
            target=self._watch, args=(running,), name=f"kda-watch-{self.app['name']}", daemon=True
        ).start()

    def _start_side_threads(self) -> None:
        """The bridge (Kinesis → spool) and the uploader (output → S3) of this run."""
        plan = self.plan
        assert plan is not None
        kind, stamp = plan.start
        start = (kind, stamp if kind == "AT_TIMESTAMP" else self.spool.epoch_created())
        region = parse_arn(plan.stream_arn, "kinesis", "stream")[0]
        self.bridge = Bridge(
            self.spool,
            self.client("kinesis", region),
            plan.stream_arn,
            start,
            self.log,
            self._fatal,
            name=f"kda-bridge-{self.app['name']}",
        )
        if self.restore is not None and self.restore.get("unpicked") is not None:
            grace = START_TIMEOUT_S + self._interval_s()
            self.bridge.unread_grace = (int(self.restore["unpicked"]), grace)
        self.bridge.start()
        self.uploader = Uploader(
            self.output_dir,
            plan.bucket,
            plan.prefix,
            self.client("s3", self.app["region"]),
            self.app_dir / "uploads.json",
            self.log,
            name=f"kda-upload-{self.app['name']}",
        )
        self.uploader.start()

    # -- watching --------------------------------------------------------------------------------------------
    def _watch(self, already_running: bool = False) -> None:
        """Report RUNNING once the job runs *and* can take a savepoint; report a job that ends as a failure.

        The runner says RUNNING as soon as the job is submitted, while its tasks may still be deploying; a
        savepoint then fails ("not all required tasks are currently running") and the runner process exits.
        So the application turns RUNNING only when the runner reports the job ready (a first checkpoint done).
        """
        deadline = time.monotonic() + START_TIMEOUT_S + self._interval_s()
        announced = already_running
        with self.lock:
            generation = self._watch_gen
        while not self.done.is_set():
            with self.lock:
                phase = self.phase
                if generation != self._watch_gen:
                    return
            if phase in ("STOPPING", "DONE"):
                return
            if self.swapping:  # a snapshot replaces the job; its old handle ends on purpose
                self.done.wait(STATUS_POLL_S)
                continue
            try:
                status = self.runner.status(self.handle or {})
            except Exception as exc:
                self.log.exception("kinesisanalytics: status of %s failed", self.key)
                status_state, reason = "FAILED", f"cannot read the job's status: {exc}"
            else:
                status_state, reason = status.state, status.reason
            if status_state == RUNNING and not announced and self._ready():
                with self.lock:
                    if self.phase == "STARTING":
                        self.phase = "RUNNING"
                announced = True
                self.events.running(self)
            elif status_state in TERMINAL:
                with self.lock:
                    if self.phase in ("STOPPING", "DONE"):
                        return
                self.fail(f"the Flink job ended ({status_state}): {reason or 'no reason given'}")
                return
            elif not announced and time.monotonic() > deadline:
                self.fail(
                    f"the Flink job did not reach RUNNING with a completed checkpoint within "
                    f"{START_TIMEOUT_S + self._interval_s():.0f}s"
                )
                return
            self.done.wait(STATUS_POLL_S)

    def _fatal(self, reason: str) -> None:
        """A side thread (the bridge) cannot go on: the run fails like a crashed job."""
        threading.Thread(target=self.fail, args=(reason,), name="kda-fail", daemon=True).start()

    def fail(self, reason: str) -> None:
        with self.lock:
            if self._finished:
                return
            if self.cancel.is_set():  # a stop is under way and reports the end of the run itself
                self.phase = "STOPPING"
                quiet = True
            elif self.phase == "STOPPING":
                return
            else:
                self.phase = "STOPPING"
                quiet = False
        if quiet:
            self.log.info("kinesisanalytics: %s ended during its stop: %s", self.key, reason)
            self._teardown(kill=True)
            self._finish()
            return
        self._teardown(kill=True)
        self._finish()
        self.events.failed(self, reason)

    # -- stop ------------------------------------------------------------------------------------------------
    def stop(self, force: bool, snapshot_name: str | None, keep_running_on_failure: bool = False) -> None:
        """Stop in the background; without ``force`` and with ``snapshot_name`` take a savepoint first.

        ``keep_running_on_failure`` (StopApplication): when the snapshot cannot be taken while the job runs on,
        the run goes back to RUNNING and reports :meth:`RuntimeEvents.stop_failed`, as AWS fails the operation
        and keeps the application running; another stop (forced or not) can follow. Otherwise (an update) a
        failed snapshot ends the run.
        """
        with self.lock:
            if self._finished:
                return
            if self.phase == "STOPPING":  # a stop is under way already: a forced one only hurries it
                if force:
                    self.force()
                return
            was = self.phase
            self.phase = "STOPPING"
            self.cancel.set()
            if force:
                self._forced = True
        threading.Thread(
            target=self._stop,
            args=(force, snapshot_name, was, keep_running_on_failure),
            name=f"kda-stop-{self.app['name']}",
            daemon=True,
        ).start()

    def _stop(self, force: bool, snapshot_name: str | None, was: str, keep_running: bool = False) -> None:
        snapshot = None
        try:
            if self.handle is None and was == "STARTING":
                # The start thread has not launched the job yet; it sees ``cancel`` and gives up.
                for _ in range(600):
                    if self.handle is not None or self._start_gave_up():
                        break
                    time.sleep(0.1)
            if self.handle is not None:
                if not force and snapshot_name is not None:
                    try:
                        snapshot = self._savepoint_stop(snapshot_name)
                    except Exception as exc:
                        if keep_running and self._resume_after_failed_stop(exc):
                            self.events.stop_failed(
                                self,
                                f"the snapshot {snapshot_name} could not be taken, so the application keeps "
                                f"running: {type(exc).__name__}: {exc}",
                            )
                            return
                        raise
                else:
                    self._teardown(kill=True)
        except Exception as exc:
            self.log.exception(
                "kinesisanalytics: stopping %s with a snapshot failed; killing the job", self.key
            )
            self._teardown(kill=True)
            snapshot = {"name": snapshot_name, "error": f"{type(exc).__name__}: {exc}"}
        self._teardown(kill=False)
        self._finish()
        self.events.stopped(self, snapshot)

    def _resume_after_failed_stop(self, exc: Exception) -> bool:
        """After a failed savepoint: if the job runs on (and no forced stop came), make the run RUNNING again."""
        with self.lock:
            if self._finished or self._forced or self.handle is None:
                return False
        try:
            running = self.runner.status(self.handle).state == RUNNING
        except Exception:
            running = False
        if not running:
            return False
        with self.lock:
            if self._finished or self._forced:
                return False
            self.phase = "RUNNING"
            self.cancel.clear()
            self._watch_gen += 1
        self.log.warning(
            "kinesisanalytics: %s: the stop's savepoint failed, the job runs on: %s", self.key, exc
        )
        if self.bridge is not None:
            self.bridge.resume()
        threading.Thread(
            target=self._watch, args=(True,), name=f"kda-watch-{self.app['name']}", daemon=True
        ).start()
        return True

    def _start_gave_up(self) -> bool:
        return self._finished

    def force(self) -> None:
        """A forced stop during a stop with snapshot: kill the job now (the savepoint then fails).

        If that stop has just failed and handed the run back (RUNNING again), this stops it outright.
        """
        with self.lock:
            self._forced = True
            handed_back = self.phase == "RUNNING"
        if handed_back:
            self.stop(force=True, snapshot_name=None)
            return
        self.cancel.set()
        handle = self.handle
        if handle is not None:
            try:
                self.runner.kill(handle)
            except Exception:
                self.log.exception("kinesisanalytics: killing the job of %s failed", self.key)

    def _interval_s(self) -> float:
        return (self.plan.checkpoint_interval_ms if self.plan else checkpoint_interval_ms(self.app)) / 1000

    def _ready(self) -> bool:
        try:
            return bool(self.handle) and self.runner.ready(self.handle or {})
        except Exception as exc:
            self.log.warning("kinesisanalytics: readiness of %s unknown: %s", self.key, exc)
            return False

    def _wait_ready(self, timeout: float) -> None:
        """Until the job can take a savepoint; RunnerError (with the reason) if it cannot in time."""
        deadline = time.monotonic() + timeout
        while not self._ready():
            status = self.runner.status(self.handle or {})
            if status.state in TERMINAL:
                raise RunnerError(
                    f"the Flink job ended ({status.state}): {status.reason or 'no reason given'}"
                )
            if time.monotonic() >= deadline:
                raise RunnerError(
                    f"the Flink job completed no checkpoint within {timeout:.0f}s of starting, so no savepoint "
                    "can be taken"
                )
            time.sleep(0.2)

    def _savepoint_stop(self, name: str, ready_timeout: float | None = None) -> dict:
        self._wait_ready(self._interval_s() + READY_WAIT_S if ready_timeout is None else ready_timeout)
        state = self._quiesce()
        path = self.runner.stop(self.handle or {}, self.savepoint_dir(name), STOP_TIMEOUT_S)
        self.handle = None
        if not path:
            raise RunnerError("the runner stopped the job but returned no savepoint")
        return {**state, "name": name, "savepoint": path}

    def _quiesce(self) -> dict:
        """Hold the bridge and let the job pick up the newest file; the spool state a savepoint goes with."""
        if self.bridge is not None:
            self.bridge.pause()
        unpicked = None
        last = self.spool.last_published()
        if last is not None and not self.spool.wait_picked_up(last, PICKUP_WAIT_S):
            unpicked = last
            self.log.warning(
                "kinesisanalytics: %s has not picked up spool file %d before the savepoint", self.key, last
            )
        return {"spool": self.spool.snapshot_state(), "unpicked": unpicked}

    def take_snapshot(self, name: str) -> None:
        """CreateApplicationSnapshot: a savepoint of the running job, in the background."""
        threading.Thread(
            target=self._snapshot, args=(name,), name=f"kda-snap-{self.app['name']}", daemon=True
        ).start()

    def _snapshot(self, name: str) -> None:
        try:
            with self.lock:
                if self.phase != "RUNNING" or self.handle is None:
                    raise RunnerError(f"the application is {self.phase.lower()}, not running")
            self._wait_ready(self._interval_s() + READY_WAIT_S)
            self.swapping = True
            try:
                state = self._quiesce()
                path, handle = self.runner.savepoint(self.handle, self.savepoint_dir(name), STOP_TIMEOUT_S)
                self.restore = {**state, "name": name, "savepoint": path}  # what the new job starts from
                self._set_handle(handle)
            finally:
                self.swapping = False
                if self.bridge is not None:
                    self.bridge.resume()
            self.events.snapshot_done(self, name, {**state, "name": name, "savepoint": path}, None)
        except Exception as exc:
            self.log.error("kinesisanalytics: snapshot %s of %s failed: %s", name, self.key, exc)
            self.events.snapshot_done(self, name, None, f"{type(exc).__name__}: {exc}")

    def suspend(self) -> dict | None:
        """Companion shutdown (synchronous): how the next companion resumes this run, or None if not running.

        A job ready for a savepoint stops with one (``{"kind": "savepoint", ...}``, a snapshot record). A job
        that has not completed a checkpoint yet has committed no output, so it is killed and the next
        companion simply repeats this run's start (``{"kind": "rerun", "restore": ...}``): same result, no
        loss and no duplicate.
        """
        with self.lock:
            if self._finished or self.phase not in ("STARTING", "RUNNING"):
                return None
            self.phase = "STOPPING"
            self.cancel.set()
        saved: dict | None = None
        if self.handle is not None and self._ready():
            try:
                saved = {
                    "kind": "savepoint",
                    **self._savepoint_stop(f"_suspend-{int(time.time() * 1000)}", 0),
                }
            except Exception as exc:
                self.log.error("kinesisanalytics: suspending %s with a savepoint failed: %s", self.key, exc)
        if saved is None:
            saved = {"kind": "rerun", "restore": self.restore}
        self._teardown(kill=saved["kind"] == "rerun")
        self._finish()
        return saved

    # -- teardown ------------------------------------------------------------------------------------------
    def _teardown(self, kill: bool) -> None:
        if kill and self.handle is not None:
            try:
                self.runner.kill(self.handle)
            except Exception:
                self.log.exception("kinesisanalytics: killing the job of %s failed", self.key)
            self.handle = None
        if self.bridge is not None:
            self.bridge.stop()
        if self.uploader is not None:
            self.uploader.stop(final_sweep=True)

    def _finish(self) -> None:
        with self.lock:
            self._finished = True
            self.phase = "DONE"
        self.done.set()
        self.job_file.unlink(missing_ok=True)

    def stats(self) -> dict:
        out: dict[str, Any] = {"phase": self.phase, "spool_epoch": self.spool.epoch, "handle": self.handle}
        if self.bridge is not None:
            out["bridge"] = self.bridge.snapshot()
        if self.uploader is not None:
            out["uploader"] = self.uploader.snapshot()
        return out

    def destroy(self) -> None:
        shutil.rmtree(self.app_dir, ignore_errors=True)
