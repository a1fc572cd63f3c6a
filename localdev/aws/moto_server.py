"""moto's server (``moto.server.main``, same arguments) with fixes to its Kinesis streams applied first.

moto 5.2.5 has three Kinesis problems that a long local run hits:

* a shard numbers its records with "last key + 1" computed without a lock, so two concurrent PutRecords on
  one shard can get the same sequence number and overwrite each other's record (measured: 8 threads x
  1,000 records lost 12-24 records);
* every put copies the shard's keys and every GetRecords scans the shard from its start: a 500-record
  PutRecords costs ~9 ms on a 1,000-record shard but ~1.8 s on a 100,000-record one;
* after a split or merge, new records are still routed to the closed parent shard.

The fixes keep moto's data structures and semantics (sequence numbers 1, 2, 3, ... per shard; resharding
still moves a parent's records into its children, as moto does): one lock, a cached append-only list of
each shard's keys (puts O(1), GetRecords O(log n + returned records)), and routing to open shards only.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import sys
import threading
from typing import Any

from moto.kinesis import models as kinesis_models

_LOCK = threading.RLock()


def _keys(shard: Any) -> list[int]:
    """The shard's sequence numbers in order, rebuilt only when moto replaced or changed ``records``."""
    records = shard.records
    cache = shard.__dict__.get("_local_aws_keys")
    if cache is None or cache[0] is not records or len(cache[1]) != len(records):
        cache = (records, list(records.keys()))
        shard._local_aws_keys = cache
    return cache[1]


def _put_record(self: Any, partition_key: str, data: str, explicit_hash_key: str) -> str:
    with _LOCK:
        keys = _keys(self)
        sequence_number = (keys[-1] if keys else 0) + 1
        self.records[sequence_number] = kinesis_models.Record(
            partition_key, data, sequence_number, explicit_hash_key
        )
        keys.append(sequence_number)
        return str(sequence_number)


def _get_records(self: Any, last_sequence_id: str, limit: int | None) -> tuple[list, int, int]:
    with _LOCK:
        keys = _keys(self)
        last = int(last_sequence_id)
        start = bisect.bisect_right(keys, last)
        chosen = keys[start : start + limit] if limit else keys[start:]
        results = [self.records[k] for k in chosen]
        millis_behind = 0
        if results:
            last = chosen[-1]
            millis_behind = int((self.records[keys[-1]].created_at - results[-1].created_at) * 1000)
        return results, last, millis_behind


def _min_sequence(self: Any) -> int:
    with _LOCK:
        keys = _keys(self)
        return keys[0] if keys else 0


def _max_sequence(self: Any) -> int:
    with _LOCK:
        keys = _keys(self)
        return keys[-1] if keys else 0


def _get_shard_for_key(self: Any, partition_key: str, explicit_hash_key: str) -> Any:
    """moto's routing, but only to open shards (moto keeps writing to a split parent) and inclusive ends."""
    if not isinstance(partition_key, str) or len(partition_key) > 256:
        raise kinesis_models.InvalidArgumentError("partition_key")
    if explicit_hash_key:
        if not isinstance(explicit_hash_key, str):
            raise kinesis_models.InvalidArgumentError("explicit_hash_key")
        int_key = int(explicit_hash_key)
        if int_key >= 2**128:
            raise kinesis_models.InvalidArgumentError("explicit_hash_key")
    else:
        int_key = int(hashlib.md5(partition_key.encode("utf-8"), usedforsecurity=False).hexdigest(), 16)
    for shard in self.shards.values():
        if shard.is_open and shard.starting_hash <= int_key <= shard.ending_hash:
            return shard
    return None


def patch_kinesis() -> None:
    shard, stream = kinesis_models.Shard, kinesis_models.Stream
    for cls, name in (
        (shard, "put_record"),
        (shard, "get_records"),
        (shard, "get_min_sequence_number"),
        (shard, "get_max_sequence_number"),
        (stream, "get_shard_for_key"),
    ):
        if not callable(getattr(cls, name, None)):
            raise RuntimeError(
                f"moto's kinesis {cls.__name__} has no {name}(); the local_aws patch needs updating"
            )
    shard.put_record = _put_record
    shard.get_records = _get_records
    shard.get_min_sequence_number = _min_sequence
    shard.get_max_sequence_number = _max_sequence
    stream.get_shard_for_key = _get_shard_for_key


def main(argv: list[str] | None = None) -> None:
    patch_kinesis()
    if os.environ.get("LOCAL_AWS_MOTO_ACCESS_LOG", "") in ("", "0", "false"):
        # One line per request would grow moto.log without bound on a long local run; errors still log.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
