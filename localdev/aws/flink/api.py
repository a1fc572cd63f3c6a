"""Managed Service for Apache Flink (kinesisanalyticsv2) served by the companion, running the job in PyFlink.

The API follows AWS: CreateApplication gives a READY application; StartApplication moves it to STARTING and, once
the local Flink job runs (submitted and a first checkpoint completed, so that it can take a savepoint), to
RUNNING; StopApplication moves it to STOPPING (FORCE_STOPPING with ``Force``) and back to READY, taking a
snapshot first when snapshots are enabled and the stop is not forced. A snapshot that cannot be taken while the
job runs on fails that StopApplication operation (with the reason) and the application stays RUNNING, so that
the stop can be retried, forced or not. Start restores per
``ApplicationRestoreConfiguration`` (latest snapshot by default, a named one, or none); UpdateApplication of a
RUNNING application goes through UPDATING: stop with a snapshot, start the new version from it.

Failures are visible, never a hang. A start that cannot run the job (missing code object, stream or bucket,
invalid properties) or a job that crashes puts the application back to READY — the provider's start waiter and
sensor treat READY as a failure — with the reason in ``ApplicationDescription`` (see
:func:`.descriptions.describe`), in the failed operation of ``ListApplicationOperations`` /
``DescribeApplicationOperation`` (for a start) and in the companion log.

How a run works locally (the job, the Kinesis bridge, the output upload) is in :mod:`.runtime`; the spool's
ordering and snapshot consistency in :mod:`.spool` and :mod:`.bridge`. The runs themselves (each application's
current run, its events, companion restarts) are kept by :class:`.runs.Runs`.

Debug routes (not AWS): ``GET /_companion/kinesisanalytics/<name>`` (bridge, uploader, job handle) and
``POST /_companion/kinesisanalytics/<name>/upload`` (upload committed output now).
"""

from __future__ import annotations

import copy
import shutil
import threading
from datetime import UTC, datetime
from typing import Any

from localdev.aws.base import AwsError, CompanionContext, ServiceHandler, ServiceRequest
from localdev.aws.flink.descriptions import (
    DEFAULT_RESTORE,
    FLINK_RUNTIMES_PREFIX,
    MAX_TAGS,
    apply_update,
    conditional_token,
    configuration_description,
    describe,
    invalid,
    operation_details,
    operation_info,
    restore_description,
    snapshot_details,
    tags_of,
)
from localdev.aws.flink.jobs import RunnerError
from localdev.aws.flink.runs import Runs
from localdev.aws.flink.store import ApplicationStore, finish_operation, new_operation, now_epoch

#: Statuses StopApplication with Force accepts (AWS's list).
FORCE_STOPPABLE = ("STARTING", "UPDATING", "STOPPING", "AUTOSCALING", "RUNNING")
MAX_SNAPSHOTS = 1000


def _epoch(value: Any, where: str) -> float:
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise invalid(f"{where} {value!r} is not a timestamp") from None


def _same_instant(a: float, b: float) -> bool:
    """Timestamps as clients send them back (botocore: millisecond precision)."""
    return abs(a - b) < 0.001 + 1e-9


def auto_snapshot_name(now: float) -> str:
    stamp = datetime.fromtimestamp(now, UTC)
    return "AutoSnapshot-" + stamp.strftime("%Y-%m-%dT%H-%M-%S-") + f"{stamp.microsecond // 1000:03d}Z"


