"""What an application looks like through the API, kept apart from how it is stored (:mod:`.store`).

Configurations are kept in their *description* form (what DescribeApplication returns), with AWS's defaults
filled in, so that describe, update and the local run all read the same thing. This module turns
CreateApplication / UpdateApplication requests into that form (with AWS's checks the botocore model cannot
express) and an application record into the response shapes of DescribeApplication, the snapshot calls and the
operation calls.
"""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime
from typing import Any

from localdev.aws.base import AwsError

#: Flink runtimes the local companion runs (any Flink version runs on the installed PyFlink; see the handler).
FLINK_RUNTIMES_PREFIX = "FLINK-"
#: AWS defaults for ConfigurationType DEFAULT.
DEFAULT_CHECKPOINT = {
    "ConfigurationType": "DEFAULT",
    "CheckpointingEnabled": True,
    "CheckpointInterval": 60_000,
    "MinPauseBetweenCheckpoints": 5_000,
}
DEFAULT_MONITORING = {"ConfigurationType": "DEFAULT", "MetricsLevel": "APPLICATION", "LogLevel": "INFO"}
DEFAULT_PARALLELISM = {
    "ConfigurationType": "DEFAULT",
    "Parallelism": 1,
    "ParallelismPerKPU": 1,
    "CurrentParallelism": 1,
    "AutoScalingEnabled": False,
}
DEFAULT_RESTORE = "RESTORE_FROM_LATEST_SNAPSHOT"
MAX_DESCRIPTION = 1024
MAX_TAGS = 50


def invalid(message: str) -> AwsError:
    return AwsError("InvalidArgumentException", message)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def bucket_of(bucket_arn: str, where: str) -> str:
    """The bucket name of ``arn:aws:s3:::bucket``; InvalidArgumentException naming ``where`` otherwise."""
    if not bucket_arn.startswith("arn:aws:s3:::") or not bucket_arn[len("arn:aws:s3:::") :]:
        raise invalid(f"{where} {bucket_arn!r} is not an S3 bucket ARN (arn:aws:s3:::bucket-name)")
    name = bucket_arn[len("arn:aws:s3:::") :]
    if "/" in name:
        raise invalid(f"{where} {bucket_arn!r} must name a bucket only, without a key")
    return name


# -- configuration: request form → description form ------------------------------------------------------


def _code_description(code: dict, where: str) -> dict:
    content_type = code.get("CodeContentType")
    if content_type != "ZIPFILE":
        raise invalid(
            f"{where}.CodeContentType must be ZIPFILE for a Flink application, got {content_type!r} "
            "(PLAINTEXT is for SQL applications)"
        )
    content = code.get("CodeContent") or {}
    if content.get("TextContent"):
        raise invalid(f"{where}.CodeContent.TextContent is not allowed for a Flink application")
    s3 = content.get("S3ContentLocation")
    zipped = content.get("ZipFileContent")
    if bool(s3) == bool(zipped):
        raise invalid(f"{where}.CodeContent needs exactly one of S3ContentLocation and ZipFileContent")
    if s3:
        bucket_of(s3["BucketARN"], f"{where}.CodeContent.S3ContentLocation.BucketARN")
        location = {"BucketARN": s3["BucketARN"], "FileKey": s3["FileKey"]}
        if s3.get("ObjectVersion"):
            location["ObjectVersion"] = s3["ObjectVersion"]
        return {
            "CodeContentType": "ZIPFILE",
            "CodeContentDescription": {"S3ApplicationCodeLocationDescription": location},
        }
    return {
        "CodeContentType": "ZIPFILE",
        "CodeContentDescription": {"CodeMD5": hashlib.md5(zipped).hexdigest(), "CodeSize": len(zipped)},
    }


def _checkpoint(cfg: dict | None, where: str) -> dict:
    cfg = cfg or {}
    if cfg.get("ConfigurationType", "DEFAULT") == "DEFAULT":
        custom = sorted(k for k in cfg if k != "ConfigurationType")
        if custom:
            raise invalid(f"{where}: {custom} can only be set with ConfigurationType CUSTOM")
        return dict(DEFAULT_CHECKPOINT)
    out = {
        "ConfigurationType": "CUSTOM",
        "CheckpointingEnabled": cfg.get("CheckpointingEnabled", True),
        "CheckpointInterval": cfg.get("CheckpointInterval", DEFAULT_CHECKPOINT["CheckpointInterval"]),
        "MinPauseBetweenCheckpoints": cfg.get(
            "MinPauseBetweenCheckpoints", DEFAULT_CHECKPOINT["MinPauseBetweenCheckpoints"]
        ),
    }
    if out["CheckpointInterval"] < 1:
        raise invalid(f"{where}.CheckpointInterval must be at least 1 ms, got {out['CheckpointInterval']}")
    return out


