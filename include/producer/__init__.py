"""Mock clickstream producer: deterministic, replayable events with optional faults, and a Kinesis writer.

``generate(params, start, end)`` returns the ground truth of an interval; ``produce_interval(...)`` generates
and sends it. See :mod:`include.producer.generator` for how determinism and split-invariance are achieved.

The names below are imported on first use, so a DAG file can import :mod:`include.producer.params` (its
trigger form's source) without loading the generator and the Kinesis writer at parse time.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "generate": "include.producer.generator",
    "KinesisWriter": "include.producer.kinesis_writer",
    "ProducerDeliveryError": "include.producer.kinesis_writer",
    "RateLimiter": "include.producer.kinesis_writer",
    "WriteReport": "include.producer.kinesis_writer",
    "partition_key_for": "include.producer.malformed",
    "MALFORMED_KINDS": "include.producer.params",
    "RECORD_KINDS": "include.producer.params",
    "ProducerParams": "include.producer.params",
    "produce_interval": "include.producer.produce",
    "ProducedBatch": "include.producer.records",
    "ProducedRecord": "include.producer.records",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
