"""Modbus read requests and responses on the wire (function codes 1-4). Pure, no I/O.

A PDU is function code + data. Modbus TCP wraps it in the 7-byte MBAP header (transaction id,
protocol 0, length, unit id); Modbus RTU in unit id + PDU + CRC-16 (low byte first).
"""

from __future__ import annotations

import struct

from drivers.bus.errors import BadFrame, LinkDown, LinkError, NoResponse
from drivers.bus.serial import char_time, rtu_silence
from edge_config.modbus import Table

__all__ = ["BadFrame", "DeviceException", "LinkDown", "ModbusIOError", "NoResponse", "char_time", "crc16",
           "exception_text", "payload_size", "read_payload", "read_request", "rtu_check", "rtu_frame",
           "rtu_silence"]  # fmt: skip

READ_FUNCTION = {Table.COIL: 1, Table.DISCRETE_INPUT: 2, Table.HOLDING_REGISTER: 3, Table.INPUT_REGISTER: 4}

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
# exceptions that say the request itself is wrong for this device (an address, a count): worth splitting
SPLIT_CODES = frozenset((2, 3))
# exceptions a TCP gateway gives when the unit behind it does not answer: the unit is down, not the tags
UNIT_DOWN_CODES = frozenset((10, 11))

MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length (unit + PDU), unit id
_REQUEST = struct.Struct(">BHH")  # function code, start, count


ModbusIOError = LinkError  # the name of earlier versions


class DeviceException(LinkError):
    """The unit answered with a Modbus exception."""

    def __init__(self, code: int) -> None:
        super().__init__(exception_text(code))
        self.code = code


def exception_text(code: int) -> str:
    """`exception 2 (illegal data address)` for a Modbus exception code."""
    return f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"


def read_request(table: Table, start: int, count: int) -> bytes:
    """The PDU reading `count` registers (or bits) of `table` from `start`."""
    return _REQUEST.pack(READ_FUNCTION[table], start, count)


def payload_size(table: Table, count: int) -> int:
    """Data bytes in the answer to a read of `count` registers or bits."""
    return (count + 7) // 8 if table.is_bit else 2 * count


def read_payload(function: int, size: int, response: bytes) -> bytes:
    """The data bytes of a read response PDU; DeviceException for an exception, BadFrame if malformed."""
    if response[:1] == bytes((function | 0x80,)):
        if len(response) != 2:  # an exception PDU is the function code and the exception code, no more
            raise BadFrame(f"malformed exception answer to function {function}: {response[:8].hex()}")
        raise DeviceException(response[1])
    if len(response) != size + 2 or response[0] != function or response[1] != size:
        raise BadFrame(f"malformed answer to function {function}: {response[:8].hex()}")
    return response[2:]


def crc16(data: bytes) -> int:
    """Modbus CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """unit + PDU + CRC (low byte first)."""
    body = bytes((unit,)) + pdu
    return body + crc16(body).to_bytes(2, "little")


def rtu_check(frame: bytes) -> bool:
    """Does the frame's CRC match?"""
    return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")