def _monitoring(cfg: dict | None) -> dict:
    cfg = cfg or {}
    if cfg.get("ConfigurationType", "DEFAULT") == "DEFAULT":
        return dict(DEFAULT_MONITORING)
    return {
        "ConfigurationType": "CUSTOM",
        "MetricsLevel": cfg.get("MetricsLevel", "APPLICATION"),
        "LogLevel": cfg.get("LogLevel", "INFO"),
    }


def _parallelism(cfg: dict | None, where: str) -> dict:
    cfg = cfg or {}
    if cfg.get("ConfigurationType", "DEFAULT") == "DEFAULT":
        return dict(DEFAULT_PARALLELISM)
    parallelism = cfg.get("Parallelism", 1)
    per_kpu = cfg.get("ParallelismPerKPU", 1)
    if parallelism < 1 or per_kpu < 1:
        raise invalid(f"{where}: Parallelism and ParallelismPerKPU must be at least 1")
    return {
        "ConfigurationType": "CUSTOM",
        "Parallelism": parallelism,
        "ParallelismPerKPU": per_kpu,
        # The local run always uses parallelism 1 (deterministic lateness); describe says what runs.
        "CurrentParallelism": 1,
        "AutoScalingEnabled": bool(cfg.get("AutoScalingEnabled", False)),
    }


def property_groups(groups: list[dict] | None, where: str) -> list[dict]:
    seen: set[str] = set()
    out: list[dict] = []
    for group in groups or []:
        gid = group["PropertyGroupId"]
        if gid in seen:
            raise invalid(f"{where}: PropertyGroupId {gid!r} appears more than once")
        seen.add(gid)
        out.append(
            {"PropertyGroupId": gid, "PropertyMap": {str(k): str(v) for k, v in group["PropertyMap"].items()}}
        )
    if len(out) > 50:
        raise invalid(f"{where}: at most 50 property groups are allowed, got {len(out)}")
    return out


def _refuse_unsupported(cfg: dict, where: str, keys: tuple[str, ...]) -> None:
    """SQL and Studio (Zeppelin) applications and VPC access are not emulated: say so rather than ignore them."""
    for unsupported in keys:
        if cfg.get(unsupported):
            raise invalid(
                f"{where}.{unsupported} is not supported by the local companion (Flink applications only)"
            )


def configuration_description(cfg: dict | None) -> dict:
    """ApplicationConfigurationDescription of a Flink app from CreateApplication's ApplicationConfiguration."""
    cfg = cfg or {}
    where = "ApplicationConfiguration"
    _refuse_unsupported(
        cfg, where, ("SqlApplicationConfiguration", "ZeppelinApplicationConfiguration", "VpcConfigurations")
    )
    code = cfg.get("ApplicationCodeConfiguration")
    if not code:
        raise invalid(f"{where}.ApplicationCodeConfiguration is required for a Flink application")
    flink = cfg.get("FlinkApplicationConfiguration") or {}
    out: dict[str, Any] = {
        "ApplicationCodeConfigurationDescription": _code_description(
            code, f"{where}.ApplicationCodeConfiguration"
        ),
        "FlinkApplicationConfigurationDescription": {
            "CheckpointConfigurationDescription": _checkpoint(
                flink.get("CheckpointConfiguration"),
                f"{where}.FlinkApplicationConfiguration.CheckpointConfiguration",
            ),
            "MonitoringConfigurationDescription": _monitoring(flink.get("MonitoringConfiguration")),
            "ParallelismConfigurationDescription": _parallelism(
                flink.get("ParallelismConfiguration"),
                f"{where}.FlinkApplicationConfiguration.ParallelismConfiguration",
            ),
        },
        "EnvironmentPropertyDescriptions": {
            "PropertyGroupDescriptions": property_groups(
                (cfg.get("EnvironmentProperties") or {}).get("PropertyGroups"),
                f"{where}.EnvironmentProperties",
            )
        },
        "ApplicationSnapshotConfigurationDescription": {
            "SnapshotsEnabled": bool(
                (cfg.get("ApplicationSnapshotConfiguration") or {}).get("SnapshotsEnabled", False)
            )
        },
        "ApplicationSystemRollbackConfigurationDescription": {
            "RollbackEnabled": bool(
                (cfg.get("ApplicationSystemRollbackConfiguration") or {}).get("RollbackEnabled", False)
            )
        },
        "RunConfigurationDescription": {
            "ApplicationRestoreConfigurationDescription": {"ApplicationRestoreType": DEFAULT_RESTORE},
            "FlinkRunConfigurationDescription": {"AllowNonRestoredState": False},
        },
    }
    return out


