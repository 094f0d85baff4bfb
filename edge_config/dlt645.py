"""DL/T 645-2007 data: data identifiers (DI), their formats, meter addresses, BCD values. Pure, no I/O.

Shared by config validation, the `dlt645` driver and the meter simulator, as the Modbus register
codec is: the simulator encodes with the code the driver decodes with (the frames themselves are
handled independently on each side).

- A DI is four bytes DI3 DI2 DI1 DI0, written `00010000` (forward active energy, total); on the
  wire it goes DI0 first. The table below lists the ones a factory gateway reads (DL/T 645-2007
  appendix A); any other DI can be read by giving its data format.
- Formats name the BCD digits: `XXXXXX.XX` is 8 digits in 4 bytes with 2 decimals. Values go low
  byte first; in signed formats (currents, powers, power factors) the top bit of the last byte is
  the sign. `YYMMDDWW` (date and weekday) and `hhmmss` (time) read as text, `NN…` as a digit string.
- A meter address is 12 BCD digits (printed on the meter), sent low byte first; `AAAAAAAAAAAA` is
  the broadcast address a lone meter answers an address read on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BROADCAST_ADDRESS = "AAAAAAAAAAAA"


@dataclass(frozen=True, slots=True)
class DataFormat:
    text: str  # XXXXXX.XX, XXX.XXX, YYMMDDWW, hhmmss, NNNNNNNNNNNN
    size: int  # bytes
    decimals: int = 0
    signed: bool = False
    kind: str = "number"  # number | date | time | digits

    @property
    def digits(self) -> int:
        return 2 * self.size

    @property
    def max_value(self) -> float:
        """The largest magnitude the format holds (signed: the top digit is at most 7)."""
        top = 7 if self.signed else 9
        whole = int(str(top) + "9" * (self.digits - 1))
        return float(whole) / 10**self.decimals


_NUMBER = re.compile(r"^(X+)(?:\.(X+))?$")


def parse_format(text: str, signed: bool = False) -> DataFormat:
    """A data format as the standard writes it; ValueError when it is not one."""
    t = text.strip()
    if t == "YYMMDDWW":
        return DataFormat(t, 4, kind="date")
    if t == "hhmmss":
        return DataFormat(t, 3, kind="time")
    if t and set(t) == {"N"} and len(t) % 2 == 0:
        return DataFormat(t, len(t) // 2, kind="digits")
    m = _NUMBER.match(t)
    if not m or (len(m.group(1)) + len(m.group(2) or "")) % 2:
        raise ValueError(
            f"{text!r} is not a DL/T 645 data format (e.g. XXXXXX.XX, XXX.XXX, XX.XX: an even number of digits)"
        )
    digits = len(m.group(1)) + len(m.group(2) or "")
    return DataFormat(t, digits // 2, len(m.group(2) or ""), signed)


@dataclass(frozen=True, slots=True)
class DataItem:
    di: int
    description: str
    format: DataFormat
    unit: str | None = None


def _items() -> dict[int, DataItem]:
    out: dict[int, DataItem] = {}

    def add(di: int, description: str, fmt: str, unit: str | None = None, signed: bool = False) -> None:
        out[di] = DataItem(di, description, parse_format(fmt, signed), unit)

    add(0x00000000, "combined active energy, total 组合有功总电能", "XXXXXX.XX", "kWh")
    add(0x00010000, "forward active energy, total 正向有功总电能", "XXXXXX.XX", "kWh")
    for tariff, zh in ((1, "尖"), (2, "峰"), (3, "平"), (4, "谷")):
        add(0x00010000 + tariff * 0x100, f"forward active energy, tariff {tariff} 正向有功{zh}电能", "XXXXXX.XX", "kWh")
    add(0x00020000, "reverse active energy, total 反向有功总电能", "XXXXXX.XX", "kWh")
    add(0x00030000, "combined reactive energy 1, total 组合无功1总电能", "XXXXXX.XX", "kvarh", signed=True)
    add(0x00040000, "combined reactive energy 2, total 组合无功2总电能", "XXXXXX.XX", "kvarh", signed=True)
    for phase, p in ((1, "A"), (2, "B"), (3, "C")):
        add(0x02010000 + phase * 0x100, f"phase {p} voltage {p}相电压", "XXX.X", "V")
        add(0x02020000 + phase * 0x100, f"phase {p} current {p}相电流", "XXX.XXX", "A", signed=True)
        add(0x02030000 + phase * 0x100, f"phase {p} active power {p}相有功功率", "XX.XXXX", "kW", signed=True)
        add(0x02040000 + phase * 0x100, f"phase {p} reactive power {p}相无功功率", "XX.XXXX", "kvar", signed=True)
        add(0x02060000 + phase * 0x100, f"phase {p} power factor {p}相功率因数", "X.XXX", None, signed=True)
    add(0x02030000, "active power, total 瞬时总有功功率", "XX.XXXX", "kW", signed=True)
    add(0x02040000, "reactive power, total 瞬时总无功功率", "XX.XXXX", "kvar", signed=True)
    add(0x02050000, "apparent power, total 瞬时总视在功率", "XX.XXXX", "kVA", signed=True)
    add(0x02060000, "power factor, total 总功率因数", "X.XXX", None, signed=True)
    add(0x02800001, "neutral current 零线电流", "XXX.XXX", "A", signed=True)
    add(0x02800002, "grid frequency 电网频率", "XX.XX", "Hz")
    add(0x02800007, "meter temperature 表内温度", "XXX.X", "°C", signed=True)
    add(0x04000101, "date and weekday 日期及星期", "YYMMDDWW")
    add(0x04000102, "time 时间", "hhmmss")
    add(0x04000401, "communication address 通信地址", "NNNNNNNNNNNN")
    add(0x04000402, "meter number 表号", "NNNNNNNNNNNN")
    return out


DATA_ITEMS: dict[int, DataItem] = _items()


def parse_di(text: str | int) -> int:
    """`00010000`, `00 01 00 00`, `00-01-00-00` or `0x00010000` as a DI; ValueError otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        if 0 <= text <= 0xFFFFFFFF:
            return text
        raise ValueError(f"{text!r} is not a data identifier (4 bytes)")
    t = str(text).strip().lower().removeprefix("0x").replace(" ", "").replace("-", "")
    if not re.fullmatch(r"[0-9a-f]{8}", t):
        raise ValueError(f"{text!r} is not a data identifier (8 hex digits DI3..DI0, e.g. 00010000 or 02010100)")
    return int(t, 16)