class KinesisAnalyticsHandler(ServiceHandler):
    signing_name = "kinesisanalytics"
    target_prefixes = ("KinesisAnalytics_20180523",)
    botocore_service = "kinesisanalyticsv2"

    def __init__(self, context: CompanionContext):
        super().__init__(context)
        self.store = ApplicationStore(context.state_dir)
        self.lock = self.store.lock
        self.runs = Runs(self.store, context, self.log)

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Resume what the previous companion left: finish deletes, re-adopt or resume running jobs."""
        self.runs.resume_all()

    def stop(self) -> None:
        """SIGTERM: stop running jobs with an internal savepoint; the next companion resumes them."""
        self.runs.suspend_all()

    # -- applications ----------------------------------------------------------------------------------------
    def CreateApplication(self, req: ServiceRequest) -> dict:
        p = req.params
        name = p["ApplicationName"]
        runtime_env = p["RuntimeEnvironment"]
        if not runtime_env.startswith(FLINK_RUNTIMES_PREFIX):
            raise invalid(
                f"RuntimeEnvironment {runtime_env!r} is not supported by the local companion "
                "(Flink applications only: FLINK-1_x / FLINK-2_x)"
            )
        if p.get("ApplicationMode", "STREAMING") != "STREAMING":
            raise invalid(f"ApplicationMode {p['ApplicationMode']!r} is not supported by the local companion")
        if not p.get("ServiceExecutionRole"):
            raise invalid("ServiceExecutionRole is required for a Flink application")
        config = configuration_description(p.get("ApplicationConfiguration"))
        tags = tags_of(p.get("Tags"))
        cloudwatch = [
            {"CloudWatchLoggingOptionId": f"{i + 1}.1", **opt}
            for i, opt in enumerate(p.get("CloudWatchLoggingOptions") or [])
        ]
        key = self.store.key(req.region, name)
        with self.lock:
            if key in self.store.apps:
                raise AwsError("ResourceInUseException", f"Application {name} already exists")
            created = round(now_epoch(), 3)
            app = {
                "name": name,
                "region": req.region,
                "arn": f"arn:aws:kinesisanalytics:{req.region}:{req.account_id}:application/{name}",
                "description": p.get("ApplicationDescription", ""),
                "runtime": runtime_env,
                "role": p["ServiceExecutionRole"],
                "status": "READY",
                "version": 1,
                "created": created,
                "last_updated": created,
                "config": config,
                "restore": {"ApplicationRestoreType": DEFAULT_RESTORE},
                "allow_non_restored": False,
                "cloudwatch": cloudwatch,
                "tags": tags,
                "snapshots": {},
                "operations": [],
            }
            self.store.apps[key] = app
            self.store.save()
        self.log.info("kinesisanalytics: created %s (%s)", name, runtime_env)
        return {"ApplicationDetail": describe(app)}

    def DescribeApplication(self, req: ServiceRequest) -> dict:
        with self.lock:
            app = self.store.get(req.region, req.params["ApplicationName"], req.account_id)
            return {"ApplicationDetail": describe(app)}

    def ListApplications(self, req: ServiceRequest) -> dict:
        limit = req.params.get("Limit", 50)
        after = req.params.get("NextToken")
        with self.lock:
            apps = sorted(
                (a for a in self.store.apps.values() if a["region"] == req.region), key=lambda a: a["name"]
            )
            if after:
                apps = [a for a in apps if a["name"] > after]
            page = apps[:limit]
            out: dict[str, Any] = {
                "ApplicationSummaries": [
                    {
                        "ApplicationName": a["name"],
                        "ApplicationARN": a["arn"],
                        "ApplicationStatus": a["status"],
                        "ApplicationVersionId": a["version"],
                        "RuntimeEnvironment": a["runtime"],
                        "ApplicationMode": "STREAMING",
                    }
                    for a in page
                ]
            }
            if len(apps) > limit:
                out["NextToken"] = page[-1]["name"]
            return out

    def UpdateApplication(self, req: ServiceRequest) -> dict:
        p = req.params
        name = p["ApplicationName"]
        with self.lock:
            app = self.store.get(req.region, name, req.account_id)
            if app["status"] not in ("READY", "RUNNING"):
                raise AwsError(
                    "ResourceInUseException",
                    f"Application {name} is in {app['status']} state; UpdateApplication needs READY or RUNNING",
                )
            version = p.get("CurrentApplicationVersionId")
            token = p.get("ConditionalToken")
            if version is None and token is None:
                raise invalid("UpdateApplication needs CurrentApplicationVersionId or ConditionalToken")
            if version is not None and version != app["version"]:
                raise AwsError(
                    "ConcurrentModificationException",
                    f"The CurrentApplicationVersionId {version} does not match the current version "
                    f"{app['version']} of application {name}",
                )
            if token is not None and token != conditional_token(app):
                raise AwsError(
                    "ConcurrentModificationException",
                    f"The ConditionalToken {token!r} does not match the current one of application {name}",
                )
            changes = [
                k
                for k in p
                if k not in ("ApplicationName", "CurrentApplicationVersionId", "ConditionalToken")
            ]
            if not changes:
                raise invalid(f"UpdateApplication for {name} has nothing to update")
            new = copy.deepcopy(app)
            if p.get("ApplicationConfigurationUpdate"):
                new["config"] = apply_update(app["config"], p["ApplicationConfigurationUpdate"])
            if p.get("ServiceExecutionRoleUpdate"):
                new["role"] = p["ServiceExecutionRoleUpdate"]
            if p.get("RuntimeEnvironmentUpdate"):
                if not p["RuntimeEnvironmentUpdate"].startswith(FLINK_RUNTIMES_PREFIX):
                    raise invalid(
                        f"RuntimeEnvironmentUpdate {p['RuntimeEnvironmentUpdate']!r} is not a Flink runtime"
                    )
                new["runtime"] = p["RuntimeEnvironmentUpdate"]
            run = p.get("RunConfigurationUpdate") or {}
            if run.get("ApplicationRestoreConfiguration"):
                new["restore"] = restore_description(run)
            if "FlinkRunConfiguration" in run:
                new["allow_non_restored"] = bool(
                    run["FlinkRunConfiguration"].get("AllowNonRestoredState", False)
                )
            for upd in p.get("CloudWatchLoggingOptionUpdates") or []:
                for opt in new["cloudwatch"]:
                    if opt["CloudWatchLoggingOptionId"] == upd["CloudWatchLoggingOptionId"]:
                        if upd.get("LogStreamARNUpdate"):
                            opt["LogStreamARN"] = upd["LogStreamARNUpdate"]
                        break
                else:
                    raise invalid(
                        f"CloudWatchLoggingOptionId {upd['CloudWatchLoggingOptionId']!r} does not exist"
                    )
            now = round(now_epoch(), 3)
            new["version_updated_from"] = app["version"]
            new["version"] = app["version"] + 1
            new["version_created"] = now
            new["last_updated"] = now
            op = new_operation(new, "UpdateApplication", (app["version"], new["version"]))
            if app["status"] == "RUNNING":
                runtime = self.runs.runtimes.get(self.store.key(req.region, name))
                new["status"] = "UPDATING"
                snapshots = new["config"]["ApplicationSnapshotConfigurationDescription"]["SnapshotsEnabled"]
                if runtime is not None:
                    new["pending_update_restart"] = True
                    runtime.stop(
                        force=not snapshots, snapshot_name=auto_snapshot_name(now) if snapshots else None
                    )
            else:
                finish_operation(new, op["id"], "SUCCESSFUL")
            self.store.apps[self.store.key(req.region, name)] = new
            self.store.save()
            return {"ApplicationDetail": describe(new), "OperationId": op["id"]}

    def DeleteApplication(self, req: ServiceRequest) -> dict:
        name = req.params["ApplicationName"]
        key = self.store.key(req.region, name)
        with self.lock:
            app = self.store.get(req.region, name, req.account_id)
            if not _same_instant(_epoch(req.params["CreateTimestamp"], "CreateTimestamp"), app["created"]):
                raise invalid(f"CreateTimestamp does not match the creation time of application {name}")
            if app["status"] in ("DELETING",):
                raise AwsError("ResourceInUseException", f"Application {name} is already being deleted")
            if app["status"] in ("STARTING", "UPDATING", "STOPPING", "FORCE_STOPPING", "AUTOSCALING"):
                raise AwsError(
                    "ResourceInUseException",
                    f"Application {name} is in {app['status']} state; it can be deleted when READY or RUNNING",
                )
            app["status"] = "DELETING"
            self.store.save()
        threading.Thread(
            target=self.runs.finish_delete, args=(key,), name=f"kda-delete-{name}", daemon=True
        ).start()
        return {}

    # -- start / stop ----------------------------------------------------------------------------------------
    def StartApplication(self, req: ServiceRequest) -> dict:
        p = req.params
        name = p["ApplicationName"]
        key = self.store.key(req.region, name)
        run = p.get("RunConfiguration") or {}
        if run.get("SqlRunConfigurations"):
            raise invalid("RunConfiguration.SqlRunConfigurations is for SQL applications, not Flink")
        with self.lock:
            app = self.store.get(req.region, name, req.account_id)
            if app["status"] != "READY":
                raise AwsError(
                    "ResourceInUseException",
                    f"Application {name} is in {app['status']} state; StartApplication needs READY",
                )
            restore = (
                restore_description(run) if run.get("ApplicationRestoreConfiguration") else app["restore"]
            )
            snapshot = self._choose_snapshot(app, restore)
            app["restore"] = restore
            if "FlinkRunConfiguration" in run:
                app["allow_non_restored"] = bool(
                    run["FlinkRunConfiguration"].get("AllowNonRestoredState", False)
                )
            op = new_operation(app, "StartApplication")
            app["status"] = "STARTING"
            runtime = self.runs.new_runtime(app)
            self.runs.runtimes[key] = runtime
            self.store.save()
            runtime.start(copy.deepcopy(snapshot) if snapshot else None, bool(app.get("allow_non_restored")))
        self.log.info(
            "kinesisanalytics: starting %s (%s%s)",
            name,
            restore["ApplicationRestoreType"],
            f" from {snapshot['name']}" if snapshot else "",
        )
        return {"OperationId": op["id"]}

    @staticmethod
    def _choose_snapshot(app: dict, restore: dict) -> dict | None:
        kind = restore["ApplicationRestoreType"]
        ready = [s for s in app.get("snapshots", {}).values() if s["status"] == "READY"]
        if kind == "SKIP_RESTORE_FROM_SNAPSHOT":
            return None
        if kind == "RESTORE_FROM_CUSTOM_SNAPSHOT":
            snap = app.get("snapshots", {}).get(restore["SnapshotName"])
            if snap is None or snap["status"] != "READY":
                raise AwsError(
                    "ResourceNotFoundException",
                    f"Snapshot {restore['SnapshotName']} of application {app['name']} does not exist or is not READY",
                )
            return snap
        return max(ready, key=lambda s: s["created"]) if ready else None

    def StopApplication(self, req: ServiceRequest) -> dict:
        name = req.params["ApplicationName"]
        force = bool(req.params.get("Force", False))
        key = self.store.key(req.region, name)
        with self.lock:
            app = self.store.get(req.region, name, req.account_id)
            status = app["status"]
            runtime = self.runs.runtimes.get(key)
            if force:
                if status not in FORCE_STOPPABLE:
                    raise AwsError(
                        "ResourceInUseException",
                        f"Application {name} is in {status} state; a forced stop needs one of {', '.join(FORCE_STOPPABLE)}",
                    )
            elif status != "RUNNING":
                raise AwsError(
                    "ResourceInUseException",
                    f"Application {name} is in {status} state; StopApplication needs RUNNING",
                )
            op = new_operation(app, "StopApplication")
            op["force"] = force
            app.pop("pending_update_restart", None)
            app["status"] = "FORCE_STOPPING" if force else "STOPPING"
            if runtime is None:
                app["status"] = "READY"
                finish_operation(app, op["id"], "SUCCESSFUL")
            elif force and status == "STOPPING":
                runtime.force()
            else:
                snapshots = app["config"]["ApplicationSnapshotConfigurationDescription"]["SnapshotsEnabled"]
                name_ = auto_snapshot_name(now_epoch()) if snapshots and not force else None
                runtime.stop(force=force, snapshot_name=name_, keep_running_on_failure=True)
            self.store.save()
        return {"OperationId": op["id"]}

    # -- snapshots -------------------------------------------------------------------------------------------
    def CreateApplicationSnapshot(self, req: ServiceRequest) -> dict:
        name = req.params["ApplicationName"]
        snap_name = req.params["SnapshotName"]
        with self.lock:
            app = self.store.get(req.region, name, req.account_id)
            if not app["config"]["ApplicationSnapshotConfigurationDescription"]["SnapshotsEnabled"]:
                raise AwsError(
                    "InvalidApplicationConfigurationException",
                    f"Snapshots are disabled for application {name} (ApplicationSnapshotConfiguration.SnapshotsEnabled)",
                )
            if app["status"] != "RUNNING":
                raise AwsError(
                    "ResourceInUseException",
                    f"Application {name} is in {app['status']} state; a snapshot needs RUNNING",
                )
            if snap_name in app.get("snapshots", {}):
                raise invalid(f"Snapshot {snap_name} already exists for application {name}")
            if len(app.get("snapshots", {})) >= MAX_SNAPSHOTS:
                raise AwsError("LimitExceededException", f"Application {name} has {MAX_SNAPSHOTS} snapshots")
            runtime = self.runs.runtimes.get(self.store.key(req.region, name))
            app.setdefault("snapshots", {})[snap_name] = {
                "name": snap_name,
                "status": "CREATING",
                "version": app["version"],
                "created": now_epoch(),
                "auto": False,
            }
            new_operation(app, "CreateApplicationSnapshot")
            self.store.save()
        if runtime is not None:
            runtime.take_snapshot(snap_name)
        return {}

    def ListApplicationSnapshots(self, req: ServiceRequest) -> dict:
        p = req.params
        limit = p.get("Limit", 50)
        start = int(p["NextToken"]) if p.get("NextToken", "").isdigit() else 0
        with self.lock:
            app = self.store.get(req.region, p["ApplicationName"], req.account_id)
            snaps = sorted(app.get("snapshots", {}).values(), key=lambda s: s["created"])
            page = snaps[start : start + limit]
            out: dict[str, Any] = {"SnapshotSummaries": [snapshot_details(app, s) for s in page]}
            if start + limit < len(snaps):
                out["NextToken"] = str(start + limit)
            return out

    def DescribeApplicationSnapshot(self, req: ServiceRequest) -> dict:
        with self.lock:
            app = self.store.get(req.region, req.params["ApplicationName"], req.account_id)
            snap = app.get("snapshots", {}).get(req.params["SnapshotName"])
            if snap is None:
                raise AwsError(
                    "ResourceNotFoundException",
                    f"Snapshot {req.params['SnapshotName']} of application {app['name']} does not exist",
                )
            return {"SnapshotDetails": snapshot_details(app, snap)}

    def DeleteApplicationSnapshot(self, req: ServiceRequest) -> dict:
        p = req.params
        with self.lock:
            app = self.store.get(req.region, p["ApplicationName"], req.account_id)
            snap = app.get("snapshots", {}).get(p["SnapshotName"])
            if snap is None:
                raise AwsError(
                    "ResourceNotFoundException",
                    f"Snapshot {p['SnapshotName']} of application {app['name']} does not exist",
                )
            if not _same_instant(
                _epoch(p["SnapshotCreationTimestamp"], "SnapshotCreationTimestamp"), snap["created"]
            ):
                raise invalid(
                    f"SnapshotCreationTimestamp does not match the creation time of snapshot {snap['name']}"
                )
            if snap["status"] == "CREATING":
                raise AwsError("ResourceInUseException", f"Snapshot {snap['name']} is still being created")
            del app["snapshots"][snap["name"]]
            self.store.save()
            key = self.store.key(req.region, app["name"])
        if snap.get("savepoint"):
            shutil.rmtree(self.runs.app_dir(key) / "savepoints" / snap["name"], ignore_errors=True)
        return {}

    # -- operations and tags ---------------------------------------------------------------------------------
    def ListApplicationOperations(self, req: ServiceRequest) -> dict:
        p = req.params
        limit = p.get("Limit", 50)
        start = int(p["NextToken"]) if p.get("NextToken", "").isdigit() else 0
        with self.lock:
            app = self.store.get(req.region, p["ApplicationName"], req.account_id)
            ops = [
                o
                for o in reversed(app.get("operations", []))
                if (not p.get("Operation") or o["operation"] == p["Operation"])
                and (not p.get("OperationStatus") or o["status"] == p["OperationStatus"])
            ]
            page = ops[start : start + limit]
            out: dict[str, Any] = {"ApplicationOperationInfoList": [operation_info(o) for o in page]}
            if start + limit < len(ops):
                out["NextToken"] = str(start + limit)
            return out

    def DescribeApplicationOperation(self, req: ServiceRequest) -> dict:
        p = req.params
        with self.lock:
            app = self.store.get(req.region, p["ApplicationName"], req.account_id)
            for op in app.get("operations", []):
                if op["id"] == p["OperationId"]:
                    return {"ApplicationOperationInfoDetails": operation_details(op)}
        raise AwsError(
            "ResourceNotFoundException",
            f"Operation {p['OperationId']} of application {p['ApplicationName']} not found",
        )

    def ListTagsForResource(self, req: ServiceRequest) -> dict:
        with self.lock:
            app = self.store.by_arn(req.params["ResourceARN"], req.account_id)
            return {"Tags": [{"Key": k, "Value": v} for k, v in sorted(app.get("tags", {}).items())]}

    def TagResource(self, req: ServiceRequest) -> dict:
        with self.lock:
            app = self.store.by_arn(req.params["ResourceARN"], req.account_id)
            merged = {**app.get("tags", {}), **tags_of(req.params["Tags"])}
            if len(merged) > MAX_TAGS:
                raise AwsError(
                    "TooManyTagsException", f"Application {app['name']} would have {len(merged)} tags"
                )
            app["tags"] = merged
            self.store.save()
        return {}

    def UntagResource(self, req: ServiceRequest) -> dict:
        with self.lock:
            app = self.store.by_arn(req.params["ResourceARN"], req.account_id)
            for key in req.params["TagKeys"]:
                app.get("tags", {}).pop(key, None)
            self.store.save()
        return {}

    # -- non-AWS routes -------------------------------------------------------------------------------------
    def debug(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        """``GET /_companion/kinesisanalytics/[<name>]`` → run stats; ``POST .../<name>/upload`` → upload now."""
        region = (query.get("region") or ["us-east-1"])[0]
        parts = [p for p in path.split("/") if p]
        with self.lock:
            if not parts and method == "GET":
                return 200, {"applications": {k: self.runs.stats(k) for k in sorted(self.store.apps)}}
            if not parts:
                return 405, {"error": "use GET"}
            key = self.store.key(region, parts[0])
            if key not in self.store.apps:
                return 404, {"error": f"no application {parts[0]!r} in {region}"}
            runtime = self.runs.runtimes.get(key)
        if len(parts) == 1 and method == "GET":
            return 200, self.runs.stats(key)
        if parts[1:] == ["upload"] and method == "POST":
            if runtime is None or runtime.uploader is None:
                return 409, {"error": f"application {parts[0]!r} has no running upload"}
            try:
                count = runtime.uploader.sweep()
            except Exception as exc:
                return 502, {"error": f"{type(exc).__name__}: {exc}"}
            return 200, {"uploaded": count, **self.runs.stats(key)}
        return 404, {"error": f"no route {method} {path!r}"}


__all__ = ["KinesisAnalyticsHandler", "RunnerError"]
