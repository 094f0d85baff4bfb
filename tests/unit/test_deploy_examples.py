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
