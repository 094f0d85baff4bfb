"""DL/T 645-2007 frames as the master (the gateway) sends and reads them. Pure, no I/O.

    FE FE FE FE   68  A0 A1 A2 A3 A4 A5  68  C  L  DATA…  CS  16
    wake-up       start  address (low   start control length  data +0x33  sum  end
    (optional)           byte first)

- The checksum is the sum, modulo 256, of every byte from the first 68 to the last data byte.
- Each data byte goes on the wire with 0x33 added (and comes back with it): `mask` / `unmask`.
- Control codes: 0x11 read data (DI0…DI3 in the data), 0x13 read address (to the broadcast address
  AAAAAAAAAAAA, no data); answers set bit 7 (0x91, 0x93), an error answer also bit 6 (0xD1, one
  error byte); bit 5 says more frames follow (not used for the values read here).

Values inside the data (BCD, formats, data identifiers) are `edge_config.dlt645`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.bus.errors import BadFrame, LinkError
from edge_config.dlt645 import BROADCAST_ADDRESS, address_bytes, address_text

START, END, WAKE = 0x68, 0x16, 0xFE
READ, READ_ADDRESS = 0x11, 0x13
ANSWER, ERROR, MORE = 0x80, 0x40, 0x20
OFFSET = 0x33

# bits of the error byte of an abnormal answer (DL/T 645-2007 7.4.1)
ERROR_BITS = (
    "other error 其他错误",
    "no data requested 无请求数据",
    "password wrong or unauthorized 密码错/未授权",
    "baud rate cannot be changed 通信速率不能更改",
    "too many year time zones 年时区数超",
    "too many daily periods 日时段数超",
    "too many tariffs 费率数超",
)


class MeterError(LinkError):
    """The meter answered with an error (control 0xD1): the data item is refused, the meter is there."""

    def __init__(self, code: int) -> None:
        super().__init__(error_text(code))
        self.code = code


def error_text(code: int) -> str:
    """`meter error 0x02 (no data requested 无请求数据)`."""
    names = [text for bit, text in enumerate(ERROR_BITS) if code & (1 << bit)]
    return f"meter error 0x{code:02X} ({', '.join(names) or 'unknown'})"


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def mask(data: bytes) -> bytes:
    return bytes((b + OFFSET) & 0xFF for b in data)


def unmask(data: bytes) -> bytes:
    return bytes((b - OFFSET) & 0xFF for b in data)


def build_frame(address: str, control: int, data: bytes = b"", wakeup: int = 4) -> bytes:
    """A whole frame to `address` (12 digits, or the broadcast AAAAAAAAAAAA) with `wakeup` 0xFE bytes first."""
    body = bytes((START,)) + address_bytes(address) + bytes((START, control, len(data))) + mask(data)
    return bytes((WAKE,)) * wakeup + body + bytes((checksum(body), END))


def read_request(address: str, di: int, wakeup: int = 4) -> bytes:
    """Read one data item: control 0x11, the DI low byte first."""
    return build_frame(address, READ, di.to_bytes(4, "little"), wakeup)


def address_request(wakeup: int = 4) -> bytes:
    """Read the address of the one meter on the line: control 0x13 to the broadcast address."""
    return build_frame(BROADCAST_ADDRESS, READ_ADDRESS, b"", wakeup)


@dataclass(frozen=True, slots=True)
class Frame:
    address: str  # 12 digits as printed on the meter
    control: int
    data: bytes  # with the 0x33 taken off


def parse_frame(raw: bytes) -> Frame:
    """A frame off the line (wake-up bytes allowed in front); BadFrame with what is wrong."""
    i = 0
    while i < len(raw) and raw[i] == WAKE:
        i += 1
    f = raw[i:]
    if len(f) < 12 or f[0] != START or f[7] != START:
        raise BadFrame(f"not a DL/T 645 frame: {raw[:16].hex(' ')}")
    n = f[9]
    if len(f) != 12 + n:
        raise BadFrame(f"frame length {len(f)} for {n} data bytes")
    if f[-1] != END:
        raise BadFrame(f"frame does not end with 16: {f[-1]:02x}")
    if checksum(f[:-2]) != f[-2]:
        raise BadFrame(f"checksum {f[-2]:02x}, computed {checksum(f[:-2]):02x}")
    return Frame(address_text(f[1:7]), f[8], unmask(f[10 : 10 + n]))


def read_answer(frame: Frame, address: str, di: int) -> bytes:
    """The value bytes of a meter's answer to `read_request(address, di)`; MeterError for an error
    answer, BadFrame for anything else that is not that answer."""
    if frame.address != address:
        raise BadFrame(f"answer from meter {frame.address}, asked {address}")
    if frame.control == READ | ANSWER | ERROR:
        raise MeterError(frame.data[0] if frame.data else 0)
    if frame.control & ~MORE != READ | ANSWER:
        raise BadFrame(f"control 0x{frame.control:02X} is not an answer to a read")
    if len(frame.data) < 4 or int.from_bytes(frame.data[:4], "little") != di:
        raise BadFrame(f"answer for another data item: {frame.data[:4][::-1].hex().upper()}, asked {di:08X}")
    return frame.data[4:]


def address_answer(frame: Frame) -> str:
    """The address in a meter's answer to `address_request`."""
    if frame.control != READ_ADDRESS | ANSWER or len(frame.data) != 6:
        raise BadFrame(f"control 0x{frame.control:02X} with {len(frame.data)} bytes is not an address answer")
    return address_text(frame.data)
