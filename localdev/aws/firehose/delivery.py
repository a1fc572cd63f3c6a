"""Delivery of one Firehose stream to S3: read the source, buffer, partition, compress, write, checkpoint.

One :class:`DeliveryWorker` thread per stream. Guarantee: at least once, never lost. The worker owns its
source cursor and its buffer; a checkpoint (per Kinesis shard, the last sequence number in the buffer; for
DirectPut, the spool position) is persisted only after every object of a flush was written to S3, so a crash
at any point re-reads from the last checkpoint and, at worst, writes some records twice.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import struct
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from localdev.aws.firehose.streams import DestinationPlan, atomic_write_json, build_plan, parse_arn

#: Firehose's error-output-type and error code for records dynamic partitioning could not place.
PARTITIONING_FAILED = "partitioning-failed"
METADATA_EXTRACTION_FAILED = "DynamicPartitioning.MetadataExtractionFailed"
#: Safety valve for many partitions: flush everything once this much is buffered in total.
MEMORY_CAP_BYTES = 512 * 1024 * 1024
GET_RECORDS_LIMIT = 10_000
SHARD_REFRESH_SECONDS = 2.0
IDLE_POLL_MIN = 0.05
IDLE_POLL_MAX = 1.0


@dataclass(slots=True)
class SourceRecord:
    data: bytes
    arrival_ms: int
    #: Cursor owner: a Kinesis shard id, or "spool" for DirectPut.
    shard: str
    #: Kinesis sequence number, or the spool position just after this record.
    position: Any


class PartitionFailure(Exception):
    pass


# -- sources ------------------------------------------------------------------------------------------------


@dataclass
class _Shard:
    shard_id: str
    parents: tuple[str, ...]
    ending_sequence: str | None = None
    iterator: str | None = None
    last_read: str | None = None
    finished: bool = False


class KinesisSource:
    """Tails every shard of a Kinesis stream; children of a split or merge start after their parents drain."""

    def __init__(self, client: Any, stream_arn: str, checkpoint: dict, log: logging.Logger):
        self.client = client
        self.stream_arn = stream_arn
        self.stream_name = parse_arn(stream_arn, "kinesis", "stream")[2]
        self.log = log
        self.shards: dict[str, _Shard] = {}
        self.millis_behind: dict[str, int] = {}
        #: Per shard, an arrival time (ms) such that every record that arrived before it has been read: the
        #: send time of a GetRecords that reached the shard's tip, else the newest arrival read.
        self.seen_before: dict[str, int] = {}
        self._checkpoint = checkpoint.get("shards", {})
        self._refreshed_at = 0.0

    def refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._refreshed_at < SHARD_REFRESH_SECONDS:
            return
        listed: list[dict] = []
        kwargs: dict[str, Any] = {"StreamARN": self.stream_arn}
        while True:
            page = self.client.list_shards(**kwargs)
            listed.extend(page.get("Shards", []))
            token = page.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}
        self._refreshed_at = time.monotonic()
        seen = set()
        for desc in listed:
            sid = desc["ShardId"]
            seen.add(sid)
            ending = desc.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
            shard = self.shards.get(sid)
            if shard is None:
                parents = tuple(
                    p for p in (desc.get("ParentShardId"), desc.get("AdjacentParentShardId")) if p
                )
                saved = self._checkpoint.get(sid, {})
                shard = _Shard(
                    sid, parents, last_read=saved.get("sequence"), finished=bool(saved.get("finished"))
                )
                self.shards[sid] = shard
                self.log.info(
                    "stream %s: tracking shard %s (parents %s)", self.stream_name, sid, parents or "-"
                )
            shard.ending_sequence = ending
        for sid in list(self.shards):
            if sid not in seen:
                self.log.info("stream %s: shard %s is gone (trimmed)", self.stream_name, sid)
                del self.shards[sid]

    def _readable(self, shard: _Shard) -> bool:
        if shard.finished:
            return False
        return all(p not in self.shards or self.shards[p].finished for p in shard.parents)

    def _iterator(self, shard: _Shard) -> str:
        if shard.iterator is None:
            kwargs: dict[str, Any] = {"StreamARN": self.stream_arn, "ShardId": shard.shard_id}
            if shard.last_read is not None:
                kwargs.update(
                    ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=shard.last_read
                )
            else:
                kwargs["ShardIteratorType"] = "TRIM_HORIZON"
            shard.iterator = self.client.get_shard_iterator(**kwargs)["ShardIterator"]
        return shard.iterator

    def poll(self) -> list[SourceRecord]:
        self.refresh()
        out: list[SourceRecord] = []
        for shard in sorted(self.shards.values(), key=lambda s: s.shard_id):
            if not self._readable(shard):
                continue
            try:
                iterator = self._iterator(shard)
                sent_ms = int(time.time() * 1000)
                resp = self.client.get_records(
                    StreamARN=self.stream_arn, ShardIterator=iterator, Limit=GET_RECORDS_LIMIT
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ExpiredIteratorException":
                    shard.iterator = None
                    continue
                raise
            records = resp.get("Records", [])
            for r in records:
                arrival = r.get("ApproximateArrivalTimestamp")
                arrival_ms = int(arrival.timestamp() * 1000) if arrival else int(time.time() * 1000)
                out.append(SourceRecord(r["Data"], arrival_ms, shard.shard_id, r["SequenceNumber"]))
            if records:
                shard.last_read = records[-1]["SequenceNumber"]
            self.millis_behind[shard.shard_id] = int(resp.get("MillisBehindLatest", 0))
            if self.millis_behind[shard.shard_id] == 0:
                # At the tip: a record not read yet is appended after this request was sent (the local Kinesis
                # stamps and appends under one lock that GetRecords takes too), so it arrives at sent_ms or later.
                self.seen_before[shard.shard_id] = sent_ms
            elif records:
                self.seen_before[shard.shard_id] = out[-1].arrival_ms
            shard.iterator = resp.get("NextShardIterator")
            if shard.iterator is None or (not records and self._drained(shard)):
                shard.finished = True
                shard.iterator = None
                self.log.info("stream %s: closed shard %s fully read", self.stream_name, shard.shard_id)
        return out

    def _drained(self, shard: _Shard) -> bool:
        if shard.ending_sequence is None:
            return False
        if shard.last_read is None:
            return True
        try:
            return int(shard.last_read) >= int(shard.ending_sequence)
        except ValueError:
            return shard.last_read >= shard.ending_sequence

    def checkpoint(self, positions: dict[str, Any], previous: dict) -> dict:
        shards = dict(previous.get("shards", {}))
        for sid, seq in positions.items():
            shards[sid] = {**shards.get(sid, {}), "sequence": seq}
        for sid, shard in self.shards.items():
            if shard.finished:  # fully read, and what was read is in this flush: nothing left behind
                shards[sid] = {**shards.get(sid, {}), "sequence": shard.last_read, "finished": True}
        return {"shards": shards}

    def pending_finish(self) -> bool:
        """True when a drained shard's 'finished' mark is not yet in the saved checkpoint."""
        return any(
            s.finished and not self._checkpoint.get(s.shard_id, {}).get("finished")
            for s in self.shards.values()
        )

    def saved(self, checkpoint: dict) -> None:
        self._checkpoint = checkpoint.get("shards", {})

    def lag(self) -> dict[str, Any]:
        return {
            "millis_behind_latest": max(self.millis_behind.values(), default=0),
            "shards": {
                sid: {
                    "last_read_sequence": s.last_read,
                    "finished": s.finished,
                    "closed": s.ending_sequence is not None,
                    "millis_behind_latest": self.millis_behind.get(sid),
                }
                for sid, s in sorted(self.shards.items())
            },
        }


