"""Mock clickstream producer: deterministic, replayable events with optional faults, and a Kinesis writer.

``generate(params, start, end)`` returns the ground truth of an interval; ``produce_interval(...)`` generates
and sends it. See :mod:`include.producer.generator` for how determinism and split-invariance are achieved.

The names below are imported on first use, so a DAG file can import :mod:`include.producer.params` (its
trigger form's source) without loading the generator and the Kinesis writer at parse time.
"""

from __future__ import annotations

from include.lazy_exports import lazy_exports

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

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
