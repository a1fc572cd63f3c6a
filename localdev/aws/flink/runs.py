"""The runs of the applications: which :class:`~.runtime.AppRuntime` is each application's current run, what
its events do to the application record, and how runs survive companion restarts.

Companion restarts. On SIGTERM (``restart-companion``, ``down``) the companion stops each running job with an
internal savepoint, or kills a job that has not checkpointed yet (it committed nothing), and the next companion
resumes it from there, or starts that run over; the application stays RUNNING throughout and no session is lost
or repeated. After a kill -9 the job process outlives the companion; the next companion re-adopts it by its
handle (``apps/<app>/job.json``) when it is still alive, and otherwise marks the application failed (READY).
``down`` (and an ``up`` that starts over) kills the job processes a killed companion left behind, found by the
PIDs their job directories record and checked by command line (:func:`localdev.aws.flink.jobs.kill_orphaned_jobs`).
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from typing import Any

from include.flink_lifecycle import incompatible_state_error
from localdev.aws.base import CompanionContext
from localdev.aws.flink.jobs import JobRunner, load_runner
from localdev.aws.flink.runtime import AppRuntime
from localdev.aws.flink.store import ApplicationStore, finish_operation, now_epoch


class Runs:
    """The handler's application runs; implements :class:`~.runtime.RuntimeEvents` under the store's lock."""

    def __init__(self, store: ApplicationStore, context: CompanionContext, log: logging.Logger):
        self.store = store
        self.lock = store.lock
        self.context = context
        self.log = log
        self.runtimes: dict[str, AppRuntime] = {}
        self._runner: JobRunner | None = None

    @property
    def runner(self) -> JobRunner:
        if self._runner is None:
            self._runner = load_runner()
        return self._runner

    def app_dir(self, key: str):
        """The private directory of one application (spool, runs, savepoints, ``job.json``)."""
        return self.context.state_dir / "apps" / key.replace("/", "__")

    def new_runtime(self, app: dict) -> AppRuntime:
        """A new run of ``app`` (a copy of its record) that reports to these runs."""
        key = self.store.key(app["region"], app["name"])
        return AppRuntime(
            copy.deepcopy(app), self.app_dir(key), self.runner, self.context.client, self, self.log
        )

    # -- companion start and stop -----------------------------------------------------------------------------
    def resume_all(self) -> None:
        """Resume what the previous companion left: finish deletes, re-adopt or resume running jobs."""
        resumed = 0
        with self.lock:
            for key, app in list(self.store.apps.items()):
                if app["status"] == "DELETING":
                    self.finish_delete(key)
                    continue
                if app["status"] in ("STARTING", "RUNNING", "UPDATING", "STOPPING", "FORCE_STOPPING"):
                    resumed += self._resume(key, app)
            self.store.save()
        self.log.info("kinesisanalytics: %d applications, %d runs resumed", len(self.store.apps), resumed)

    def _resume(self, key: str, app: dict) -> int:
        job_file = self.app_dir(key) / "job.json"
        suspended = app.pop("suspended", None)
        handle = restore = None
        if job_file.exists():
            try:
                job = json.loads(job_file.read_text())
                handle, restore = job.get("handle"), job.get("restore")
            except ValueError:
                handle = None
        stopping = app["status"] in ("STOPPING", "FORCE_STOPPING")
        if handle is not None:
            try:
                alive = self.runner.status(handle).state in ("STARTING", "RUNNING")
            except Exception as exc:
                self.log.warning("kinesisanalytics: cannot check the job of %s: %s", key, exc)
                alive = False
            if alive:
                runtime = self.new_runtime(app)
                try:
                    runtime.adopt(handle, running=app["status"] == "RUNNING", restore=restore)
                except Exception as exc:  # e.g. its stream is gone: the run cannot go on, the companion can
                    runtime.fail(f"the running job could not be taken over after a companion restart: {exc}")
                    self._set_failed(
                        app, f"the running job could not be taken over after a companion restart: {exc}"
                    )
                    return 0
                self.runtimes[key] = runtime
                if stopping:
                    runtime.stop(force=True, snapshot_name=None)
                self.log.info("kinesisanalytics: re-adopted the running job of %s", key)
                return 1
        if stopping:
            app["status"] = "READY"
            self._close_ops(app, "SUCCESSFUL")
            return 0
        if suspended is not None:
            runtime = self.new_runtime(app)
            self.runtimes[key] = runtime
            if suspended.get("kind") == "rerun":  # stopped before its first checkpoint: start it over
                runtime.start(suspended.get("restore"), bool(app.get("allow_non_restored")))
                self.log.info("kinesisanalytics: restarting %s, which was still starting at shutdown", key)
            else:
                runtime.start(suspended, bool(app.get("allow_non_restored")))
                self.log.info("kinesisanalytics: resuming %s from its companion-shutdown savepoint", key)
            return 1
        self._set_failed(
            app, "the Flink job was gone when the companion restarted (no savepoint to resume from)"
        )
        return 0

    def suspend_all(self) -> None:
        """SIGTERM: stop running jobs with an internal savepoint; the next companion resumes them."""
        with self.lock:
            runtimes = list(self.runtimes.items())
        for key, runtime in runtimes:
            saved = runtime.suspend()
            with self.lock:
                app = self.store.apps.get(key)
                if app is not None and saved is not None:
                    app["suspended"] = saved
                    self.log.info(
                        "kinesisanalytics: %s suspended (%s)", key, saved.get("savepoint") or "rerun"
                    )
        with self.lock:
            self.store.save()

    # -- runtime events --------------------------------------------------------------------------------------
    def _live(self, runtime: AppRuntime) -> dict | None:
        """The application record a runtime belongs to, if it is still that application's current run."""
        app = self.store.apps.get(runtime.key)
        if app is None or self.runtimes.get(runtime.key) is not runtime:
            return None
        return app

    def running(self, runtime: AppRuntime) -> None:
        with self.lock:
            app = self._live(runtime)
            if app is None or app["status"] not in ("STARTING", "UPDATING"):
                return
            app["status"] = "RUNNING"
            app.pop("failure", None)
            self._close_ops(app, "SUCCESSFUL", ("StartApplication", "UpdateApplication"))
            self.store.save()
        self.log.info("kinesisanalytics: %s is RUNNING", runtime.key)

    def failed(self, runtime: AppRuntime, reason: str) -> None:
        with self.lock:
            app = self._live(runtime)
            if app is None:
                return
            self.runtimes.pop(runtime.key, None)
            self._set_failed(app, restore_failure(app, runtime.restore, reason))
            self.store.save()

    def _set_failed(self, app: dict, reason: str) -> None:
        app["status"] = "READY"
        app["failure"] = {"time": now_epoch(), "reason": reason}
        app.pop("pending_update_restart", None)
        self._close_ops(app, "FAILED", error=reason)
        self.log.error("kinesisanalytics: %s failed: %s", app["name"], reason)

    def stopped(self, runtime: AppRuntime, snapshot: dict | None) -> None:
        restart = None
        with self.lock:
            app = self._live(runtime)
            if app is None:
                return
            self.runtimes.pop(runtime.key, None)
            error = None
            if snapshot is not None and snapshot.get("error"):
                error = f"the snapshot {snapshot['name']} could not be taken: {snapshot['error']}"
            elif snapshot is not None:
                self._record_snapshot(app, snapshot, version=runtime.app["version"])
            if app.pop("pending_update_restart", False) and error is None:
                restart = snapshot
                app["status"] = "UPDATING"
            else:
                forced = app["status"] == "FORCE_STOPPING"
                app["status"] = "READY"
                if error and forced:  # the forced stop killed the job during the snapshot: as asked
                    self._close_forced_stop(app, error)
                elif error:
                    self._close_ops(app, "FAILED", error=error)
                    app["failure"] = {"time": now_epoch(), "reason": error}
                else:
                    self._close_ops(app, "SUCCESSFUL", ("StopApplication",))
                    self._close_ops(
                        app, "FAILED", ("StartApplication",), error="stopped before it was running"
                    )
            if app["status"] == "UPDATING":
                new_runtime = self.new_runtime(app)
                self.runtimes[runtime.key] = new_runtime
                new_runtime.start(restart, bool(app.get("allow_non_restored")))
            self.store.save()
        self.log.info(
            "kinesisanalytics: %s stopped%s", runtime.key, " (restarting for an update)" if restart else ""
        )

    def _close_forced_stop(self, app: dict, error: str) -> None:
        """A forced stop overtook a stop with snapshot: the forced one succeeded, the snapshot one did not."""
        for op in app.get("operations", []):
            if op["operation"] == "StopApplication" and op["status"] == "IN_PROGRESS":
                if op.get("force"):
                    finish_operation(app, op["id"], "SUCCESSFUL")
                else:
                    finish_operation(
                        app, op["id"], "FAILED", f"a forced stop ended the run before the snapshot ({error})"
                    )
        self._close_ops(app, "FAILED", ("StartApplication",), error="stopped before it was running")

    def stop_failed(self, runtime: AppRuntime, reason: str) -> None:
        """StopApplication's snapshot failed and the job runs on: that stop FAILED, the application is RUNNING.

        As on AWS, the reason is the ErrorString of the failed operation (DescribeApplicationOperation); the
        application is not marked failed, and another StopApplication (forced or not) can follow. A forced stop
        that came in meanwhile goes on (FORCE_STOPPING).
        """
        with self.lock:
            app = self._live(runtime)
            if app is None:
                return
            if app["status"] == "STOPPING":
                app["status"] = "RUNNING"
            stops = [
                op
                for op in app.get("operations", [])
                if op["operation"] == "StopApplication" and op["status"] == "IN_PROGRESS"
            ]
            if stops:  # the oldest open stop is the one that failed; a later (forced) one is still running
                finish_operation(app, stops[0]["id"], "FAILED", reason)
            self.store.save()
        self.log.error("kinesisanalytics: stopping %s failed: %s", runtime.key, reason)

    def snapshot_done(self, runtime: AppRuntime, name: str, snapshot: dict | None, error: str | None) -> None:
        with self.lock:
            app = self.store.apps.get(runtime.key)
            if app is None:
                return
            snap = app.get("snapshots", {}).get(name)
            if snap is None:
                return
            if snapshot is not None:
                snap.update(
                    status="READY",
                    savepoint=snapshot["savepoint"],
                    spool=snapshot["spool"],
                    unpicked=snapshot.get("unpicked"),
                )
                self._close_ops(app, "SUCCESSFUL", ("CreateApplicationSnapshot",))
            else:
                snap["status"] = "FAILED"
                snap["error"] = error
                self._close_ops(app, "FAILED", ("CreateApplicationSnapshot",), error=error)
            self.store.save()

    def _record_snapshot(self, app: dict, snapshot: dict, version: int) -> None:
        """An automatic snapshot of a stop; ``version`` is the one the stopped job ran (an update bumps it)."""
        app.setdefault("snapshots", {})[snapshot["name"]] = {
            "name": snapshot["name"],
            "status": "READY",
            "version": version,
            "created": now_epoch(),
            "savepoint": snapshot["savepoint"],
            "spool": snapshot["spool"],
            "unpicked": snapshot.get("unpicked"),
            "auto": True,
        }

    @staticmethod
    def _close_ops(
        app: dict, status: str, operations: tuple[str, ...] | None = None, error: str | None = None
    ) -> None:
        for op in app.get("operations", []):
            if op["status"] == "IN_PROGRESS" and (operations is None or op["operation"] in operations):
                finish_operation(app, op["id"], status, error)

    def finish_delete(self, key: str) -> None:
        """End the run of a DELETING application, then drop its directory and record."""
        runtime = self.runtimes.pop(key, None)
        if runtime is not None:
            runtime.stop(force=True, snapshot_name=None)
            runtime.done.wait(60)
        shutil.rmtree(self.app_dir(key), ignore_errors=True)
        with self.lock:
            self.store.apps.pop(key, None)
            self.store.save()
        self.log.info("kinesisanalytics: deleted %s", key)

    def stats(self, key: str) -> dict:
        """An application's status and its run's stats, for the debug route."""
        app = self.store.apps.get(key, {})
        out: dict[str, Any] = {
            "name": app.get("name"),
            "status": app.get("status"),
            "version": app.get("version"),
            "failure": app.get("failure"),
        }
        runtime = self.runtimes.get(key)
        if runtime is not None:
            out["run"] = runtime.stats()
        return out


