"""Wire format of read requests and responses, RTU framing and timing, worked out by hand."""

from __future__ import annotations

import pytest

from drivers.modbus.protocol import (
    BadFrame,
    DeviceException,
    crc16,
    payload_size,
    read_payload,
    read_request,
    rtu_check,
    rtu_frame,
    rtu_silence,
)
from edge_config.modbus import Table
from simulators.modbus_rtu import crc16 as simulator_crc16


def test_read_requests_per_table() -> None:
    assert read_request(Table.COIL, 0x13, 0x25) == bytes.fromhex("01 0013 0025")
    assert read_request(Table.DISCRETE_INPUT, 0xC4, 0x16) == bytes.fromhex("02 00C4 0016")
    assert read_request(Table.HOLDING_REGISTER, 0x6B, 3) == bytes.fromhex("03 006B 0003")
    assert read_request(Table.INPUT_REGISTER, 8, 1) == bytes.fromhex("04 0008 0001")


def test_payload_sizes() -> None:
    assert payload_size(Table.HOLDING_REGISTER, 125) == 250
    assert [payload_size(Table.COIL, n) for n in (1, 8, 9, 2000)] == [1, 1, 2, 250]


def test_read_payload() -> None:
    # the spec's example: 3 holding registers from 0x6B
    assert read_payload(3, 6, bytes.fromhex("03 06 022B 0000 0064")) == bytes.fromhex("022B 0000 0064")
    with pytest.raises(DeviceException) as info:
        read_payload(3, 6, bytes.fromhex("83 02"))
    assert info.value.code == 2 and str(info.value) == "exception 2 (illegal data address)"
    for garbled in ("03 04 022B 0000", "04 06 022B 0000 0064", "03 06 022B 0000", ""):
        with pytest.raises(BadFrame):
            read_payload(3, 6, bytes.fromhex(garbled))
    # an exception PDU is exactly function | 0x80 and the code: anything longer or shorter is garbled
    for garbled in ("83 02 DEAD BEEF", "83 02 00", "83"):
        with pytest.raises(BadFrame, match="malformed exception answer to function 3"):
            read_payload(3, 6, bytes.fromhex(garbled))


def test_crc_of_known_frames() -> None:
    # read 10 holding registers of unit 1 from 0: the frame every Modbus manual shows
    assert rtu_frame(1, bytes.fromhex("03 0000 000A")) == bytes.fromhex("01 03 0000 000A C5CD")
    assert rtu_frame(0x11, bytes.fromhex("03 006B 0003")) == bytes.fromhex("11 03 006B 0003 7687")
    assert rtu_check(bytes.fromhex("01 03 0000 000A C5CD"))
    assert not rtu_check(bytes.fromhex("01 03 0000 000B C5CD"))
    # the simulator computes it its own way (bit by bit); they agree
    for data in (b"", b"\x01", bytes(range(256))):
        assert crc16(data) == simulator_crc16(data)


def test_inter_frame_silence_from_the_baud_rate() -> None:
    # 3.5 characters of 10 bits (start, 8 data, stop) at 9600 baud; 11 bits with parity
    assert rtu_silence(9600) == pytest.approx(3.5 * 10 / 9600)
    assert rtu_silence(9600, parity="E") == pytest.approx(3.5 * 11 / 9600)
    assert rtu_silence(19200, stopbits=2) == pytest.approx(3.5 * 11 / 19200)
    assert rtu_silence(38400) == rtu_silence(115200) == 0.00175  # fixed above 19200 baud
