"""The config contract of DL/T 645 meters: data identifiers, formats, addresses, a shared serial port."""

from __future__ import annotations

import json

import pytest

from edge_config import ConfigError, json_schema, load_text
from edge_config.models import Dlt645Device, GatewayConfig

HEAD = "gateway: {id: gw, enterprise_id: ent}\ndevices:\n"
METER = """  - id: {id}
    driver: dlt645
    connection: {{port: /dev/ttyUSB0, address: "{address}", baudrate: 9600, parity: N}}
    tags:
      - {{name: energy_kwh, di: "00010000", unit: kWh}}
      - {{name: voltage_a, di: "02 01 01 00", unit: V}}
"""
UNIT = """  - id: press-3
    driver: modbus_rtu
    connection: {{port: /dev/ttyUSB0, unit_id: 3, baudrate: {baud}}}
    tags: [{{name: strokes, address: "40001"}}]
"""


def load(text: str) -> GatewayConfig:
    return load_text(HEAD + text, GatewayConfig, "gw.yaml")


def test_meters_and_modbus_units_share_a_port_when_the_line_agrees() -> None:
    cfg = load(METER.format(id="m-1", address="161") + METER.format(id="m-2", address="162") + UNIT.format(baud=9600))
    meter = cfg.devices[0]
    assert isinstance(meter, Dlt645Device)
    assert meter.connection.address == "000000000161" and meter.connection.wakeup == 4
    assert [t.di for t in meter.tags] == ["00010000", "02010100"]
    assert [t.value_type for t in meter.tags] == ["float64", "float64"]
    assert meter.production is False  # a meter is not production equipment


def test_every_mistake_is_named_with_its_line() -> None:
    bad = (
        METER.format(id="m-1", address="161")
        + """      - {name: x, di: 2010100}
      - {name: y, di: "02990000"}
      - {name: z, di: "02990000", format: "XX.X"}
      - {name: d, di: "04000101", type: float64}
"""
        + METER.format(id="m-2", address="0x1")
    )
    with pytest.raises(ConfigError) as e:
        load(bad)
    lines = str(e.value).splitlines()
    assert lines == [
        'gw.yaml:9: devices[0].tags[2].di: write the data identifier in quotes, e.g. di: "02010100" (unquoted it '
        "reads as 2010100)",
        "gw.yaml:10: devices[0].tags[3].di: DI 02990000 is not in the table: give its format: (e.g. XXX.XXX) and "
        "signed:",
        "gw.yaml:11: devices[0].tags[4].format: 'XX.X' is not a DL/T 645 data format (e.g. XXXXXX.XX, XXX.XXX, XX.XX: "
        "an even number of digits)",
        "gw.yaml:12: devices[0].tags[5].type: DI 04000101 (YYMMDDWW) reads as string, not float64",
        "gw.yaml:15: devices[1].connection.address: '0x1' is not a meter address (up to 12 decimal digits, as printed "
        "on the meter)",
    ]


def test_a_differing_line_setting_or_a_duplicate_address_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"gw.yaml:11: devices\[1\].connection.baudrate: 19200 differs from 9600"):
        load(METER.format(id="m-1", address="161") + UNIT.format(baud=19200))
    with pytest.raises(ConfigError, match=r"devices\[1\].connection.address: meter address 000000000161 on "):
        load(METER.format(id="m-1", address="161") + METER.format(id="m-2", address="000000000161"))


def test_an_unknown_di_reads_with_its_format() -> None:
    text = """  - id: m-1
    driver: dlt645
    connection: {port: COM3, address: "1"}
    tags: [{name: t, di: "02800007", unit: °C}, {name: q, di: "0203FF00", format: XX.XXXX, signed: true}]
"""
    tags = load(text).devices[0].tags
    assert tags[0].data_format.signed and tags[1].data_format.size == 3


def test_the_schema_knows_the_driver() -> None:
    schema = json.loads(json_schema())
    assert "Dlt645Device" in schema["$defs"] and "Dlt645Tag" in schema["$defs"]
    assert "di" in schema["$defs"]["Dlt645Tag"]["properties"]