def apply_update(current: dict, update: dict) -> dict:
    """ApplicationConfigurationDescription after UpdateApplication's ApplicationConfigurationUpdate."""
    out = copy.deepcopy(current)
    where = "ApplicationConfigurationUpdate"
    _refuse_unsupported(
        update,
        where,
        (
            "SqlApplicationConfigurationUpdate",
            "ZeppelinApplicationConfigurationUpdate",
            "VpcConfigurationUpdates",
        ),
    )
    code = update.get("ApplicationCodeConfigurationUpdate")
    if code:
        content_type = code.get("CodeContentTypeUpdate", "ZIPFILE")
        content = code.get("CodeContentUpdate") or {}
        if content.get("TextContentUpdate") or content_type != "ZIPFILE":
            raise invalid(
                f"{where}.ApplicationCodeConfigurationUpdate: a Flink application's code must be a ZIPFILE"
            )
        desc = out["ApplicationCodeConfigurationDescription"]["CodeContentDescription"]
        s3 = content.get("S3ContentLocationUpdate")
        if s3 and content.get("ZipFileContentUpdate"):
            raise invalid(f"{where}: give S3ContentLocationUpdate or ZipFileContentUpdate, not both")
        if s3:
            location = dict(desc.get("S3ApplicationCodeLocationDescription") or {})
            if "BucketARNUpdate" in s3:
                bucket_of(s3["BucketARNUpdate"], f"{where}...S3ContentLocationUpdate.BucketARNUpdate")
                location["BucketARN"] = s3["BucketARNUpdate"]
            if "FileKeyUpdate" in s3:
                location["FileKey"] = s3["FileKeyUpdate"]
            if "ObjectVersionUpdate" in s3:
                location["ObjectVersion"] = s3["ObjectVersionUpdate"]
            if not location.get("BucketARN") or not location.get("FileKey"):
                raise invalid(f"{where}: the code location needs both a BucketARN and a FileKey")
            out["ApplicationCodeConfigurationDescription"]["CodeContentDescription"] = {
                "S3ApplicationCodeLocationDescription": location
            }
        elif content.get("ZipFileContentUpdate"):
            zipped = content["ZipFileContentUpdate"]
            out["ApplicationCodeConfigurationDescription"]["CodeContentDescription"] = {
                "CodeMD5": hashlib.md5(zipped).hexdigest(),
                "CodeSize": len(zipped),
            }
    flink = update.get("FlinkApplicationConfigurationUpdate") or {}
    fdesc = out["FlinkApplicationConfigurationDescription"]
    mapping = {
        "CheckpointConfigurationUpdate": ("CheckpointConfigurationDescription", _checkpoint),
        "MonitoringConfigurationUpdate": ("MonitoringConfigurationDescription", None),
        "ParallelismConfigurationUpdate": ("ParallelismConfigurationDescription", _parallelism),
    }
    for key, (desc_key, fn) in mapping.items():
        upd = flink.get(key)
        if not upd:
            continue
        merged = {k: v for k, v in fdesc[desc_key].items() if k != "CurrentParallelism"}
        if upd.get("ConfigurationTypeUpdate") == "DEFAULT":
            merged = {"ConfigurationType": "DEFAULT"}
        else:
            for k, v in upd.items():
                merged[k[: -len("Update")] if k.endswith("Update") else k] = v
            if merged.get("ConfigurationType") == "DEFAULT" and len(merged) > 1:
                raise invalid(
                    f"{where}.FlinkApplicationConfigurationUpdate.{key}: set ConfigurationTypeUpdate CUSTOM to change values"
                )
        where_key = f"{where}.FlinkApplicationConfigurationUpdate.{key}"
        fdesc[desc_key] = _monitoring(merged) if fn is None else fn(merged, where_key)
    props = update.get("EnvironmentPropertyUpdates")
    if props is not None:
        out["EnvironmentPropertyDescriptions"] = {
            "PropertyGroupDescriptions": property_groups(
                props["PropertyGroups"], f"{where}.EnvironmentPropertyUpdates"
            )
        }
    snap = update.get("ApplicationSnapshotConfigurationUpdate")
    if snap is not None:
        out["ApplicationSnapshotConfigurationDescription"] = {
            "SnapshotsEnabled": bool(snap["SnapshotsEnabledUpdate"])
        }
    rollback = update.get("ApplicationSystemRollbackConfigurationUpdate")
    if rollback is not None:
        out["ApplicationSystemRollbackConfigurationDescription"] = {
            "RollbackEnabled": bool(rollback["RollbackEnabledUpdate"])
        }
    return out


