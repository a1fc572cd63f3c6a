"""Compaction manifests: what one records, and reading them (is an hour compacted, did data arrive after?).

The manifest is written last by :func:`include.compaction.compactor.compact_hour`, so its presence (with the
outputs it lists still in place) is the "hour is compacted" signal, and its input listing (key + ETag per raw
and error object) is what late data is compared against.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from include.compaction import layout
from include.compaction.events_table import CHECKSUM_ALGORITHM
from include.compaction.result import HourRun
from include.config import Settings

MANIFEST_VERSION = 1


def build_manifest(
    run: HourRun,
    inputs: dict[str, list[dict]],
    counts: dict[str, Any],
    outputs: dict[str, list[dict]],
    content_checksum: str,
    quarantine_checksum: str | None,
) -> dict[str, Any]:
    """The manifest of a run: ``inputs`` are the listed raw and error objects (key, ETag, size, last
    modified), ``outputs`` the published data and quarantine files (key, size, rows/records)."""
    event_date, event_hour = layout.hour_partition(run.hour)
    return {
        "manifest_version": MANIFEST_VERSION,
        "hour": layout.iso_utc(run.hour),
        "event_date": event_date,
        "event_hour": event_hour,
        "bucket": run.bucket,
        "run_id": run.run_id,
        "code_version": run.code_version,
        "created_at": layout.iso_utc(datetime.now(UTC)),
        "processing_time": layout.iso_utc(run.now),
        "max_future_skew_seconds": run.max_future_skew.total_seconds(),
        "inputs": inputs,
        "counts": counts,
        "outputs": outputs,
        "content_checksum": content_checksum,
        "checksum_algorithm": CHECKSUM_ALGORITHM,
        "quarantine_checksum": quarantine_checksum,
    }


def write_manifest(s3_client: Any, bucket: str, key: str, manifest: dict[str, Any]) -> None:
    """Put the manifest as indented JSON with sorted keys (equal manifests give equal bytes)."""
    s3_client.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"),
        ContentType="application/json",
    )


def read_manifest(
    s3_client: Any, bucket: str, hour_start: datetime, *, settings: Settings | None = None
) -> dict | None:
    """The hour's manifest, or None when the hour has not been (completely) compacted."""
    settings = settings or Settings()
    key = layout.manifest_key(settings, hour_start)
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    try:
        manifest = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"manifest s3://{bucket}/{key} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or "outputs" not in manifest or "inputs" not in manifest:
        raise ValueError(
            f"manifest s3://{bucket}/{key} lacks 'inputs'/'outputs'; was it written by compaction?"
        )
    return manifest


def hour_is_compacted(
    s3_client: Any, bucket: str, hour_start: datetime, *, settings: Settings | None = None
) -> bool:
    """True when the manifest exists and every output it lists is present with the recorded size."""
    settings = settings or Settings()
    manifest = read_manifest(s3_client, bucket, hour_start, settings=settings)
    if manifest is None:
        return False
    present: dict[str, int] = {}
    for prefix in (
        layout.compacted_hour_prefix(settings, hour_start),
        layout.quarantine_hour_prefix(settings, hour_start),
    ):
        present.update({o["Key"]: int(o["Size"]) for o in layout.list_objects(s3_client, bucket, prefix)})
    outputs = manifest["outputs"]
    listed = outputs.get("data_files", []) + outputs.get("quarantine_files", [])
    return all(present.get(o["key"]) == o["size"] for o in listed)


def find_late_objects(
    s3_client: Any, bucket: str, hour_start: datetime, *, settings: Settings | None = None
) -> list[dict]:
    """Raw objects of event hour H and error objects of arrival hour H that the manifest does not account for.

    Each entry is ``{"kind": "raw" | "error", "key", "etag", "size", "last_modified", "change": "new" |
    "changed"}``; "changed" means the key was compacted with another ETag. Without a manifest every current
    object is returned as new. Objects listed in the manifest but gone now (e.g. expired by a lifecycle rule)
    are not late data and are not reported.
    """
    settings = settings or Settings()
    manifest = read_manifest(s3_client, bucket, hour_start, settings=settings)
    known: dict[str, str] = {}
    if manifest is not None:
        inputs = manifest["inputs"]
        for obj in inputs.get("raw_objects", []) + inputs.get("error_objects", []):
            known[obj["key"]] = obj["etag"]
    late = []
    for kind, objs in (
        ("raw", layout.list_raw_objects(s3_client, bucket, settings, hour_start)),
        ("error", layout.list_error_objects(s3_client, bucket, settings, hour_start)),
    ):
        for obj in objs:
            etag = known.get(obj["key"])
            if etag == obj["etag"]:
                continue
            late.append({"kind": kind, **obj, "change": "new" if etag is None else "changed"})
    return late