_FRAME = struct.Struct(">QI")
SEGMENT_ROLL_BYTES = 16 * 1024 * 1024


class Spool:
    """Append-only segment files holding accepted DirectPut records until they are delivered.

    PutRecord answers only after the record is in the spool (written and flushed to the OS), so a killed
    companion redelivers it on restart. Positions are (segment, offset) pairs; segments wholly behind the
    checkpoint are deleted.
    """

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.committed: dict[int, int] = {}
        for path in sorted(self.dir.glob("*.seg")):
            seg = int(path.stem)
            self.committed[seg] = self._complete_length(path)
        # Never append after a possibly torn tail: always start a fresh segment.
        self.active = max(self.committed, default=0) + 1
        self.committed[self.active] = 0
        self._fh = open(self._path(self.active), "ab")  # noqa: SIM115 - kept open for appends

    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:012d}.seg"

    @staticmethod
    def _complete_length(path: Path) -> int:
        data = path.read_bytes()
        pos = 0
        while pos + _FRAME.size <= len(data):
            _, length = _FRAME.unpack_from(data, pos)
            if pos + _FRAME.size + length > len(data):
                break
            pos += _FRAME.size + length
        return pos

    def append(self, records: Iterable[bytes], arrival_ms: int) -> None:
        payload = b"".join(_FRAME.pack(arrival_ms, len(r)) + r for r in records)
        with self.lock:
            self._fh.write(payload)
            self._fh.flush()
            self.committed[self.active] += len(payload)
            if self.committed[self.active] >= SEGMENT_ROLL_BYTES:
                self._roll()

    def _roll(self) -> None:
        self._fh.close()
        self.active += 1
        self.committed[self.active] = 0
        self._fh = open(self._path(self.active), "ab")  # noqa: SIM115

    def read(self, position: tuple[int, int], max_records: int) -> list[SourceRecord]:
        seg, offset = position
        out: list[SourceRecord] = []
        while len(out) < max_records:
            with self.lock:
                end = self.committed.get(seg)
                later = [s for s in self.committed if s > seg]
            if end is None:
                if not later:
                    break
                seg, offset = min(later), 0
                continue
            if offset >= end:
                if not later:
                    break
                seg, offset = min(later), 0
                continue
            with open(self._path(seg), "rb") as fh:
                fh.seek(offset)
                data = fh.read(end - offset)
            pos = 0
            while pos < len(data) and len(out) < max_records:
                arrival_ms, length = _FRAME.unpack_from(data, pos)
                start = pos + _FRAME.size
                pos = start + length
                out.append(SourceRecord(data[start:pos], arrival_ms, "spool", (seg, offset + pos)))
            offset += pos
        return out

    def release_before(self, position: tuple[int, int]) -> None:
        """Delete segments wholly before the checkpointed position."""
        seg, _ = position
        with self.lock:
            for old in [s for s in self.committed if s < seg and s != self.active]:
                self._path(old).unlink(missing_ok=True)
                del self.committed[old]

    def first_position(self) -> tuple[int, int]:
        with self.lock:
            return (min(self.committed), 0)

    def close(self) -> None:
        with self.lock:
            self._fh.close()

    def destroy(self) -> None:
        self.close()
        for path in self.dir.glob("*.seg"):
            path.unlink(missing_ok=True)
        try:
            self.dir.rmdir()
        except OSError:
            pass