def format_di(di: int) -> str:
    return f"{di:08X}"


def parse_meter_address(text: str | int) -> str:
    """A meter address as its 12 digits (a shorter one is padded with zeros: `161` → `000000000161`)."""
    t = str(text).strip().replace(" ", "")
    if not t.isdigit() or not 1 <= len(t) <= 12:
        raise ValueError(f"{text!r} is not a meter address (up to 12 decimal digits, as printed on the meter)")
    return t.zfill(12)


def address_bytes(address: str) -> bytes:
    """The 6 address bytes as sent (low byte first); `AAAAAAAAAAAA` is the broadcast address."""
    return bytes.fromhex(address)[::-1]


def address_text(raw: bytes) -> str:
    """The address in a frame (6 bytes, low byte first) as printed on the meter."""
    return raw[::-1].hex().upper()


def _bcd(digits: str) -> bytes:
    """Digits (most significant first) as BCD bytes, low byte first."""
    return bytes.fromhex(digits)[::-1]


def encode_value(value: float | str, fmt: DataFormat) -> bytes:
    """A value as the meter sends it (before the +0x33 of the frame). ValueError if it does not fit."""
    if fmt.kind == "digits":
        text = str(value).zfill(fmt.digits)
        if not text.isdigit() or len(text) != fmt.digits:
            raise ValueError(f"{value!r} is not {fmt.digits} digits")
        return _bcd(text)
    if fmt.kind == "date":  # text YYYY-MM-DD plus the weekday (0 Sunday)
        y, m, d, w = str(value).split("-")
        return _bcd(f"{int(y) % 100:02d}{int(m):02d}{int(d):02d}{int(w):02d}")
    if fmt.kind == "time":
        h, mi, s = str(value).split(":")
        return _bcd(f"{int(h):02d}{int(mi):02d}{int(s):02d}")
    number = float(value)
    magnitude = round(abs(number) * 10**fmt.decimals)
    if magnitude > fmt.max_value * 10**fmt.decimals or (number < 0 and not fmt.signed):
        raise ValueError(f"{number:g} does not fit the format {fmt.text}{' (signed)' if fmt.signed else ''}")
    raw = bytearray(_bcd(f"{magnitude:0{fmt.digits}d}"))
    if number < 0 and magnitude:
        raw[-1] |= 0x80
    return bytes(raw)


def decode_value(data: bytes, fmt: DataFormat) -> float | str:
    """The value of the data bytes (after the DI, the +0x33 already taken off). ValueError if not BCD."""
    if len(data) != fmt.size:
        raise ValueError(f"{len(data)} data bytes for the format {fmt.text} ({fmt.size} bytes)")
    raw = bytearray(data)
    negative = fmt.signed and bool(raw[-1] & 0x80)
    if fmt.signed:
        raw[-1] &= 0x7F
    digits = bytes(raw[::-1]).hex()
    if not digits.isdigit():
        raise ValueError(f"not BCD: {data.hex()}")
    if fmt.kind == "digits":
        return digits
    if fmt.kind == "date":
        return f"20{digits[0:2]}-{digits[2:4]}-{digits[4:6]}"
    if fmt.kind == "time":
        return f"{digits[0:2]}:{digits[2:4]}:{digits[4:6]}"
    value = int(digits) / 10**fmt.decimals
    return -value if negative else value
