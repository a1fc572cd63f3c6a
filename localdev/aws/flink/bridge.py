"""The Kinesis → spool bridge: what the Kinesis source connector does on AWS, done by the companion locally.

It tails every shard of the application's source stream through moto (children of a reshard after their
parents, like the firehose module), orders what it read by arrival time and publishes it as spool files under
the rule of :mod:`.spool` (one file at a time, each after the job picked up the previous one). Positions go
into each file's manifest, so the bridge resumes exactly after the newest visible file.

Order. One spool file is one split of the local source, so it carries one watermark, while the AWS connector
keeps a watermark per shard: disorder *between* shards makes nothing late there. So records of all shards are
merged by arrival time (ApproximateArrivalTimestamp, milliseconds), and only records that arrived before the
time every shard is known to have been read up to are published; the rest waits for the next poll. A shard
lagging behind (a backlog read in pages) is read up to its newest record's arrival; a shard at its tip up to
the moment its GetRecords was sent. Measured without this cut: a 100,000-record backlog on two shards made
events late, and so did a live PutRecords batch landing on one shard between the polls of the two (151 late
events of 6,000 in ``make demo``, when the empty shard counted as caught up). Records that arrived in the same
millisecond (a PutRecords batch spread over shards) are put in ``client_timestamp`` order. Disorder between shards across different milliseconds (two writers far apart in
event time) can still make events late locally that AWS would keep; a time-ordered producer does not.

Each Kinesis record becomes one line: a record's trailing line break is dropped and line breaks inside it are
replaced by spaces (JSON allows whitespace there; the local source reads one record per line, where the AWS
connector reads one record per Kinesis record). Such records are counted in the bridge's stats.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from localdev.aws.firehose.sources import KinesisSource, Shard, SourceRecord
from localdev.aws.flink.spool import Spool

#: Stop reading Kinesis while this many records wait for the job to pick up the previous file.
MAX_BUFFERED_RECORDS = 200_000
MAX_BUFFERED_BYTES = 128 * 1024 * 1024
IDLE_SLEEP_MIN = 0.05
IDLE_SLEEP_MAX = 0.5
INIT_POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
_CLIENT_TIMESTAMP = re.compile(rb'"client_timestamp"\s*:\s*"([^"]{1,64})"')


def arrival_key(record: SourceRecord) -> tuple[int, bytes]:
    """Merge order of records from several shards: arrival millisecond, then client_timestamp (see above)."""
    match = _CLIENT_TIMESTAMP.search(record.data)
    return record.arrival_ms, match.group(1) if match else b""


class BridgeSource(KinesisSource):
    """The firehose module's shard tailer, also starting new shards at LATEST or AT_TIMESTAMP.

    LATEST is pinned to the epoch's start time (AT_TIMESTAMP), so a restart of the bridge inside one run still
    sees the records put since the run began instead of jumping to the stream's tip again.
    """

    def __init__(
        self, client: Any, stream_arn: str, checkpoint: dict, log: logging.Logger, start: tuple[str, float]
    ):
        super().__init__(client, stream_arn, checkpoint, log)
        self.start_type, self.start_timestamp = start

    def _iterator(self, shard: Shard) -> str:
        if shard.iterator is None and shard.last_read is None and self.start_type != "TRIM_HORIZON":
            shard.iterator = self.client.get_shard_iterator(
                StreamARN=self.stream_arn,
                ShardId=shard.shard_id,
                ShardIteratorType="AT_TIMESTAMP",
                Timestamp=datetime.fromtimestamp(self.start_timestamp, UTC),
            )["ShardIterator"]
        return super()._iterator(shard)


def parse_start(options: dict[str, str], epoch_created: float) -> tuple[str, float]:
    """(iterator type, timestamp) from the consumer properties ``source.init.position`` (+ ``.timestamp``)."""
    position = options.get("source.init.position", "TRIM_HORIZON").strip().upper()
    if position not in INIT_POSITIONS:
        raise ValueError(
            f"consumer.config.0 source.init.position must be one of {', '.join(INIT_POSITIONS)}, got {position!r}"
        )
    if position == "AT_TIMESTAMP":
        raw = options.get("source.init.timestamp")
        if not raw:
            raise ValueError(
                "consumer.config.0 source.init.position AT_TIMESTAMP needs source.init.timestamp"
            )
        try:
            stamp = float(raw)
        except ValueError:
            try:
                stamp = datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise ValueError(
                    f"consumer.config.0 source.init.timestamp must be epoch seconds or ISO-8601, got {raw!r}"
                ) from None
        return "AT_TIMESTAMP", stamp
    return position, epoch_created


def to_line(data: bytes) -> tuple[bytes, bool]:
    """The spool line of one record, and whether line breaks had to be replaced."""
    line = data.rstrip(b"\r\n")
    if b"\n" in line or b"\r" in line:
        return line.replace(b"\r", b" ").replace(b"\n", b" "), True
    return line, False


class Bridge(threading.Thread):
    """Tails one stream into the spool until stopped; ``pause()`` holds publication for a snapshot."""

    def __init__(
        self,
        spool: Spool,
        client: Any,
        stream_arn: str,
        start: tuple[str, float],
        log: logging.Logger,
        on_fatal: Callable[[str], None],
        name: str = "kda-bridge",
    ):
        super().__init__(name=name, daemon=True)
        self.spool = spool
        self.client = client
        self.stream_arn = stream_arn
        self.start_position = start
        self.log = log
        self.on_fatal = on_fatal
        self.stopping = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._idle = threading.Event()  # set while not publishing (pause() waits for it)
        self._idle.set()
        self.stats = {
            "records_read": 0,
            "records_published": 0,
            "files_published": 0,
            "records_with_line_breaks": 0,
        }
        self.last_error: str | None = None
        self.waiting_since: float | None = None
        #: (spool file, seconds): see :meth:`_give_up_on`.
        self.unread_grace: tuple[int, float] | None = None

    # -- control -------------------------------------------------------------------------------------------
    def pause(self, timeout: float = 30.0) -> None:
        """Stop publishing new files (reading Kinesis may go on); returns when no publication is under way."""
        self._resume.clear()
        self._idle.wait(timeout)

    def resume(self) -> None:
        self._resume.set()

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        self._resume.set()
        if self.is_alive():
            self.join(timeout)

    # -- the loop ------------------------------------------------------------------------------------------
    def _checkpoint_of(self, saved: dict) -> dict:
        return (saved.get("streams") or {}).get(self.stream_arn, {})

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug or an unexpected AWS answer: the run fails visibly
            self.log.exception("kinesisanalytics bridge for %s failed", self.stream_arn)
            self.on_fatal(f"Kinesis source bridge failed: {type(exc).__name__}: {exc}")

    def _run(self) -> None:
        saved = self.spool.positions()
        source = BridgeSource(
            self.client, self.stream_arn, self._checkpoint_of(saved), self.log, self.start_position
        )
        previous = self._checkpoint_of(saved)
        buffer: list[SourceRecord] = []
        buffered_bytes = 0
        last = self.spool.last_published()
        sleep = IDLE_SLEEP_MIN
        errors = 0
        cut: int | None = None
        while not self.stopping.is_set():
            got = 0
            full = len(buffer) >= MAX_BUFFERED_RECORDS or buffered_bytes >= MAX_BUFFERED_BYTES
            if not full or self._lagging(source):  # a lagging shard is read on, or nothing could be published
                try:
                    records = source.poll()
                    errors = 0
                    self.last_error = None
                except ClientError as exc:
                    code = exc.response["Error"]["Code"]
                    if code == "ResourceNotFoundException":
                        self.on_fatal(f"Kinesis stream {self.stream_arn} does not exist (any more): {exc}")
                        return
                    errors += 1
                    self.last_error = str(exc)
                    self.log.warning("bridge %s: GetRecords failed (%s); retrying", self.stream_arn, exc)
                    records = []
                except BotoCoreError as exc:
                    errors += 1
                    self.last_error = str(exc)
                    self.log.warning("bridge %s: Kinesis unreachable (%s); retrying", self.stream_arn, exc)
                    records = []
                buffer.extend(records)
                buffered_bytes += sum(len(r.data) for r in records)
                got = len(records)
                self.stats["records_read"] += got
                cut = self._cut(source)
            ready = [r for r in buffer if cut is None or r.arrival_ms <= cut]
            if ready and self._resume.is_set():
                if last is None or self.spool.picked_up(last) or self._give_up_on(last):
                    self.waiting_since = None
                    self._idle.clear()
                    try:
                        if self._resume.is_set():  # pause() may have come in between
                            held = [r for r in buffer if cut is not None and r.arrival_ms > cut]
                            last, previous = self._publish(ready, held, source, previous)
                            buffer, buffered_bytes = held, sum(len(r.data) for r in held)
                    finally:
                        self._idle.set()
                    continue
                if self.waiting_since is None:
                    self.waiting_since = time.monotonic()
            if got == 0:
                time.sleep(min(IDLE_SLEEP_MAX, sleep * (1 + errors)))
                sleep = min(IDLE_SLEEP_MAX, sleep * 2)
            else:
                sleep = IDLE_SLEEP_MIN

    @staticmethod
    def _lagging(source: BridgeSource) -> bool:
        return any(
            source._readable(shard) and source.millis_behind.get(sid, 1) > 0
            for sid, shard in source.shards.items()
        )

    def _cut(self, source: BridgeSource) -> int | None:
        """The newest arrival time (ms) up to which every readable shard has been read, or None when no shard
        is readable. Any shard may still hold records that arrived after its cut — a lagging shard its
        unread backlog, a shard at its tip what arrived since its GetRecords — and those can be older than
        what another shard returned, so only records up to the smallest cut are published (see above).
        """
        readable = [sid for sid, shard in source.shards.items() if source._readable(shard)]
        if not readable:
            return None
        return min(source.seen_before.get(sid, 0) for sid in readable) - 1

    def _give_up_on(self, seq: int) -> bool:
        """Stop waiting for the file a snapshot had not seen picked up, once it is clearly not coming.

        Such a file may have been read completely between the snapshot's pickup check and its savepoint; the
        restored job then never opens it again. Only that file gets this grace; any other unread file is
        certain to be read, and waiting for it is what keeps files in order.
        """
        if self.unread_grace is None or self.unread_grace[0] != seq or self.waiting_since is None:
            return False
        if time.monotonic() - self.waiting_since < self.unread_grace[1]:
            return False
        self.log.warning(
            "bridge %s: spool file %d was not picked up within %.0fs of the restore; it was read before the "
            "snapshot, so publication goes on",
            self.stream_arn,
            seq,
            self.unread_grace[1],
        )
        self.unread_grace = None
        return True

    def _publish(
        self, ready: list[SourceRecord], held: list[SourceRecord], source: BridgeSource, previous: dict
    ) -> tuple[int, dict]:
        """Publish ``ready`` as one file; positions cover it, never the ``held`` records after the cut."""
        ordered = sorted(ready, key=arrival_key)  # stable: otherwise each shard's own order
        lines = []
        positions: dict[str, Any] = {}
        for record in ready:  # each shard's records are in its own order, so the last one is its position
            positions[record.shard] = record.position
        for record in ordered:
            line, replaced = to_line(record.data)
            if replaced:
                self.stats["records_with_line_breaks"] += 1
            lines.append(line)
        checkpoint = source.checkpoint(positions, previous)
        for sid in {r.shard for r in held}:  # a drained shard whose tail waits is not finished yet
            entry = dict((previous.get("shards") or {}).get(sid, {}))
            if sid in positions:
                entry["sequence"] = positions[sid]
            entry.pop("finished", None)
            checkpoint["shards"][sid] = entry
        seq = self.spool.publish(lines, {"streams": {self.stream_arn: checkpoint}})
        source.saved(checkpoint)
        self.stats["records_published"] += len(lines)
        self.stats["files_published"] += 1
        return seq, checkpoint

    def snapshot(self) -> dict:
        out: dict[str, Any] = {"stream_arn": self.stream_arn, **self.stats, "last_error": self.last_error}
        if self.waiting_since is not None:
            out["waiting_for_pickup_seconds"] = round(time.monotonic() - self.waiting_since, 3)
        return out
