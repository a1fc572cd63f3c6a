"""Delivery of one Firehose stream to S3: read the source, buffer, partition, compress, write, checkpoint.

One :class:`DeliveryWorker` thread per stream. Guarantee: at least once, never lost. The worker owns its
source cursor and its buffer; a checkpoint (per Kinesis shard, the last sequence number in the buffer; for
DirectPut, the spool position) is persisted only after every object of a flush was written to S3, so a crash
at any point re-reads from the last checkpoint and, at worst, writes some records twice.

Its parts: the sources (:mod:`.sources` for Kinesis, :mod:`.direct_put` for DirectPut), dynamic partitioning
(:mod:`.partitioning`) and the buffer and the objects a flush writes (:mod:`.buffer`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from localdev.aws.firehose.buffer import Buffer, Group, build_objects
from localdev.aws.firehose.direct_put import Spool, SpoolSource
from localdev.aws.firehose.partitioning import (
    PARTITIONING_FAILED,
    PartitionFailure,
    error_document,
    extract_partition_keys,
)
from localdev.aws.firehose.sources import KinesisSource, SourceRecord
from localdev.aws.firehose.streams import DestinationPlan, atomic_write_json, build_plan

#: Safety valve for many partitions: flush everything once this much is buffered in total.
MEMORY_CAP_BYTES = 512 * 1024 * 1024
IDLE_POLL_MIN = 0.05
IDLE_POLL_MAX = 1.0


class DeliveryWorker(threading.Thread):
    """Delivers one delivery stream until stopped; see the module docstring for the guarantees."""

    def __init__(
        self,
        stream: dict,
        checkpoint_path: Path,
        kinesis_client: Any | None,
        s3_client: Any,
        spool: Spool | None,
        log: logging.Logger,
    ):
        super().__init__(name=f"firehose-{stream['name']}", daemon=True)
        self.stream = stream
        self.plan: DestinationPlan = build_plan(stream["destination"])
        self.checkpoint_path = checkpoint_path
        self.kinesis = kinesis_client
        self.s3 = s3_client
        self.spool = spool
        self.log = log
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.abandon = threading.Event()
        self.flush_requested = threading.Event()
        self.flush_done = threading.Condition()
        self.flush_generation = 0
        self._pending_stream: dict | None = None
        self._lock = threading.Lock()
        self.buffer = Buffer()
        self.source: KinesisSource | SpoolSource | None = None
        self.checkpoint: dict = json.loads(checkpoint_path.read_text()) if checkpoint_path.exists() else {}
        self.stats: dict[str, Any] = {
            "records_read": 0,
            "records_delivered": 0,
            "records_failed": 0,
            "bytes_delivered": 0,
            "objects_written": 0,
            "error_objects_written": 0,
            "flushes": 0,
            "last_flush_at": None,
            "last_error": None,
            "last_error_at": None,
        }

    # -- control, from other threads ---------------------------------------------------------------------
    def reconfigure(self, stream: dict) -> None:
        with self._lock:
            self._pending_stream = stream
        self.wake.set()

    def request_flush(self, timeout: float = 30.0) -> bool:
        """Flush now (whatever the buffering hints say) and wait until that flush is done."""
        with self.flush_done:
            target = self.flush_generation + 1
            self.flush_requested.set()
            self.wake.set()
            return self.flush_done.wait_for(lambda: self.flush_generation >= target, timeout)

    def stop(self, timeout: float = 20.0) -> None:
        """Flush what is buffered and stop; give up writing after ``timeout`` (the checkpoint then stays)."""
        self.stopping.set()
        self.wake.set()
        self.join(timeout)
        if self.is_alive():
            self.abandon.set()
            self.join(5)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out = dict(self.stats)
            buffer = self.buffer
            out["buffered_records"] = buffer.count
            out["buffered_bytes"] = buffer.size
            out["partitions_buffered"] = len(buffer.groups)
            out["checkpoint"] = self.checkpoint
        if self.source is not None:
            out.update(self.source.lag())
        return out

    # -- the loop ----------------------------------------------------------------------------------------
    def _make_source(self) -> KinesisSource | SpoolSource:
        if self.stream["type"] == "KinesisStreamAsSource":
            return KinesisSource(
                self.kinesis, self.stream["source"]["KinesisStreamARN"], self.checkpoint, self.log
            )
        assert self.spool is not None
        return SpoolSource(self.spool, self.checkpoint)

    def _error(self, what: str, exc: BaseException) -> None:
        message = f"{what}: {type(exc).__name__}: {exc}"
        with self._lock:
            self.stats["last_error"] = message
            self.stats["last_error_at"] = time.time()
        self.log.warning("delivery stream %s: %s", self.stream["name"], message)

    def run(self) -> None:
        idle = IDLE_POLL_MIN
        backoff = 0.5
        while True:
            try:
                if self.source is None:
                    self.source = self._make_source()
                self._apply_pending_config()
                if self.stopping.is_set():
                    break
                records = self.source.poll()
                backoff = 0.5
            except (ClientError, BotoCoreError, OSError) as exc:
                self._error("reading the source failed", exc)
                if self.stopping.wait(backoff):
                    break
                backoff = min(backoff * 2, 10.0)
                continue
            except Exception as exc:  # a bug: keep it visible and keep trying rather than die silently
                self.log.exception("delivery stream %s: unexpected error", self.stream["name"])
                self._error("unexpected error", exc)
                if self.stopping.wait(5):
                    break
                continue
            with self._lock:
                self.stats["records_read"] += len(records)
            for record in records:
                self._add(record)
            if self._due() or self.flush_requested.is_set() or self.source.pending_finish():
                if not self._flush():
                    break
            if records:
                idle = IDLE_POLL_MIN
                continue
            wait = idle
            if self.buffer.started is not None:
                wait = min(
                    wait, max(0.0, self.buffer.started + self.plan.interval_seconds - time.monotonic())
                )
            self.wake.wait(wait)
            self.wake.clear()
            idle = min(idle * 2, IDLE_POLL_MAX)
        # Stopping: deliver what is buffered (bounded by stop()'s timeout), then close.
        if self.buffer.count:
            self._flush()
        self._notify_flush()

    def _apply_pending_config(self) -> None:
        with self._lock:
            pending, self._pending_stream = self._pending_stream, None
        if pending is None:
            return
        # Objects already buffered were processed under the old configuration: deliver them as such.
        if self.buffer.count:
            self._flush()
        self.stream = pending
        self.plan = build_plan(pending["destination"])
        self.log.info("delivery stream %s: now at version %s", pending["name"], pending["version"])

    def _due(self) -> bool:
        started = self.buffer.started
        return started is not None and time.monotonic() - started >= self.plan.interval_seconds

    def _add(self, record: SourceRecord) -> None:
        plan = self.plan
        keys: dict[str, str] | None = None
        if plan.dynamic_partitioning:
            try:
                keys = extract_partition_keys(plan, record.data)
            except PartitionFailure as failure:
                payload = error_document(record, str(failure), self.stream["type"] == "KinesisStreamAsSource")
                group = self.buffer.add(
                    ("error", PARTITIONING_FAILED), payload, record, None, PARTITIONING_FAILED
                )
                self._maybe_flush_for_size(group)
                return
            key: tuple = ("ok", *(keys[k] for k in plan.query_keys))
        else:
            key = ("ok",)
        payload = record.data + b"\n" if plan.append_newline else record.data
        group = self.buffer.add(key, payload, record, keys, None)
        self._maybe_flush_for_size(group)

    def _maybe_flush_for_size(self, group: Group) -> None:
        if group.size >= self.plan.size_bytes or self.buffer.size >= MEMORY_CAP_BYTES:
            self._flush()

    def _notify_flush(self) -> None:
        with self.flush_done:
            self.flush_generation += 1
            self.flush_requested.clear()
            self.flush_done.notify_all()

    def _flush(self) -> bool:
        """Write every buffered group as one object, then checkpoint. False if abandoned (stop timeout)."""
        buffer = self.buffer
        assert self.source is not None
        if not buffer.count:
            if self.source.pending_finish():
                self._save_checkpoint(buffer.positions)
            self._notify_flush()
            return True
        objects = build_objects(
            self.plan, self.stream["name"], self.stream["version"], buffer.groups.values()
        )
        for key, body, _group in objects:
            backoff = 0.5
            while True:
                try:
                    self.s3.put_object(Bucket=self.plan.bucket, Key=key, Body=body)
                    break
                except (ClientError, BotoCoreError, OSError) as exc:
                    self._error(f"writing s3://{self.plan.bucket}/{key} failed (will retry)", exc)
                    if self.abandon.wait(backoff):
                        self.log.error(
                            "delivery stream %s: abandoning a flush of %d records (they stay behind "
                            "the checkpoint)",
                            self.stream["name"],
                            buffer.count,
                        )
                        return False
                    backoff = min(backoff * 2, 10.0)
        self._save_checkpoint(buffer.positions)
        # Counters move only now, with the buffer: "delivered" means written and checkpointed.
        with self._lock:
            for _key, _body, group in objects:
                if group.error_type:
                    self.stats["records_failed"] += group.count
                    self.stats["error_objects_written"] += 1
                else:
                    self.stats["records_delivered"] += group.count
                    self.stats["bytes_delivered"] += group.size
                    self.stats["objects_written"] += 1
            self.stats["flushes"] += 1
            self.stats["last_flush_at"] = time.time()
            self.buffer = Buffer()
        self._notify_flush()
        return True

    def _save_checkpoint(self, positions: dict[str, Any]) -> None:
        assert self.source is not None
        checkpoint = self.source.checkpoint(positions, self.checkpoint)
        atomic_write_json(self.checkpoint_path, checkpoint)
        self.checkpoint = checkpoint
        self.source.saved(checkpoint)
