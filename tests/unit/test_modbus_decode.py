"""Compiled block decoders agree with the reference codec, tag by tag, on any layout."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.decode import BlockDecoder, Field
from edge_config.modbus_codec import BYTE_ORDERS, decode, register_count

TYPES = ["bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"]


def _field(draw: st.DrawFn, count: int) -> Field:
    type_ = draw(st.sampled_from(TYPES))
    length = draw(st.integers(1, 4)) if type_ == "string" else None
    size = register_count(type_, length)
    rel = draw(st.integers(0, count - size))
    bit = draw(st.one_of(st.none(), st.integers(0, 15))) if type_ == "bool" else None
    return Field(rel, type_, draw(st.sampled_from(BYTE_ORDERS)), bit, length)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[list[Field], list[int]]:
    count = draw(st.integers(4, 40))
    fields = [_field(draw, count) for _ in range(draw(st.integers(1, 12)))]  # may overlap: that is allowed
    registers = draw(st.lists(st.integers(0, 0xFFFF), min_size=count, max_size=count))
    return fields, registers


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


@settings(max_examples=400, deadline=None)
@given(layouts())
def test_block_decoder_matches_the_codec(layout: tuple[list[Field], list[int]]) -> None:
    fields, registers = layout
    data = struct.pack(f">{len(registers)}H", *registers)
    got = BlockDecoder(fields, len(registers))(data)
    for f, value in zip(fields, got, strict=True):
        n = register_count(f.type, f.length)
        want = decode(registers[f.rel : f.rel + n], f.type, f.byte_order, f.bit)
        assert _same(value, want), (f, value, want)


def test_one_pass_in_order_is_returned_directly() -> None:
    fields = [Field(0, "uint16"), Field(1, "float32"), Field(4, "int16")]
    data = bytes.fromhex("0007 42F6E979 FFFF FFFE")
    assert list(BlockDecoder(fields, 5)(data)) == [7, pytest.approx(123.456, rel=1e-7), -2]


def test_each_byte_order_from_one_response() -> None:
    # float32 123.456 = 42 F6 E9 79, as each order puts it on the wire
    data = bytes.fromhex("42F6E979 F64279E9 E97942F6 79E9F642")
    fields = [Field(0, "float32", "ABCD"), Field(2, "float32", "BADC"), Field(4, "float32", "CDAB")]
    fields.append(Field(6, "float32", "DCBA"))
    assert BlockDecoder(fields, 8)(data) == [pytest.approx(123.456, rel=1e-7)] * 4


def test_bits_of_a_register_and_strings() -> None:
    data = bytes.fromhex("8001 4142 4300")
    fields = [Field(0, "bool", bit=15), Field(0, "bool", bit=0), Field(0, "bool", bit=1), Field(1, "string", length=2)]
    assert BlockDecoder(fields, 3)(data) == [True, True, False, "ABC"]


def test_coils_lsb_first() -> None:
    # coils 0..9: byte 0 = 0b1000_0101 (coils 0, 2, 7), byte 1 = 0b10 (coil 9)
    data = bytes([0b1000_0101, 0b10])
    fields = [Field(i, "bool") for i in range(10)]
    assert list(BlockDecoder(fields, 10, bits=True)(data)) == [
        True, False, True, False, False, False, False, True, False, True,
    ]  # fmt: skip


def test_field_outside_the_block_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        BlockDecoder([Field(3, "float32")], 4)


def test_good_readings_are_ordinary_readings() -> None:
    from drivers.base import Reading
    from drivers.modbus.blocks import good_reading

    r = good_reading("speed", 9001, 1234)
    assert r == Reading("speed", 9001, 1234) and type(r) is Reading
    assert (r.quality, r.error) == ("good", "")
    assert hash(r) == hash(Reading("speed", 9001, 1234))
    with pytest.raises(AttributeError):
        r.value = 1  # type: ignore[misc]  # still frozen
