"""event_ids as two unsigned 64-bit integers while an hour is deduplicated and sorted.

A valid event_id is a UUID in the 8-4-4-4-12 hex form, stored lower-case, so it is exactly 128 bits: the
first 16 hex digits are ``id_hi`` and the last 16 ``id_lo``. Comparing (id_hi, id_lo) as unsigned integers
orders ids as their lower-case strings do (hex digits sort like their values), so DuckDB groups, joins and
sorts on two fixed-width integers instead of 36-character strings; the strings are rebuilt for the output.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

UUID_LENGTH = 36
#: Offsets of the 32 hex digits inside the 36-character form.
_DIGITS = np.array([i for i in range(UUID_LENGTH) if i not in (8, 13, 18, 23)])
_SHIFTS = np.arange(60, -4, -4, dtype=np.uint64)
_HEX_VALUE = np.zeros(256, dtype=np.uint64)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_VALUE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX_VALUE[_c] = 10 + _i
_HEX_DIGIT = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_TEMPLATE = np.frombuffer(b"00000000-0000-0000-0000-000000000000", dtype=np.uint8)


def split_hex(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 36)`` uint8 ASCII UUIDs (either case) -> (id_hi, id_lo) as uint64 arrays."""
    digits = _HEX_VALUE[ids[:, _DIGITS]] << np.tile(_SHIFTS, 2)
    return digits[:, :16].sum(axis=1, dtype=np.uint64), digits[:, 16:].sum(axis=1, dtype=np.uint64)


def split(event_id: str) -> tuple[int, int]:
    """One UUID string -> (id_hi, id_lo)."""
    value = int(event_id.replace("-", ""), 16)
    return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF


def strings(id_hi: np.ndarray, id_lo: np.ndarray) -> pa.Array:
    """(id_hi, id_lo) uint64 arrays -> the lower-case 8-4-4-4-12 strings, as an Arrow string array."""
    n = len(id_hi)
    out = np.empty((n, UUID_LENGTH), dtype=np.uint8)
    out[:] = _TEMPLATE
    for half, column in ((id_hi, _DIGITS[:16]), (id_lo, _DIGITS[16:])):
        nibbles = (np.asarray(half, dtype=np.uint64)[:, None] >> _SHIFTS) & np.uint64(15)
        out[:, column] = _HEX_DIGIT[nibbles]
    offsets = np.arange(0, (n + 1) * UUID_LENGTH, UUID_LENGTH, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))