def restore_failure(app: dict, restore: dict | None, reason: str) -> str:
    """The reason a run failed, naming the snapshot when Flink could not fit its state into the job.

    As on AWS, the application goes back to READY and the failed operation's ErrorString holds the reason; a
    snapshot of an older job graph (the SQL changed since) fails every start from it, so the reason says which
    snapshot it is, that it is older than the job, and how to start without it, before Flink's own words.
    """
    flink_says = incompatible_state_error(reason)
    if restore is None or flink_says is None:
        return reason
    name = restore.get("name") or "the savepoint"
    taken_by = (app.get("snapshots", {}).get(name) or restore).get("version")
    version = app["version"]
    if taken_by is None:
        older = ""
    elif taken_by != version:
        older = f" (taken by application version {taken_by}, the application is now version {version})"
    else:
        older = f" (taken by application version {version}, the current one)"
    return (
        f"the job could not restore snapshot {name}{older}: the snapshot belongs to an older job graph, "
        "whose state Flink cannot map onto the current job. Start with ApplicationRestoreType "
        "SKIP_RESTORE_FROM_SNAPSHOT to run it without the snapshot's state (the state is dropped and the "
        "source starts from its configured initial position), or restore a snapshot the current job took. "
        f"Flink: {flink_says}"
    )