class SpoolSource:
    def __init__(self, spool: Spool, checkpoint: dict):
        self.spool = spool
        saved = checkpoint.get("spool")
        self.position: tuple[int, int] = tuple(saved) if saved else spool.first_position()  # type: ignore[assignment]

    def poll(self) -> list[SourceRecord]:
        records = self.spool.read(self.position, GET_RECORDS_LIMIT)
        if records:
            self.position = records[-1].position
        return records

    def checkpoint(self, positions: dict[str, Any], previous: dict) -> dict:
        pos = positions.get("spool")
        return {"spool": list(pos)} if pos is not None else dict(previous)

    def pending_finish(self) -> bool:
        return False

    def saved(self, checkpoint: dict) -> None:
        if checkpoint.get("spool"):
            self.spool.release_before(tuple(checkpoint["spool"]))

    def lag(self) -> dict[str, Any]:
        return {"spool_position": list(self.position)}


# -- buffering --------------------------------------------------------------------------------------------


@dataclass
class _Group:
    partition_keys: dict[str, str] | None
    error_type: str | None
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    count: int = 0
    oldest_ms: int = 0


class Buffer:
    def __init__(self) -> None:
        self.groups: dict[tuple, _Group] = {}
        self.size = 0
        self.count = 0
        self.started: float | None = None
        self.positions: dict[str, Any] = {}

    def add(
        self, key: tuple, payload: bytes, record: SourceRecord, keys: dict | None, error_type: str | None
    ) -> _Group:
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group(keys, error_type, oldest_ms=record.arrival_ms)
        group.chunks.append(payload)
        group.size += len(payload)
        group.count += 1
        group.oldest_ms = min(group.oldest_ms, record.arrival_ms)
        self.size += len(payload)
        self.count += 1
        if self.started is None:
            self.started = time.monotonic()
        self.positions[record.shard] = record.position
        return group


