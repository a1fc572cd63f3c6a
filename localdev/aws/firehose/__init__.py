"""Amazon Data Firehose for the local endpoint: the API in :mod:`.api`, S3 delivery in :mod:`.delivery`.

Stream records and their configuration are in :mod:`.streams` and :mod:`.prefixes`; delivery reads from
:mod:`.sources` (Kinesis) or :mod:`.direct_put` (the DirectPut spool), places records with
:mod:`.partitioning` and writes what :mod:`.buffer` holds.
"""

from localdev.aws.firehose.api import FirehoseHandler

__all__ = ["FirehoseHandler"]
