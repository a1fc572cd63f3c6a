"""Why an hour could not be compacted. Every one of them means nothing was published for the hour."""

from __future__ import annotations


class CompactionError(RuntimeError):
    """The hour could not be compacted; nothing was published."""


class RawObjectUnreadable(CompactionError):
    """An input object could not be read completely (gone, replaced since the listing, or not gzip)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"cannot read s3 object {key!r}: {problem}")
        self.key = key


class CountMismatch(CompactionError):
    """Two independent counts of the same rows disagree, so the output cannot be trusted."""
