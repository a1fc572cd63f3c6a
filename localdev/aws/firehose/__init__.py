"""Amazon Data Firehose for the local endpoint: the API in :mod:`.api`, S3 delivery in :mod:`.delivery`."""

from localdev.aws.firehose.api import FirehoseHandler

__all__ = ["FirehoseHandler"]
