"""Where a delivery stream's records come from: :class:`SourceRecord`, and the Kinesis shard tailer.

:class:`KinesisSource` tails every shard of a stream (children of a split or merge after their parents drain)
and checkpoints per shard; the DirectPut source is in :mod:`.direct_put`. The Flink bridge
(:mod:`localdev.aws.flink.bridge`) reuses the tailer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from localdev.aws.firehose.streams import parse_arn

GET_RECORDS_LIMIT = 10_000
SHARD_REFRESH_SECONDS = 2.0


@dataclass(slots=True)
class SourceRecord:
    """One record read from a source, with the cursor position a checkpoint takes from it."""

    data: bytes
    arrival_ms: int
    #: Cursor owner: a Kinesis shard id, or "spool" for DirectPut.
    shard: str
    #: Kinesis sequence number, or the spool position just after this record.
    position: Any


@dataclass
class Shard:
    """One tailed shard: its parents, iterator and last sequence number read."""

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
        self.shards: dict[str, Shard] = {}
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
                shard = Shard(
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

    def _readable(self, shard: Shard) -> bool:
        if shard.finished:
            return False
        return all(p not in self.shards or self.shards[p].finished for p in shard.parents)

    def _iterator(self, shard: Shard) -> str:
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

    def _drained(self, shard: Shard) -> bool:
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
