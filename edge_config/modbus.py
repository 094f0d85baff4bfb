"""Modbus address notation: Modicon numbers and explicit zero-based table:offset.

Pure parsing, shared by config validation and the Modbus driver.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import Enum


class Table(str, Enum):
    """The four Modbus data tables."""

    COIL = "co"
    DISCRETE_INPUT = "di"
    INPUT_REGISTER = "ir"
    HOLDING_REGISTER = "hr"

    @property
    def is_bit(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE_INPUT)


@dataclass(frozen=True, slots=True)
class ModbusAddress:
    table: Table
    offset: int  # zero-based protocol address

    def __str__(self) -> str:
        return f"{self.table.value}:{self.offset}"


_MODICON_PREFIX = {
    "0": Table.COIL,
    "1": Table.DISCRETE_INPUT,
    "3": Table.INPUT_REGISTER,
    "4": Table.HOLDING_REGISTER,
}
_EXPLICIT = re.compile(r"^(hr|ir|di|co):(\d+)$")
_MODICON = re.compile(r"^([0134])(\d{4,5})$")


@functools.lru_cache(maxsize=16384)  # pure; the same addresses recur across devices and checks
def parse_address(text: str) -> ModbusAddress:
    """Parse `40001`, `400001`, `30001`, `10001`, `00001` (1-based) or `hr:0`, `ir:0`, `di:0`, `co:0`.

    Raises ValueError with a message a plant engineer can act on.
    """
    s = str(text).strip().lower()
    m = _EXPLICIT.match(s)
    if m:
        offset = int(m.group(2))
        if offset > 65535:
            raise ValueError(f"{text!r}: offset {offset} is beyond 65535")
        return ModbusAddress(Table(m.group(1)), offset)
    m = _MODICON.match(s)
    if m:
        number = int(m.group(2))
        if number < 1 or number > 65536:
            raise ValueError(f"{text!r} is not a Modbus address (register number must be 1..65536)")
        return ModbusAddress(_MODICON_PREFIX[m.group(1)], number - 1)
    raise ValueError(f"{text!r} is not a Modbus address (use 40001 or hr:0)")
