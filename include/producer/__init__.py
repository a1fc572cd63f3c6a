"""Mock clickstream producer: deterministic, replayable events with optional faults, and a Kinesis writer.

``generate(params, start, end)`` returns the ground truth of an interval; ``produce_interval(...)`` generates
and sends it. See :mod:`include.producer.generator` for how determinism and split-invariance are achieved.
"""

from include.producer.generator import generate
from include.producer.kinesis_writer import KinesisWriter, ProducerDeliveryError, RateLimiter, WriteReport
from include.producer.malformed import partition_key_for
from include.producer.params import MALFORMED_KINDS, RECORD_KINDS, ProducerParams
from include.producer.produce import produce_interval
from include.producer.records import ProducedBatch, ProducedRecord

__all__ = [
    "MALFORMED_KINDS",
    "RECORD_KINDS",
    "KinesisWriter",
    "ProducedBatch",
    "ProducedRecord",
    "ProducerDeliveryError",
    "ProducerParams",
    "RateLimiter",
    "WriteReport",
    "generate",
    "partition_key_for",
    "produce_interval",
]
