"""DL/T 645-2007 frames and values, worked out by hand.

The first three frames are a published capture of a real meter (address 000000000161):
    FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 33 34 33 14 16   read 00010000
    68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16      000000.26 kWh
Checksum of the request: 68+61+01+68+11+04+33+33+34+33 = 0x214 → 14.
"""

from __future__ import annotations

import pytest

from drivers.bus import BadFrame
from drivers.dlt645.protocol import (
    Frame,
    MeterError,
    address_answer,
    address_request,
    build_frame,
    checksum,
    error_text,
    mask,
    parse_frame,
    read_answer,
    read_request,
    unmask,
)
from edge_config.dlt645 import (
    DATA_ITEMS,
    address_bytes,
    address_text,
    decode_value,
    encode_value,
    format_di,
    parse_di,
    parse_format,
    parse_meter_address,
)
from simulators.dlt645_meter import MeterLine, parse_request

METER = "000000000161"


def fmt(di: int):  # type: ignore[no-untyped-def]
    return DATA_ITEMS[di].format


@pytest.mark.parametrize(
    ("di", "frame"),
    [
        (0x00010000, "FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 33 34 33 14 16"),  # forward active energy
        (0x02010100, "FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 34 34 35 17 16"),  # phase A voltage
        (0x02020100, "FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 34 35 35 18 16"),  # phase A current
        # by hand, the header 68 61 01 00 00 00 00 68 11 04 sums to 0x147:
        # DI 02 03 00 00 → low byte first 00 00 03 02, +33 → 33 33 36 35 (0xD1); 0x147 + 0xD1 = 0x218 → 18
        (0x02030000, "FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 33 36 35 18 16"),  # active power
        # DI 02 06 00 00 → 33 33 39 35 (0xD4); 0x21B → 1B
        (0x02060000, "FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 33 39 35 1B 16"),  # power factor
        # DI 02 80 00 02 → 02 00 80 02, +33 → 35 33 B3 35 (0x150); 0x297 → 97
        (0x02800002, "FE FE FE FE 68 61 01 00 00 00 00 68 11 04 35 33 B3 35 97 16"),  # frequency
    ],
)
def test_read_requests(di: int, frame: str) -> None:
    assert read_request(METER, di) == bytes.fromhex(frame)


def test_read_address_goes_to_the_broadcast_address() -> None:
    # 68 AA×6 68 13 00: 104 + 6×170 + 104 + 19 = 1247 = 0x4DF → DF
    assert address_request() == bytes.fromhex("FE FE FE FE 68 AA AA AA AA AA AA 68 13 00 DF 16")
    assert address_request(wakeup=0)[:1] == b"\x68"


@pytest.mark.parametrize(
    ("answer", "di", "value"),
    [
        ("68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16", 0x00010000, 0.26),
        ("68 61 01 00 00 00 00 68 91 06 33 34 34 35 34 43 10 16", 0x02010100, 100.1),
        # header 68 61 01 00 00 00 00 68 91 07 = 0x1CA. 1.234 A: digits 001234 → 00 12 34, low byte first
        # 34 12 00, +33 → 67 45 33 (0xDF); DI 33 34 35 35 (0xD1); 0x1CA + 0xD1 + 0xDF = 0x37A → 7A
        ("FE FE 68 61 01 00 00 00 00 68 91 07 33 34 35 35 67 45 33 7A 16", 0x02020100, 1.234),
        # -2.5 kW: XX.XXXX → 02 50 00, the sign on the top byte: 82 50 00, low first 00 50 82, +33 → 33 83 B5
        # (0x16B); DI 33 33 36 35 (0xD1); 0x1CA + 0xD1 + 0x16B = 0x406 → 06
        ("68 61 01 00 00 00 00 68 91 07 33 33 36 35 33 83 B5 06 16", 0x02030000, -2.5),
        # header with length 06 = 0x1C9. 49.98 Hz: 49 98 → low first 98 49, +33 → CB 7C (0x147); DI 35 33 B3 35
        # (0x150); 0x1C9 + 0x150 + 0x147 = 0x460 → 60
        ("68 61 01 00 00 00 00 68 91 06 35 33 B3 35 CB 7C 60 16", 0x02800002, 49.98),
    ],
)
def test_answers_decode(answer: str, di: int, value: float) -> None:
    frame = parse_frame(bytes.fromhex(answer))
    assert frame.address == METER and frame.control == 0x91
    assert decode_value(read_answer(frame, METER, di), fmt(di)) == pytest.approx(value)


def test_checksum_and_mask() -> None:
    assert checksum(bytes.fromhex("68 61 01 00 00 00 00 68 11 04 33 33 34 33")) == 0x14
    assert mask(b"\x00\xcd\xff") == b"\x33\x00\x32" and unmask(b"\x33\x00\x32") == b"\x00\xcd\xff"


def test_error_answer_is_a_meter_error_not_a_dead_meter() -> None:
    # D1 01, error 02 +33 = 35: 104+97+1+104+209+1+53 = 569 = 0x239 → 39
    frame = parse_frame(bytes.fromhex("68 61 01 00 00 00 00 68 D1 01 35 39 16"))
    with pytest.raises(MeterError) as e:
        read_answer(frame, METER, 0x02990000)
    assert e.value.code == 0x02 and "no data requested" in str(e.value)
    assert error_text(0x41) == "meter error 0x41 (other error 其他错误, too many tariffs 费率数超)"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8B 16", "checksum"),
        ("68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 17", "end"),
        ("68 61 01 00 00 00 00 68 91 09 33 33 34 33 59 33 33 33 8A 16", "length"),
        ("68 61 01 00 00 00 00 69 91 08 33 33 34 33 59 33 33 33 8A 16", "not a DL/T 645 frame"),
    ],
)
def test_garbled_frames_are_bad_frames(raw: str, why: str) -> None:
    with pytest.raises(BadFrame, match=why):
        parse_frame(bytes.fromhex(raw))


