"""The spill's fixed-width encodings of the string columns DuckDB groups, joins and sorts on.

Each encoding is an unsigned integer that orders like the string it stands for, so DuckDB works on
fixed-width keys instead of strings and the output order is the same; the strings are rebuilt for the output.

* event_id: a valid one is a UUID in the 8-4-4-4-12 hex form, stored lower-case, so it is exactly 128 bits:
  the first 16 hex digits are ``id_hi`` and the last 16 ``id_lo`` (hex digits sort like their values). Both
  directions work on whole arrays, two hex digits (one byte) per table lookup.
* device_id: its index in :data:`~include.events_schema.DEVICE_IDS` (which is in alphabetical order).
* countrycode: its two ASCII letters as one big-endian uint16.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from include.events_schema import DEVICE_IDS

if list(DEVICE_IDS) != sorted(DEVICE_IDS):  # pragma: no cover - a guard on the contract module
    raise ImportError(f"DEVICE_IDS must be in alphabetical order for device codes to sort, got {DEVICE_IDS}")

#: device_id -> its code.
DEVICE_CODES = {device: code for code, device in enumerate(DEVICE_IDS)}
_DEVICE_STRINGS = pa.array(DEVICE_IDS, pa.string())

UUID_LENGTH = 36
#: (start, end) of the five groups of hex digits in the 36-character form.
_GROUPS = ((0, 8), (9, 13), (14, 18), (19, 23), (24, 36))
_HYPHENS = (8, 13, 18, 23)
_HEX = b"0123456789abcdef"
#: byte value -> its two lower-case hex digits, as one uint16 (native byte order, like the view below).
_BYTE_TO_HEX = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), dtype=np.uint16)


def _hex_pairs() -> np.ndarray:
    """two ASCII hex digits (either case), read as one native uint16 -> their byte value."""
    table = np.zeros(1 << 16, dtype=np.uint8)
    for high, high_char in enumerate(_HEX):
        for low, low_char in enumerate(_HEX):
            for a in {high_char, bytes([high_char]).upper()[0]}:
                for b in {low_char, bytes([low_char]).upper()[0]}:
                    table[np.frombuffer(bytes([a, b]), dtype=np.uint16)[0]] = high << 4 | low
    return table


_HEX_TO_BYTE = _hex_pairs()


def split_uuid_hex(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 36)`` uint8 ASCII UUIDs (either case) -> (id_hi, id_lo) as uint64 arrays."""
    n = len(ids)
    digits = np.concatenate([ids[:, start:end] for start, end in _GROUPS], axis=1)  # (n, 32), contiguous
    value = _HEX_TO_BYTE[digits.view(np.uint16)].view(">u8").reshape(n, 2)  # 16 bytes, big-endian halves
    return value[:, 0].astype(np.uint64), value[:, 1].astype(np.uint64)


def split_uuid(event_id: str) -> tuple[int, int]:
    """One UUID string -> (id_hi, id_lo)."""
    value = int(event_id.replace("-", ""), 16)
    return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF


def uuid_strings(id_hi: np.ndarray, id_lo: np.ndarray) -> pa.Array:
    """(id_hi, id_lo) uint64 arrays -> the lower-case 8-4-4-4-12 strings, as an Arrow string array."""
    n = len(id_hi)
    value = np.empty((n, 2), dtype=">u8")
    value[:, 0], value[:, 1] = id_hi, id_lo
    digits = _BYTE_TO_HEX[value.view(np.uint8).reshape(n, 16)].view(np.uint8).reshape(n, 32)
    out = np.empty((n, UUID_LENGTH), dtype=np.uint8)
    out[:, _HYPHENS] = ord("-")
    taken = 0
    for start, end in _GROUPS:
        out[:, start:end] = digits[:, taken : taken + end - start]
        taken += end - start
    offsets = np.arange(0, (n + 1) * UUID_LENGTH, UUID_LENGTH, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))


def device_strings(codes: np.ndarray) -> pa.Array:
    """device codes -> the device_id strings."""
    return _DEVICE_STRINGS.take(pa.array(codes))


def country_code(countrycode: str) -> int:
    """A two-letter ASCII code -> its uint16."""
    return ord(countrycode[0]) << 8 | ord(countrycode[1])


def country_codes(letters: np.ndarray) -> np.ndarray:
    """``(n, 2)`` uint8 ASCII letters -> their uint16 codes."""
    return np.ascontiguousarray(letters).view(">u2").reshape(len(letters)).astype(np.uint16)


def country_strings(codes: np.ndarray) -> pa.Array:
    """uint16 country codes -> the two-letter strings."""
    n = len(codes)
    letters = np.asarray(codes, dtype=np.uint16).astype(">u2")
    offsets = np.arange(0, 2 * (n + 1), 2, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(letters))
