"""How the simulator answers: any register map, exceptions, faults. No sockets here."""

from __future__ import annotations

import struct

import pytest

from edge_config.modbus import Table
from simulators.modbus_server import ModbusSimulator, RegisterMap, StaticModel

TAGS = [
    {"name": "u", "address": "hr:0", "type": "uint16"},
    {"name": "f", "address": "hr:1", "type": "float32", "byte_order": "CDAB"},
    {"name": "flag", "address": "hr:3", "type": "bool", "bit": 4},
    {"name": "s", "address": "hr:4", "type": "string", "length": 2},
    {"name": "gapped", "address": "hr:10", "type": "int16"},
    {"name": "ir", "address": "30001", "type": "int32", "byte_order": "DCBA"},
    {"name": "c0", "address": "co:0", "type": "bool"},
    {"name": "c2", "address": "00003", "type": "bool"},
    {"name": "d1", "address": "di:1", "type": "bool"},
]


def sim() -> ModbusSimulator:
    values = {"u": 7, "f": -2.5, "flag": True, "s": "AB1", "gapped": -1, "ir": -2, "c0": True, "c2": True, "d1": True}
    return ModbusSimulator({1: StaticModel(TAGS, values)})


def read(s: ModbusSimulator, fc: int, start: int, count: int, unit: int = 1) -> bytes | None:
    response, _ = s.answer(unit, struct.pack(">BHH", fc, start, count), missing=11)
    return response


def test_registers_in_each_type_and_order() -> None:
    s = sim()
    # u=7 | -2.5 = C020 0000 word-swapped | bit 4 | "AB1\0"
    assert read(s, 3, 0, 6) == bytes.fromhex("03 0C 0007 0000 C020 0010 4142 3100")
    assert read(s, 3, 10, 1) == bytes.fromhex("03 02 FFFF")
    assert read(s, 4, 0, 2) == bytes.fromhex("04 04 FEFF FFFF")  # -2 DCBA


def test_bits() -> None:
    s = sim()
    assert read(s, 1, 0, 3) == bytes.fromhex("01 01 05")  # coils 0 and 2
    assert read(s, 2, 1, 1) == bytes.fromhex("02 01 01")
    assert read(s, 1, 0, 4) == bytes.fromhex("81 02")  # beyond the last coil
    assert read(s, 2, 0, 1) == bytes.fromhex("82 02")  # before the first input


def test_exceptions() -> None:
    s = sim()
    assert read(s, 3, 5, 6) == bytes.fromhex("83 02")  # 6..9 unmapped
    assert read(s, 3, 0, 126) == bytes.fromhex("83 03")  # more than 125
    assert read(s, 1, 0, 2001) == bytes.fromhex("81 03")
    assert read(s, 7, 0, 1) == bytes.fromhex("87 01")  # not a read function
    assert read(s, 3, 0, 1, unit=9) == bytes.fromhex("83 0B")  # no such unit behind this gateway
    s.faults().refuse("40002", 2)  # hr:1
    assert read(s, 3, 0, 1) == bytes.fromhex("03 02 0007")
    assert read(s, 3, 0, 3) == bytes.fromhex("83 02")
    s.faults().max_count = 2
    assert read(s, 3, 4, 3) == bytes.fromhex("83 03")
    s.faults().clear()
    assert read(s, 3, 0, 6) is not None and read(s, 3, 0, 6)[:1] == b"\x03"  # type: ignore[index]


def test_silent_dropping_and_delayed_units() -> None:
    s = sim()
    s.faults().silent = True
    assert read(s, 3, 0, 1) is None
    s.faults().silent = False
    s.faults().drop = 1.0
    assert read(s, 3, 0, 1) is None
    s.faults().drop = 0.0
    s.faults().delay = 0.25
    assert s.answer(1, bytes.fromhex("03 0000 0001"), missing=None) == (bytes.fromhex("03 02 0007"), 0.25)
    assert s.answer(5, bytes.fromhex("03 0000 0001"), missing=None) == (None, 0.0)  # RTU: unknown units say nothing
    assert s.units[1].requests == 3 and s.request_count == 4


def test_register_map_renders_only_what_is_asked() -> None:
    m = RegisterMap(TAGS)
    values = StaticModel(TAGS, {"f": 1.0}).values
    assert m.render(values, Table.HOLDING_REGISTER, 2, 1) == {1: 0x0000, 2: 0x3F80}  # the float around hr:2
    assert m.mapped(Table.HOLDING_REGISTER, 0, 6) and not m.mapped(Table.HOLDING_REGISTER, 0, 7)
    with pytest.raises(ValueError):
        RegisterMap([{"name": "x", "address": "4x0001"}])
