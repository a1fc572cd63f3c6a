"""Reading one listed gzip JSON-lines object from S3 as blocks of whole lines, in bounded memory.

The read is pinned to the ETag of the listing (``If-Match``), so an object replaced after it was listed fails
the compaction instead of mixing two versions into one hour, and any read or gzip failure names the key.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from typing import Any

from include.compaction.errors import RawObjectUnreadable

#: Decompressed bytes read per step: one step's lines are in memory at a time.
READ_BLOCK = 4 << 20


class ByteCount:
    """A running total the reader adds each decompressed block's size to (``uncompressed_bytes``)."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0


def read_blocks(s3_client: Any, bucket: str, obj: dict, uncompressed: ByteCount) -> Iterator[bytes]:
    """Yield the decompressed content of listed object ``obj`` (``{"key", "etag", ...}``) in blocks of whole lines.

    Every block but the last ends with a newline; the last holds what follows the last newline (a last line
    without a trailing newline is still a line). ``uncompressed.total`` grows by the decompressed size as it
    is read.
    """
    key = obj["key"]
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key, IfMatch=obj["etag"])["Body"]
    except Exception as exc:
        raise RawObjectUnreadable(key, f"GetObject (If-Match {obj['etag']}) failed: {exc}") from exc
    try:
        gz = gzip.GzipFile(fileobj=body, mode="rb")
        leftover = b""
        while True:
            try:
                chunk = gz.read(READ_BLOCK)
            except (OSError, EOFError, zlib.error) as exc:
                raise RawObjectUnreadable(key, f"not a complete GZIP stream ({exc})") from exc
            except Exception as exc:  # botocore streaming errors: connection reset, incomplete read...
                raise RawObjectUnreadable(key, f"reading the body failed ({exc})") from exc
            if not chunk:
                break
            uncompressed.total += len(chunk)
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:  # no line ends in this chunk
                leftover += chunk
                continue
            whole = chunk if cut == len(chunk) else chunk[:cut]
            yield leftover + whole if leftover else whole
            leftover = chunk[cut:]
        if leftover:
            yield leftover
    finally:
        body.close()


def read_line_blocks(
    s3_client: Any, bucket: str, obj: dict, uncompressed: ByteCount
) -> Iterator[list[bytes]]:
    """Yield the lines of listed object ``obj`` in blocks, newlines removed (see :func:`read_blocks`)."""
    for block in read_blocks(s3_client, bucket, obj, uncompressed):
        lines = block.split(b"\n")
        if block.endswith(b"\n"):
            lines.pop()
        yield lines