def test_an_answer_must_be_the_one_asked_for() -> None:
    frame = parse_frame(bytes.fromhex("68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16"))
    with pytest.raises(BadFrame, match="another data item"):
        read_answer(frame, METER, 0x02010100)
    with pytest.raises(BadFrame, match="answer from meter 000000000161, asked 000000000162"):
        read_answer(frame, "000000000162", 0x00010000)
    with pytest.raises(BadFrame, match="not an answer"):
        read_answer(Frame(METER, 0x11, b"\x00\x00\x01\x00"), METER, 0x00010000)


def test_address_answer() -> None:
    frame = build_frame("123456789012", 0x93, address_bytes("123456789012"), wakeup=0)
    assert address_answer(parse_frame(frame)) == "123456789012"
    assert address_bytes("123456789012") == bytes.fromhex("12 90 78 56 34 12")
    assert address_text(bytes.fromhex("12 90 78 56 34 12")) == "123456789012"


@pytest.mark.parametrize(
    ("text", "value", "raw"),
    [
        ("XXXXXX.XX", 123456.78, "78 56 34 12"),
        ("XXX.X", 220.1, "01 22"),
        ("XXX.XXX", -12.345, "45 23 81"),  # signed: top bit of the last byte
        ("X.XXX", 0.856, "56 08"),
        ("XX.XX", 50.02, "02 50"),
        ("hhmmss", "13:05:09", "09 05 13"),
        ("YYMMDDWW", "2024-05-06-1", "01 06 05 24"),
        ("NNNNNNNNNNNN", "000000000161", "61 01 00 00 00 00"),
    ],
)
def test_values_encode_and_decode(text: str, value: float | str, raw: str) -> None:
    f = parse_format(text, signed=text == "XXX.XXX")
    assert encode_value(value, f) == bytes.fromhex(raw)
    back = decode_value(bytes.fromhex(raw), f)
    if isinstance(value, str):
        assert back == (value.rsplit("-", 1)[0] if text == "YYMMDDWW" else value)
    else:
        assert back == pytest.approx(value)


def test_values_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode_value(1_000_000.0, parse_format("XXXXXX.XX"))
    with pytest.raises(ValueError, match="does not fit"):
        encode_value(-1.0, parse_format("XXX.X"))  # unsigned
    with pytest.raises(ValueError, match="does not fit"):
        encode_value(80.0, parse_format("XX.XXXX", signed=True))  # the sign bit leaves 79.9999
    with pytest.raises(ValueError, match="not BCD"):
        decode_value(b"\x1a\x00", parse_format("XX.XX"))


@pytest.mark.parametrize("text", ["X.XX", "XXXX.X.X", "", "hh:mm"])
def test_bad_formats(text: str) -> None:
    with pytest.raises(ValueError, match="not a DL/T 645 data format"):
        parse_format(text)


def test_data_identifiers_and_addresses_in_their_notations() -> None:
    assert parse_di("00 01 00 00") == parse_di("00-01-00-00") == parse_di("0x00010000") == 0x00010000
    assert format_di(0x02800002) == "02800002"
    with pytest.raises(ValueError, match="not a data identifier"):
        parse_di("0201010")
    assert parse_meter_address("161") == "000000000161"
    with pytest.raises(ValueError, match="not a meter address"):
        parse_meter_address("12345678901234")


class _Meter:
    """A stand-in energy meter model for the simulator's frame handling."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.meter = SimpleNamespace(energy_kwh=1234.56, voltage=380.0, current=12.5, power_kw=7.2,
                                     power_factor=0.87, frequency=50.01)  # fmt: skip
        self.clock_skew = 0.0

    def step(self, now: float) -> None:
        pass


def test_the_simulated_meter_answers_what_the_driver_asks() -> None:
    line = MeterLine({METER: _Meter()})
    answer, delay = line.answer(read_request(METER, 0x00010000))
    assert answer is not None and delay == 0.0
    assert answer.startswith(b"\xfe\xfe\x68")  # two wake-up bytes in front, as many meters send
    assert decode_value(read_answer(parse_frame(answer), METER, 0x00010000), fmt(0x00010000)) == 1234.56
    v = decode_value(read_answer(parse_frame(line.answer(read_request(METER, 0x02010100))[0] or b""), METER,
                                 0x02010100), fmt(0x02010100))  # fmt: skip
    assert v == pytest.approx(380.0 / 3**0.5, abs=0.05)
    with pytest.raises(MeterError):  # an item the meter does not have
        read_answer(parse_frame(line.answer(read_request(METER, 0x00040000))[0] or b""), METER, 0x00040000)
    assert line.answer(read_request("000000000999", 0x00010000)) == (None, 0.0)  # another meter's
    assert address_answer(parse_frame(line.answer(address_request())[0] or b"")) == METER
    assert parse_request(b"\x68\x00") is None


def test_several_meters_do_not_answer_a_broadcast_address_read() -> None:
    line = MeterLine({METER: _Meter(), "000000000162": _Meter()})
    assert line.answer(address_request()) == (None, 0.0)
