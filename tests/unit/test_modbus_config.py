"""Modbus config: new fields and their mistakes name the file, the line and the field path."""

from __future__ import annotations

import pytest

from edge_config import ConfigError, load_text
from edge_config.models import GatewayConfig, ModbusRtuDevice, ModbusTcpDevice

GOOD = """\
gateway: {id: gw-1, enterprise_id: ent-1}
devices:
  - id: meter-bus
    driver: modbus_rtu
    connection: {port: /dev/ttyUSB0, baudrate: 9600, parity: E, unit_id: 3, timeout: 300ms, backoff_max: 20s}
    poll_interval: 1s
    tags:
      - {name: energy, address: "30001", type: float32, byte_order: CDAB, deadband_percent: 0.5, heartbeat: 5m}
      - {name: status, address: "hr:0", type: uint16, interval: 200ms}
      - {name: alarm, address: "hr:1", type: bool, bit: 3}
  - id: plc
    driver: modbus_tcp
    connection: {host: 10.0.0.5, unit_id: 1, max_registers: 60, max_gap: 4, bad_retry: 2m}
    tags:
      - {name: total, address: "hr:100", type: uint64, byte_order: DCBA, deadband: 10}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(text, GatewayConfig, "gateway.yaml")
    return [str(i) for i in info.value.issues]


def test_good() -> None:
    cfg = load_text(GOOD, GatewayConfig, "gateway.yaml")
    rtu, tcp = cfg.devices
    assert isinstance(rtu, ModbusRtuDevice) and isinstance(tcp, ModbusTcpDevice)
    assert rtu.connection.timeout == 0.3 and rtu.connection.backoff_max == 20.0
    assert rtu.connection.silence is None and rtu.connection.max_bits == 2000
    assert rtu.tags[0].deadband_percent == 0.5 and rtu.tags[0].heartbeat == 300.0
    assert rtu.tags[1].interval == 0.2
    assert tcp.connection.bad_retry == 120.0 and tcp.connection.max_registers == 60


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "deadband_percent: 0.5,",
            "deadband_percent: 0.5, deadband: 1,",
            "gateway.yaml:8: devices[0].tags[0].deadband_percent: use deadband (absolute) or deadband_percent",
        ),
        (
            "deadband_percent: 0.5,",
            "deadband_percent: -1,",
            "gateway.yaml:8: devices[0].tags[0].deadband_percent: Input should be greater than or equal to 0",
        ),
        (
            "heartbeat: 5m",
            "heartbeat: often",
            "gateway.yaml:8: devices[0].tags[0].heartbeat: 'often' is not a duration (use 500ms, 1s, 2m)",
        ),
        ("heartbeat: 5m", "heartbeat: 0s", "gateway.yaml:8: devices[0].tags[0].heartbeat: heartbeat must be above 0"),
        (
            "interval: 200ms",
            "interval: 0s",
            "gateway.yaml:9: devices[0].tags[1].interval: tag 'status': interval must be above 0",
        ),
        (
            "unit_id: 3",
            "unit_id: 0",
            "gateway.yaml:5: devices[0].connection.unit_id: Input should be greater than or equal to 1",
        ),
        (
            "baudrate: 9600",
            "baudrate: 96",
            "gateway.yaml:5: devices[0].connection.baudrate: Input should be greater than or equal to 300",
        ),
        ("parity: E", "parity: X", "gateway.yaml:5: devices[0].connection.parity: 'X': input should be"),
        (
            "backoff_max: 20s",
            "backoff_max: 0s",
            "gateway.yaml:5: devices[0].connection.backoff_max: backoff_max must be above 0",
        ),
        (
            "max_registers: 60",
            "max_registers: 3",
            "gateway.yaml:15: devices[1].tags[0].type: tag 'total' needs 4 registers, more than",
        ),
        (
            "max_gap: 4",
            "max_gap: 4, max_bits: 4000",
            "gateway.yaml:13: devices[1].connection.max_bits: Input should be less than or equal to 2000",
        ),
        ("bad_retry: 2m", "bad_retry: soon", "gateway.yaml:13: devices[1].connection.bad_retry: 'soon' is not a"),
    ],
)
def test_mistakes(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    errs = errors_of(GOOD.replace(old, new, 1))
    assert any(e.startswith(expected) for e in errs), errs


SECOND_ON_THE_BUS = """\
  - id: meter-4
    driver: modbus_rtu
    connection:
      port: /dev/ttyUSB0
      unit_id: 4
      baudrate: 9600
      parity: E
    tags:
      - {name: energy, address: "30001", type: float32}
"""


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "      baudrate: 9600\n",
            "      baudrate: 19200\n",
            "gateway.yaml:21: devices[2].connection.baudrate: 19200 differs from 9600 of device 'meter-bus' on the "
            "same serial port /dev/ttyUSB0: devices on one port share its settings",
        ),
        (
            "      parity: E\n",
            "      parity: N\n",
            "gateway.yaml:22: devices[2].connection.parity: 'N' differs from 'E' of device 'meter-bus'",
        ),
    ],
)
def test_devices_on_one_serial_port_must_share_its_settings(old: str, new: str, expected: str) -> None:
    text = GOOD + SECOND_ON_THE_BUS
    cfg = load_text(text, GatewayConfig, "gateway.yaml")  # the same settings: one bus, fine
    assert [d.id for d in cfg.devices] == ["meter-bus", "plc", "meter-4"]
    errs = errors_of(text.replace(old, new))
    assert any(e.startswith(expected) for e in errs), errs
    # on another port, other settings are fine
    load_text(text.replace(old, new).replace("port: /dev/ttyUSB0\n", "port: /dev/ttyUSB1\n"), GatewayConfig, "g")


def test_a_device_id_twice_names_the_second_ones_line() -> None:
    errs = errors_of((GOOD + SECOND_ON_THE_BUS).replace("  - id: meter-4\n", "  - id: plc\n"))
    assert errs == ["gateway.yaml:16: devices[2].id: device id 'plc' appears twice"]
