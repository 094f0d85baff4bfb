"""Register codec: expected registers worked out by hand from the IEEE 754 / two's complement bytes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_config.modbus_codec import BYTE_ORDERS, decode, encode, register_count

# (type, byte order, value, registers on the wire)
CASES = [
    # float32 123.456 = 0x42F6E979: bytes A=42 B=F6 C=E9 D=79
    ("float32", "ABCD", 123.456, [0x42F6, 0xE979]),
    ("float32", "BADC", 123.456, [0xF642, 0x79E9]),
    ("float32", "CDAB", 123.456, [0xE979, 0x42F6]),
    ("float32", "DCBA", 123.456, [0x79E9, 0xF642]),
    # float32 -2.5 = 0xC0200000
    ("float32", "ABCD", -2.5, [0xC020, 0x0000]),
    ("float32", "CDAB", -2.5, [0x0000, 0xC020]),
    # int32 -2 = 0xFFFFFFFE
    ("int32", "ABCD", -2, [0xFFFF, 0xFFFE]),
    ("int32", "BADC", -2, [0xFFFF, 0xFEFF]),
    ("int32", "CDAB", -2, [0xFFFE, 0xFFFF]),
    ("int32", "DCBA", -2, [0xFEFF, 0xFFFF]),
    # uint32 0x12345678
    ("uint32", "ABCD", 0x12345678, [0x1234, 0x5678]),
    ("uint32", "BADC", 0x12345678, [0x3412, 0x7856]),
    ("uint32", "CDAB", 0x12345678, [0x5678, 0x1234]),
    ("uint32", "DCBA", 0x12345678, [0x7856, 0x3412]),
    ("uint32", "ABCD", 4294967295, [0xFFFF, 0xFFFF]),
    # uint64 0x0102030405060708: bytes A..H = 01..08
    ("uint64", "ABCD", 0x0102030405060708, [0x0102, 0x0304, 0x0506, 0x0708]),
    ("uint64", "BADC", 0x0102030405060708, [0x0201, 0x0403, 0x0605, 0x0807]),
    ("uint64", "CDAB", 0x0102030405060708, [0x0708, 0x0506, 0x0304, 0x0102]),
    ("uint64", "DCBA", 0x0102030405060708, [0x0807, 0x0605, 0x0403, 0x0201]),
    # int64 -2 = 0xFFFFFFFFFFFFFFFE
    ("int64", "ABCD", -2, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE]),
    ("int64", "CDAB", -2, [0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF]),
    ("int64", "DCBA", -2, [0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF]),
    # float64 -2.5 = 0xC004000000000000
    ("float64", "ABCD", -2.5, [0xC004, 0x0000, 0x0000, 0x0000]),
    ("float64", "BADC", -2.5, [0x04C0, 0x0000, 0x0000, 0x0000]),
    ("float64", "CDAB", -2.5, [0x0000, 0x0000, 0x0000, 0xC004]),
    ("float64", "DCBA", -2.5, [0x0000, 0x0000, 0x0000, 0x04C0]),
    # 16-bit types ignore the byte order
    ("int16", "ABCD", -1, [0xFFFF]),
    ("int16", "DCBA", -32768, [0x8000]),
    ("int16", "ABCD", 32767, [0x7FFF]),
    ("uint16", "BADC", 0x1234, [0x1234]),
    ("uint16", "ABCD", 65535, [0xFFFF]),
]


# Every type × every byte order. The value's bytes, most significant first, are A B C D (E F G H);
# each order puts them in registers as its name says. 16-bit types, bools and strings are single
# registers, high byte first, whatever the order: byte orders apply to multi-register values.
#   int64 -81985529216486896 = FE DC BA 98 76 54 32 10
#   float64 123.456          = 40 5E DD 2F 1A 9F BE 77
#   float32 123.456          = 42 F6 E9 79
FULL_TABLE = {
    ("int16", -2): {o: [0xFFFE] for o in BYTE_ORDERS},
    ("uint16", 0x1234): {o: [0x1234] for o in BYTE_ORDERS},
    ("int32", -2): {
        "ABCD": [0xFFFF, 0xFFFE], "BADC": [0xFFFF, 0xFEFF], "CDAB": [0xFFFE, 0xFFFF], "DCBA": [0xFEFF, 0xFFFF],
    },
    ("uint32", 0x12345678): {
        "ABCD": [0x1234, 0x5678], "BADC": [0x3412, 0x7856], "CDAB": [0x5678, 0x1234], "DCBA": [0x7856, 0x3412],
    },
    ("float32", 123.456): {
        "ABCD": [0x42F6, 0xE979], "BADC": [0xF642, 0x79E9], "CDAB": [0xE979, 0x42F6], "DCBA": [0x79E9, 0xF642],
    },
    ("int64", -81985529216486896): {
        "ABCD": [0xFEDC, 0xBA98, 0x7654, 0x3210],
        "BADC": [0xDCFE, 0x98BA, 0x5476, 0x1032],
        "CDAB": [0x3210, 0x7654, 0xBA98, 0xFEDC],
        "DCBA": [0x1032, 0x5476, 0x98BA, 0xDCFE],
    },
    ("uint64", 0x0102030405060708): {
        "ABCD": [0x0102, 0x0304, 0x0506, 0x0708],
        "BADC": [0x0201, 0x0403, 0x0605, 0x0807],
        "CDAB": [0x0708, 0x0506, 0x0304, 0x0102],
        "DCBA": [0x0807, 0x0605, 0x0403, 0x0201],
    },
    ("float64", 123.456): {
        "ABCD": [0x405E, 0xDD2F, 0x1A9F, 0xBE77],
        "BADC": [0x5E40, 0x2FDD, 0x9F1A, 0x77BE],
        "CDAB": [0xBE77, 0x1A9F, 0xDD2F, 0x405E],
        "DCBA": [0x77BE, 0x9F1A, 0x2FDD, 0x5E40],
    },
    ("string", "AB12"): {o: [0x4142, 0x3132] for o in BYTE_ORDERS},
}  # fmt: skip
FULL_CASES = [(t, o, v, regs) for (t, v), by_order in FULL_TABLE.items() for o, regs in by_order.items()]


def test_the_full_table_covers_every_type_and_order() -> None:
    types = {t for t, _ in FULL_TABLE} | {"bool"}  # bool: test_bool_bits_in_every_order
    assert types == {"bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"}
    assert all(set(by_order) == set(BYTE_ORDERS) for by_order in FULL_TABLE.values())


@pytest.mark.parametrize(("type_", "order", "value", "registers"), FULL_CASES)
def test_every_type_and_byte_order(type_: str, order: str, value: float | str, registers: list[int]) -> None:
    length = len(registers) if type_ == "string" else None
    assert encode(value, type_, order, length=length) == registers
    got = decode(registers, type_, order)
    assert got == (pytest.approx(value, rel=1e-7) if type_ == "float32" else value)
    assert type(got) is type(value)


@pytest.mark.parametrize("order", BYTE_ORDERS)
def test_bool_bits_in_every_order(order: str) -> None:
    # bit 2 and bit 9 of 0x0204; bits count from the least significant bit of the register
    assert [decode([0x0204], "bool", order, bit=b) for b in (2, 9, 0, 15)] == [True, True, False, False]
    assert encode(True, "bool", order, bit=9) == [0x0200]


@pytest.mark.parametrize(("type_", "order", "value", "registers"), CASES)
def test_decode(type_: str, order: str, value: float, registers: list[int]) -> None:
    got = decode(registers, type_, order)
    if type_ == "float32":
        assert got == pytest.approx(value, rel=1e-7)
    else:
        assert got == value
        assert type(got) is type(value)


@pytest.mark.parametrize(("type_", "order", "value", "registers"), CASES)
def test_encode(type_: str, order: str, value: float, registers: list[int]) -> None:
    assert encode(value, type_, order) == registers


def test_decode_uses_only_the_registers_of_the_type() -> None:
    assert decode([0x1234, 0x5678, 0x9999], "uint32", "ABCD") == 0x12345678
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode([0x1234], "uint32", "ABCD")


def test_bool_bits() -> None:
    assert decode([0x8000], "bool", "ABCD", bit=15) is True
    assert decode([0x8000], "bool", "ABCD", bit=14) is False
    assert decode([0x0001], "bool", "ABCD", bit=0) is True
    assert decode([0x0000], "bool") is False
    assert decode([0x0005], "bool") is True  # no bit: any non-zero register
    assert encode(True, "bool", bit=15) == [0x8000]
    assert encode(False, "bool", bit=15) == [0]
    assert encode(True, "bool") == [1]


def test_string() -> None:
    # 'A'=0x41 'B'=0x42 '1'=0x31 '2'=0x32, high byte first, NUL padded
    assert encode("AB12", "string", length=3) == [0x4142, 0x3132, 0x0000]
    assert decode([0x4142, 0x3132, 0x0000], "string") == "AB12"
    assert encode("ABC", "string") == [0x4142, 0x4300]
    assert decode([0x4142, 0x4300], "string") == "ABC"
    assert decode([0x4142, 0x2020], "string") == "AB"  # trailing spaces trimmed
    assert decode([0x4100, 0x4242], "string") == "A"  # ends at the first NUL
    assert decode([0x0000], "string") == ""
    with pytest.raises(ValueError, match="does not fit"):
        encode("ABCDE", "string", length=2)


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown type"):
        decode([0, 0], "float16")
    with pytest.raises(ValueError, match="byte order"):
        decode([0, 0], "float32", "ACBD")
    with pytest.raises(ValueError, match="does not fit"):
        encode(70000, "uint16")
    with pytest.raises(ValueError, match="does not fit"):
        encode(-1, "uint32")


def test_register_count() -> None:
    assert [register_count(t) for t in ("bool", "int16", "uint32", "float32", "int64", "float64")] == [
        1,
        1,
        2,
        2,
        4,
        4,
    ]
    assert register_count("string", 5) == 5
    with pytest.raises(ValueError):
        register_count("string")


INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


@given(st.data(), st.sampled_from(sorted(INT_RANGES)), st.sampled_from(BYTE_ORDERS))
def test_integer_round_trip(data: st.DataObject, type_: str, order: str) -> None:
    lo, hi = INT_RANGES[type_]
    value = data.draw(st.integers(lo, hi))
    regs = encode(value, type_, order)
    assert len(regs) == register_count(type_)
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert decode(regs, type_, order) == value


@given(st.floats(allow_nan=False), st.sampled_from(BYTE_ORDERS))
def test_float64_round_trip(value: float, order: str) -> None:
    assert decode(encode(value, "float64", order), "float64", order) == value


@given(st.floats(width=32, allow_nan=False), st.sampled_from(BYTE_ORDERS))
def test_float32_round_trip(value: float, order: str) -> None:
    assert decode(encode(value, "float32", order), "float32", order) == value


def test_float_nan() -> None:
    assert math.isnan(float(decode(encode(math.nan, "float32", "CDAB"), "float32", "CDAB")))


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20))
def test_string_round_trip(text: str) -> None:
    assert decode(encode(text, "string", length=10), "string") == text
