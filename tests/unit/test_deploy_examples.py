"""The example configs shipped in deploy/ must validate."""

from __future__ import annotations

from pathlib import Path

from edge_config import load_cloud_config, load_gateway_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_gateway_example_validates() -> None:
    cfg = load_gateway_config(DEPLOY / "gateway.example.yaml")
    assert cfg.devices[0].tags[0].unit == "rpm"


def test_cloud_example_validates() -> None:
    cfg = load_cloud_config(DEPLOY / "cloud.example.yaml")
    assert cfg.influx is not None and cfg.mqtt.shared_group == "edgegw-ingest"


def test_rs485_example_validates_with_meters_and_a_modbus_unit_on_one_line() -> None:
    cfg = load_gateway_config(DEPLOY / "gateway.rs485.example.yaml")
    assert [d.driver for d in cfg.devices] == ["dlt645", "dlt645", "modbus_rtu"]
    assert {d.connection.port for d in cfg.devices} == {"/dev/ttyUSB0"}
    assert cfg.devices[1].connection.address == "000000000162"  # type: ignore[union-attr]