# -- the worker --------------------------------------------------------------------------------------------


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

    def _maybe_flush_for_size(self, group: _Group) -> None:
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


def extract_partition_keys(plan: DestinationPlan, data: bytes) -> dict[str, str]:
    """Run the MetadataExtractionQuery (real jq) on one record; PartitionFailure says why it cannot."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PartitionFailure("Non JSON record provided") from None
    try:
        results = plan.jq_program.input_text(text).all()
    except ValueError as exc:
        message = str(exc)
        if message.startswith("parse error"):
            raise PartitionFailure(f"Non JSON record provided ({message})") from None
        raise PartitionFailure(f"MetadataExtractionQuery failed: {message}") from None
    if not results:
        raise PartitionFailure("Non JSON record provided (empty record)")
    if len(results) > 1:
        raise PartitionFailure(
            f"MetadataExtractionQuery produced {len(results)} results; expected one object"
        )
    result = results[0]
    if not isinstance(result, dict):
        raise PartitionFailure(
            f"MetadataExtractionQuery must produce a JSON object, got {json.dumps(result)[:100]}"
        )
    keys: dict[str, str] = {}
    for name in plan.query_keys:
        value = result.get(name)
        if value is None or value == "":
            raise PartitionFailure(f"partitionKeys values must not be null or empty (key {name!r})")
        if isinstance(value, dict | list):
            raise PartitionFailure(f"partition key {name!r} must be a scalar, got {json.dumps(value)[:100]}")
        keys[name] = value if isinstance(value, str) else json.dumps(value)
    return keys


def error_document(record: SourceRecord, message: str, from_kinesis: bool) -> bytes:
    """One line of Firehose's error output for a record dynamic partitioning rejected."""
    doc: dict[str, Any] = {
        "attemptsMade": 1,
        "arrivalTimestamp": record.arrival_ms,
        "errorCode": METADATA_EXTRACTION_FAILED,
        "errorMessage": message,
        "attemptEndingTimestamp": int(time.time() * 1000),
        "rawData": base64.b64encode(record.data).decode("ascii"),
    }
    if from_kinesis:
        doc["sequenceNumber"] = record.position
    return json.dumps(doc, separators=(",", ":")).encode("utf-8") + b"\n"


def build_objects(
    plan: DestinationPlan, name: str, version: int, groups: Iterable[_Group]
) -> list[tuple[str, bytes, _Group]]:
    """(key, body, group) for each buffered group: one S3 object per partition per flush."""
    out = []
    for group in groups:
        when = datetime.fromtimestamp(group.oldest_ms / 1000, tz=plan.timezone)
        if group.error_type:
            prefix = plan.error_prefix.render(when, error_output_type=group.error_type)
        else:
            prefix = plan.prefix.render(when, partition_keys=group.partition_keys)
        key = f"{prefix}{name}-{version}-{when:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}{plan.extension}"
        body = b"".join(group.chunks)
        if plan.compression == "GZIP":
            body = gzip.compress(body, compresslevel=6, mtime=int(group.oldest_ms / 1000))
        out.append((key, body, group))
    return out
