"""Publishing an hour's files: upload to a staging prefix, then replace the hour's outputs, manifest last.

Readers going through the manifest never see a half-written hour, and Athena sees either the old or the new
single file: the old manifest is deleted first, staged files are copied to their final keys, final keys that
are not in the new set are deleted, then the staging keys; the caller writes the new manifest last. On any
failure the staging keys are removed and the error is raised.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from include.compaction import layout
from include.compaction.errors import CompactionError
from include.config import Settings

log = logging.getLogger(__name__)


def stage_and_publish(
    s3_client: Any,
    bucket: str,
    settings: Settings,
    hour: datetime,
    run_id: str,
    files: list[tuple[Path, str]],
    seconds: dict[str, float],
) -> None:
    """Upload each ``(local path, final key)`` under ``compacted/_staging/<run_id>/``, then publish them.

    ``seconds["upload"]`` is set to the time the uploads took.
    """
    staging_prefix = f"{layout.staging_root(settings)}{run_id}/"
    staged: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    try:
        for path, final_key in files:
            staging_key = staging_prefix + final_key
            s3_client.upload_file(str(path), bucket, staging_key)
            staged.append((staging_key, final_key))
        seconds["upload"] = time.perf_counter() - t0
        publish_staged(s3_client, bucket, staged, settings, hour)
    except BaseException:
        remove_staging(s3_client, bucket, [s for s, _ in staged])
        raise


def publish_staged(
    s3_client: Any, bucket: str, staged: list[tuple[str, str]], settings: Settings, hour: datetime
) -> None:
    """Staging -> final keys; the old manifest goes first so no manifest describes files being replaced."""
    s3_client.delete_object(Bucket=bucket, Key=layout.manifest_key(settings, hour))
    for staging_key, final_key in staged:
        s3_client.copy({"Bucket": bucket, "Key": staging_key}, bucket, final_key)
    keep = {final for _, final in staged}
    stale = [
        o["Key"]
        for prefix in (
            layout.compacted_hour_prefix(settings, hour),
            layout.quarantine_hour_prefix(settings, hour),
        )
        for o in layout.list_objects(s3_client, bucket, prefix)
        if o["Key"] not in keep
    ]
    if stale:
        log.info("deleting %d stale object(s) of %s: %s", len(stale), layout.iso_utc(hour), stale)
        delete_keys(s3_client, bucket, stale)
    delete_keys(s3_client, bucket, [s for s, _ in staged])


def remove_staging(s3_client: Any, bucket: str, keys: list[str]) -> None:
    """Best-effort removal of staged keys after a failure (the original error matters more)."""
    if not keys:
        return
    try:
        delete_keys(s3_client, bucket, keys)
    except Exception:  # leftovers live under _staging/, outside the table
        log.exception("could not delete staging objects %s after a failed compaction", keys)


def delete_keys(s3_client: Any, bucket: str, keys: list[str]) -> None:
    """DeleteObjects in batches of 1000; any per-key error fails naming the first few keys."""
    for i in range(0, len(keys), 1000):
        batch = keys[i : i + 1000]
        resp = s3_client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
        )
        errors = resp.get("Errors") or []
        if errors:
            shown = ", ".join(f"{e.get('Key')}: {e.get('Code')} {e.get('Message')}" for e in errors[:5])
            raise CompactionError(f"could not delete {len(errors)} s3 object(s) in {bucket}: {shown}")
