"""Upload the local job's committed sink files to the S3 paths of ``sink.config.0``.

On AWS the job's filesystem sinks write to ``s3://...`` themselves; locally they write to a directory with the
same layout and this uploader copies what Flink has *committed*: every regular file under the output directory
whose path has no component starting with ``.`` (Flink's in-progress and pending part files are hidden
``.part-*.inprogress.*`` files, renamed to ``part-*`` on the checkpoint that commits them) — so S3 never sees a
file Flink could still roll back. ``_SUCCESS`` partition markers are uploaded too, as on AWS.

Idempotent: a file's key is ``<prefix>/<path relative to the output directory>``, and a ledger
(``uploads.json``) records each uploaded file's size and mtime, so a re-scan, a companion restart or a crash
between upload and ledger write only ever re-puts the same bytes under the same key.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from localdev.aws.firehose.streams import atomic_write_json

SCAN_INTERVAL_S = 1.0


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix without trailing slash) of ``s3://bucket/prefix``; ValueError naming the value."""
    for scheme in ("s3://", "s3a://", "s3p://"):
        if url.startswith(scheme):
            rest = url[len(scheme) :]
            bucket, _, prefix = rest.partition("/")
            if not bucket:
                raise ValueError(f"sink.config.0 output.path {url!r} names no bucket")
            return bucket, prefix.strip("/")
    raise ValueError(f"sink.config.0 output.path {url!r} is not an s3:// URL")


def committed_files(root: Path) -> list[Path]:
    """Files Flink has committed under ``root`` (no hidden path component), sorted."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                out.append(Path(dirpath) / name)
    return out


class Uploader(threading.Thread):
    """Copies committed files from ``output_dir`` to ``s3://bucket/prefix`` every second until stopped."""

    def __init__(
        self,
        output_dir: Path,
        bucket: str,
        prefix: str,
        s3: Any,
        ledger_path: Path,
        log: logging.Logger,
        name: str,
    ):
        super().__init__(name=name, daemon=True)
        self.output_dir = output_dir
        self.bucket = bucket
        self.prefix = prefix
        self.s3 = s3
        self.ledger_path = ledger_path
        self.log = log
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ledger: dict[str, dict] = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
        self.last_error: str | None = None
        self.uploads = 0

    def key_for(self, path: Path) -> str:
        rel = path.relative_to(self.output_dir).as_posix()
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def sweep(self) -> int:
        """Upload every committed file not yet uploaded (or changed since); returns how many were put."""
        with self.lock:
            put = 0
            if not self.output_dir.is_dir():
                return 0
            for path in committed_files(self.output_dir):
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                rel = path.relative_to(self.output_dir).as_posix()
                mark = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
                known = self.ledger.get(rel)
                if (
                    known is not None
                    and known.get("size") == mark["size"]
                    and known.get("mtime_ns") == mark["mtime_ns"]
                ):
                    continue
                key = self.key_for(path)
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes())
                self.ledger[rel] = {**mark, "key": key, "uploaded": time.time()}
                put += 1
            if put:
                atomic_write_json(self.ledger_path, self.ledger)
                self.uploads += put
            return put

    def run(self) -> None:
        while not self.stopping.wait(SCAN_INTERVAL_S):
            try:
                self.sweep()
                self.last_error = None
            except (ClientError, BotoCoreError, OSError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.log.warning("uploader s3://%s/%s: %s; retrying", self.bucket, self.prefix, exc)

    def stop(self, final_sweep: bool = True) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(30)
        if final_sweep:
            try:
                self.sweep()
            except (ClientError, BotoCoreError, OSError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.log.error("uploader s3://%s/%s: final sweep failed: %s", self.bucket, self.prefix, exc)

    def snapshot(self) -> dict:
        return {
            "output": f"s3://{self.bucket}/{self.prefix}",
            "files_uploaded": len(self.ledger),
            "last_error": self.last_error,
        }