def restore_description(run_configuration: dict | None) -> dict:
    restore = (run_configuration or {}).get("ApplicationRestoreConfiguration") or {
        "ApplicationRestoreType": DEFAULT_RESTORE
    }
    kind = restore["ApplicationRestoreType"]
    out = {"ApplicationRestoreType": kind}
    if kind == "RESTORE_FROM_CUSTOM_SNAPSHOT":
        if not restore.get("SnapshotName"):
            raise invalid(
                "ApplicationRestoreConfiguration.SnapshotName is required with RESTORE_FROM_CUSTOM_SNAPSHOT"
            )
        out["SnapshotName"] = restore["SnapshotName"]
    elif restore.get("SnapshotName"):
        raise invalid(
            f"ApplicationRestoreConfiguration.SnapshotName is only allowed with RESTORE_FROM_CUSTOM_SNAPSHOT, not {kind}"
        )
    return out


def tags_of(tags: list[dict] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for tag in tags or []:
        out[tag["Key"]] = tag.get("Value", "")
    if len(out) > MAX_TAGS:
        raise AwsError("TooManyTagsException", f"Too many tags: {len(out)} (the limit is {MAX_TAGS})")
    return out


# -- response shapes ------------------------------------------------------------------------------------------


def conditional_token(app: dict) -> str:
    return hashlib.md5(f"{app['arn']}|{app['version']}|{app['created']}".encode()).hexdigest()


def describe(app: dict) -> dict:
    """ApplicationDetail in the shape of botocore's model.

    A failed run (a start that could not run the job, or a job that crashed) puts the app back to READY, as
    AWS rolls back a failed start; the reason is appended to ApplicationDescription (and is the ErrorString of
    the failed operation in DescribeApplicationOperation), so ``describe_application`` alone shows it.
    """
    description = app.get("description") or ""
    failure = app.get("failure")
    if failure:
        note = f"[local companion] last run FAILED at {iso(failure['time'])}: {failure['reason']}"
        description = f"{description}\n\n{note}" if description else note
        description = (
            description[: MAX_DESCRIPTION - 3] + "..." if len(description) > MAX_DESCRIPTION else description
        )
    config = copy.deepcopy(app["config"])
    config["RunConfigurationDescription"] = {
        "ApplicationRestoreConfigurationDescription": copy.deepcopy(app["restore"]),
        "FlinkRunConfigurationDescription": {
            "AllowNonRestoredState": bool(app.get("allow_non_restored", False))
        },
    }
    detail: dict[str, Any] = {
        "ApplicationARN": app["arn"],
        "ApplicationName": app["name"],
        "RuntimeEnvironment": app["runtime"],
        "ApplicationStatus": app["status"],
        "ApplicationVersionId": app["version"],
        "CreateTimestamp": app["created"],
        "LastUpdateTimestamp": app.get("last_updated") or app["created"],
        "ApplicationConfigurationDescription": config,
        "ApplicationMode": "STREAMING",
        "ConditionalToken": conditional_token(app),
    }
    if description:
        detail["ApplicationDescription"] = description
    if app.get("role"):
        detail["ServiceExecutionRole"] = app["role"]
    if app.get("cloudwatch"):
        detail["CloudWatchLoggingOptionDescriptions"] = copy.deepcopy(app["cloudwatch"])
    if app.get("version_updated_from"):
        detail["ApplicationVersionUpdatedFrom"] = app["version_updated_from"]
    if app.get("version_created"):
        detail["ApplicationVersionCreateTimestamp"] = app["version_created"]
    return detail


def snapshot_details(app: dict, snap: dict) -> dict:
    return {
        "SnapshotName": snap["name"],
        "SnapshotStatus": snap["status"],
        "ApplicationVersionId": snap["version"],
        "SnapshotCreationTimestamp": snap["created"],
        "RuntimeEnvironment": app["runtime"],
    }


def operation_info(op: dict) -> dict:
    out: dict[str, Any] = {
        "Operation": op["operation"],
        "OperationId": op["id"],
        "StartTime": op["start"],
        "OperationStatus": op["status"],
    }
    if op.get("end"):
        out["EndTime"] = op["end"]
    return out


def operation_details(op: dict) -> dict:
    """ApplicationOperationInfoDetails of DescribeApplicationOperation; a failure's reason is its ErrorString."""
    details: dict[str, Any] = {
        "Operation": op["operation"],
        "StartTime": op["start"],
        "EndTime": op["end"] or op["start"],
        "OperationStatus": op["status"],
    }
    if op.get("version_change"):
        details["ApplicationVersionChangeDetails"] = {
            "ApplicationVersionUpdatedFrom": op["version_change"][0],
            "ApplicationVersionUpdatedTo": op["version_change"][1],
        }
    if op.get("error"):
        details["OperationFailureDetails"] = {"ErrorInfo": {"ErrorString": op["error"][:1000]}}
    return details
