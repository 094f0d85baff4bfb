"""Compiled block decoders: a read response's data bytes → the values of the tags in the block. Pure.

`edge_config.modbus_codec.decode` is the reference, one tag at a time. A block decoder does the same
for every tag of a block with a few `struct` calls planned once: fields are grouped into *passes*,
one `Struct` each, by how their bytes must be read (byte orders as in the codec):

- ABCD and 16-bit values: big-endian from the bytes as received;
- DCBA: little-endian from the bytes as received (the value's bytes arrive in reverse);
- BADC: big-endian after swapping the two bytes of every register;
- CDAB: little-endian after that swap (words reversed = bytes reversed, then each pair swapped back).

Bits of a register, strings and coils are read with small per-tag functions.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Value = bool | int | float | str

_CODES = {
    "int16": ("h", 2),
    "uint16": ("H", 2),
    "int32": ("i", 4),
    "uint32": ("I", 4),
    "float32": ("f", 4),
    "int64": ("q", 8),
    "uint64": ("Q", 8),
    "float64": ("d", 8),
}
# byte order -> (read from the swapped copy?, struct endianness)
_ORDER = {"ABCD": (False, ">"), "DCBA": (False, "<"), "BADC": (True, ">"), "CDAB": (True, "<")}


@dataclass(frozen=True, slots=True)
class Field:
    """One tag inside a block: where it starts (registers or bits from the block start) and its type."""

    rel: int
    type: str
    byte_order: str = "ABCD"
    bit: int | None = None
    length: int | None = None  # registers, for strings


@dataclass
class _Pass:
    swapped: bool
    endian: str
    cursor: int = 0  # first byte after the last field
    fmt: str = ""
    positions: list[int] | None = None


def _string(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("ascii", errors="replace").rstrip(" ")


def _swap_pairs(data: bytes) -> bytes:
    out = bytearray(len(data))
    out[0::2] = data[1::2]
    out[1::2] = data[0::2]
    return bytes(out)


class BlockDecoder:
    """Decodes the data bytes of one read of `count` registers (or bits, `bits=True`) into field values."""

    def __init__(self, fields: Sequence[Field], count: int, bits: bool = False) -> None:
        self.width = len(fields)  # the fields themselves are not kept: a decoder lives as long as its block
        self.count = count
        self.bits = bits
        self._passes: list[tuple[struct.Struct, bool, tuple[int, ...]]] = []
        self._extra: list[tuple[int, Callable[[bytes], Value]]] = []
        self._direct: struct.Struct | None = None  # one pass, every field in order: return its tuple
        if bits:
            self._extra = [(i, _bit_reader(f.rel)) for i, f in enumerate(fields)]
            return
        passes: list[_Pass] = []
        for i in sorted(range(self.width), key=lambda i: fields[i].rel):
            f = fields[i]
            if f.rel < 0 or f.rel + _registers(f) > count:
                raise ValueError(f"field at {f.rel} does not fit a block of {count} registers")
            if f.type not in _CODES:
                self._extra.append((i, _register_reader(f)))
                continue
            code, size = _CODES[f.type]
            swapped, endian = (False, ">") if size == 2 else _ORDER[f.byte_order]
            start = 2 * f.rel
            p = next((p for p in passes if (p.swapped, p.endian) == (swapped, endian) and p.cursor <= start), None)
            if p is None:
                p = _Pass(swapped, endian, positions=[])
                passes.append(p)
            p.fmt += (f"{start - p.cursor}x" if start > p.cursor else "") + code
            p.cursor = start + size
            assert p.positions is not None
            p.positions.append(i)
        self._passes = [(struct.Struct(p.endian + p.fmt), p.swapped, tuple(p.positions or ())) for p in passes]
        if len(self._passes) == 1 and not self._extra and self._passes[0][2] == tuple(range(self.width)):
            self._direct = self._passes[0][0] if not self._passes[0][1] else None

    def __call__(self, data: bytes) -> Sequence[Value]:
        """Values in field order. `data` is exactly the response's data bytes."""
        if self._direct is not None:
            values: tuple[Value, ...] = self._direct.unpack_from(data)
            return values
        out: list[Value] = [False] * self.width
        swapped: bytes | None = None
        for st, swap, positions in self._passes:
            if swap:
                if swapped is None:
                    swapped = _swap_pairs(data)
                vals = st.unpack_from(swapped)
            else:
                vals = st.unpack_from(data)
            for i, v in zip(positions, vals, strict=True):
                out[i] = v
        for i, read in self._extra:
            out[i] = read(data)
        return out


def _registers(f: Field) -> int:
    if f.type == "string":
        return f.length or 1
    return _CODES[f.type][1] // 2 if f.type in _CODES else 1


def _register_reader(f: Field) -> Callable[[bytes], Value]:
    o = 2 * f.rel
    if f.type == "bool":
        if f.bit is None:
            return lambda d: d[o] != 0 or d[o + 1] != 0
        byte, mask = (o + 1, 1 << f.bit) if f.bit < 8 else (o, 1 << (f.bit - 8))
        return lambda d: d[byte] & mask != 0
    if f.type == "string":
        end = o + 2 * (f.length or 1)
        return lambda d: _string(d[o:end])
    raise ValueError(f"unknown type {f.type!r}")


def _bit_reader(rel: int) -> Callable[[bytes], Value]:
    byte, mask = rel >> 3, 1 << (rel & 7)
    return lambda d: d[byte] & mask != 0
