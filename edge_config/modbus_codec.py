"""Modbus register codec: registers <-> typed values. Pure functions, no I/O.

Byte orders name how the bytes of a multi-register value appear on the wire, value bytes
being A (most significant) to D (or H for 64-bit values):

- ABCD: big-endian, first register holds the most significant word (Modbus default)
- BADC: bytes swapped inside each register, word order kept
- CDAB: word order reversed, bytes inside each register kept ("word swap")
- DCBA: fully little-endian (word order reversed and bytes swapped)

16-bit types and strings are always high byte first: byte orders apply to 32- and 64-bit values.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

Value = bool | int | float | str

BYTE_ORDERS = ("ABCD", "BADC", "CDAB", "DCBA")

# type -> (registers, struct code of the big-endian value)
_MULTI: dict[str, tuple[int, str]] = {
    "int32": (2, "i"),
    "uint32": (2, "I"),
    "float32": (2, "f"),
    "int64": (4, "q"),
    "uint64": (4, "Q"),
    "float64": (4, "d"),
}
_VALUE = {t: struct.Struct(">" + code) for t, (_, code) in _MULTI.items()}
# words packed big-endian (bytes kept) or little-endian (bytes swapped in each word)
_WORDS_BE = {n: struct.Struct(f">{n}H") for n in (2, 4)}
_WORDS_LE = {n: struct.Struct(f"<{n}H") for n in (2, 4)}
_REVERSED_WORDS = frozenset(("CDAB", "DCBA"))
_SWAPPED_BYTES = frozenset(("BADC", "DCBA"))


def register_count(type: str, length: int | None = None) -> int:
    """Registers a value of `type` occupies (`length` registers for strings)."""
    if type == "string":
        if length is None:
            raise ValueError("type string needs a length in registers")
        return length
    if type in ("bool", "int16", "uint16"):
        return 1
    try:
        return _MULTI[type][0]
    except KeyError:
        raise ValueError(f"unknown type {type!r}") from None


def _check_order(byte_order: str) -> None:
    if byte_order not in BYTE_ORDERS:
        raise ValueError(f"unknown byte order {byte_order!r} (use one of {', '.join(BYTE_ORDERS)})")


def decode(
    registers: Sequence[int], type: str, byte_order: str = "ABCD", bit: int | None = None
) -> bool | int | float | str:
    """Decode the value of `type` starting at registers[0].

    bool reads bit `bit` of the first register (any non-zero register when `bit` is None).
    string takes every register given, two ASCII characters each, and ends at the first NUL;
    trailing spaces are trimmed.
    """
    if type == "uint16":
        return registers[0]
    if type == "int16":
        v = registers[0]
        return v - 0x10000 if v & 0x8000 else v
    if type == "bool":
        if bit is None:
            return registers[0] != 0
        return bool((registers[0] >> bit) & 1)
    if type == "string":
        raw = b"".join(r.to_bytes(2, "big") for r in registers)
        return raw.split(b"\x00", 1)[0].decode("ascii", errors="replace").rstrip(" ")
    try:
        n = _MULTI[type][0]
    except KeyError:
        raise ValueError(f"unknown type {type!r}") from None
    if len(registers) < n:
        raise ValueError(f"{type} needs {n} registers, got {len(registers)}")
    words = registers[:n] if len(registers) != n else registers
    if byte_order == "ABCD":
        data = _WORDS_BE[n].pack(*words)
    else:
        _check_order(byte_order)
        packer = _WORDS_LE[n] if byte_order in _SWAPPED_BYTES else _WORDS_BE[n]
        data = packer.pack(*reversed(words)) if byte_order in _REVERSED_WORDS else packer.pack(*words)
    value: int | float = _VALUE[type].unpack(data)[0]
    return value


def encode(
    value: bool | int | float | str,
    type: str,
    byte_order: str = "ABCD",
    bit: int | None = None,
    length: int | None = None,
) -> list[int]:
    """Encode `value` as `type` into registers: the inverse of `decode`.

    bool with `bit` gives a register with only that bit set (or 0); merge it into the register
    yourself when several bools share one. string is padded with NULs to `length` registers
    (default: just long enough).
    """
    if type in ("uint16", "int16"):
        v = int(value)
        lo, hi = (0, 0xFFFF) if type == "uint16" else (-0x8000, 0x7FFF)
        if not lo <= v <= hi:
            raise ValueError(f"{value!r} does not fit {type}")
        return [v & 0xFFFF]
    if type == "bool":
        return [(1 << (bit or 0)) if value else 0]
    if type == "string":
        data = str(value).encode("ascii")
        n = length if length is not None else (len(data) + 1) // 2
        if len(data) > 2 * n:
            raise ValueError(f"{value!r} does not fit {n} registers")
        data = data.ljust(2 * n, b"\x00")
        return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    try:
        n = _MULTI[type][0]
    except KeyError:
        raise ValueError(f"unknown type {type!r}") from None
    _check_order(byte_order)
    try:
        data = _VALUE[type].pack(value)
    except struct.error as exc:
        raise ValueError(f"{value!r} does not fit {type}: {exc}") from None
    packer = _WORDS_LE[n] if byte_order in _SWAPPED_BYTES else _WORDS_BE[n]
    words = list(packer.unpack(data))
    if byte_order in _REVERSED_WORDS:
        words.reverse()
    return words
