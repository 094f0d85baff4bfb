"""Every machine of every industry over each protocol, through the real pipeline: the workshop's generated
gateway.yaml validates as written, and the gateway → Mosquitto → ingester → ledger delivers data from
every device (DL/T 645 meters included, on the serial line beside the Modbus units)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_bridge.cloud.ingest.ingester import Ingester
from cloud_bridge.cloud.ledger.writer import Ledger
from edge_config import load_gateway_config
from edge_config.models import CloudConfig
from simulators.serve import write_config
from simulators.workshop import Workshop, WorkshopSpec
from tests.integration.conftest import MosquittoServer
from tests.integration.spy import Spy, gateway, wait_until
from tests.ports import free_port, free_port_block
from tests.trust import enrol

pytestmark = pytest.mark.integration


def spec(protocol: str) -> WorkshopSpec:
    if protocol == "modbus":
        return WorkshopSpec(industry="all", protocol="modbus", port=free_port_block(11), speed=60)
    if protocol == "rtu":
        return WorkshopSpec(industry="all", protocol="rtu", serial="pty", meters=True, speed=60)
    return WorkshopSpec(industry="all", protocol="opcua", opcua_port=free_port(), speed=60, security=("None",))


@pytest.mark.parametrize("protocol", ["modbus", "rtu", "opcua"])
async def test_every_industry_runs_end_to_end(protocol: str, tmp_path: Path, mosquitto: MosquittoServer) -> None:
    ledger_path = tmp_path / "ledger.db"
    ingester = Ingester(CloudConfig.model_validate({
        "mqtt": {"url": mosquitto.url, "protocol": "5", "shared_group": None},
        "ledger": {"url": f"sqlite:///{ledger_path}"},
    }))  # fmt: skip
    ingester.start()
    assert ingester.wait_subscribed(10)
    spy = Spy(mosquitto.port)
    async with Workshop(spec(protocol), pki_dir=str(tmp_path / "pki")) as ws:
        path = tmp_path / "gw.yaml"
        config = ws.gateway_config(mqtt_url=mosquitto.url, data_dir=str(tmp_path / "edge"),
                                   api=f"127.0.0.1:{free_port()}")  # fmt: skip
        write_config(path, config, "written by the test as edgegw simulate --write-config writes it")
        cfg = load_gateway_config(path)  # the generated file validates as it is
        enrol(f"sqlite:///{ledger_path}", cfg)  # as `edgegw cloud gateway add` does
        ids = [d.id for d in cfg.devices]
        assert len(ids) == (22 if protocol == "rtu" else 11)
        async with gateway(cfg) as agent:
            await wait_until(lambda: all(spy.samples(d) for d in ids), 25, "data from every device")
            devices = agent.runtime.devices
            assert all(devices[d].online for d in ids), {d: devices[d].reason for d in ids if not devices[d].online}
    assert ingester.wait_idle(10)
    ingester.stop()
    spy.close()
    ledger = Ledger(f"sqlite:///{ledger_path}")
    try:
        arrived = sum(len(p["samples"]) for d in ids for _, p in spy.of(d, "data"))
        assert ledger.total_samples() == arrived and ledger.dead_letter_count() == 0
    finally:
        ledger.close()
    # what arrived is what the machines showed: every tag's value is within its signal's range
    for d in ws.devices:
        if d.protocol == "dlt645":
            continue
        for s in d.machine.signals:
            if s.range is None:
                continue
            values = [x["v"] for x in spy.samples(d.id, s.name) if x["q"] == "good"]
            assert all(s.range[0] - 1e-6 <= v <= s.range[1] + 1e-6 for v in values), (d.id, s.name, values)
