"""`edgegw opcua browse` against the simulator: the tag map it writes validates as config and works."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.base import Reading
from drivers.opcua import OpcUaDriver
from drivers.opcua.browse import csv_rows
from edge_config import load_gateway_config
from edge_config.models import OpcUaTag
from gateway.cli import main
from simulators.chemicals import BatchReactor, DistillationColumn
from simulators.opcua_server import TYPE_TEST, OpcUaSimulator
from tests.ports import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[OpcUaSimulator]:
    async with OpcUaSimulator(
        [BatchReactor("Reactor1", "反应釜 1#"), DistillationColumn()], port=free_port(), pki_dir=tmp_path / "sim"
    ) as s:
        yield s


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_browse_to_yaml_validates_and_runs(
    sim: OpcUaSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plant.yaml"
    assert await cli("opcua", "browse", sim.endpoint, "--out", str(out), "--device-id", "plant-1") == 0
    err = capsys.readouterr().err
    assert "browsing [" in err and "wrote" in err

    cfg = load_gateway_config(out)  # validates as a gateway config, as written
    (dev,) = cfg.devices
    assert dev.id == "plant-1" and dev.driver == "opcua"
    tags = {t.name: t for t in dev.tags}
    temp = tags["Plant.Reactor1.Temperature"]
    assert (temp.node, temp.type, temp.unit) == ("ns=2;s=Reactor1.Temperature", "float64", "°C")
    assert "[20..200]" in temp.description  # the EURange
    assert tags["Plant.Reactor1.Pressure"].unit == "MPa"
    assert tags["Plant.Column1.ReboilerSteam"].unit == "t/h"
    assert tags["Plant.Reactor1.BatchCount"].type == "uint32" and tags["Plant.Reactor1.BatchCount"].unit == "batches"
    assert tags["TypeTest.DoubleArray"].type == "string"  # arrays travel as JSON text
    assert tags["TypeTest.Float"].type == "float32" and tags["TypeTest.Boolean"].type == "bool"
    assert "IdForms.Numeric" in tags and tags["IdForms.Guid"].node.startswith("ns=2;g=")
    assert not any(name.startswith("Server") for name in tags)  # the standard Server object is left out
    expected = len(BatchReactor().signals) + len(DistillationColumn().signals) + len(TYPE_TEST) + 2 + 3
    assert len(dev.tags) == expected
    # no property (EngineeringUnits, EURange) became a tag
    assert not any(t.node.endswith((".EngineeringUnits", ".EURange")) for t in dev.tags)

    # the map works as it is: every tag reads with good quality (bar the one bad-by-design node)
    drv = OpcUaDriver(dev, data_dir=tmp_path / "data")
    got: list[Reading] = []
    await drv.start(got.extend)
    try:
        deadline = time.monotonic() + 5
        while {r.tag for r in got} != set(tags) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await drv.stop()
    latest = {r.tag: r for r in got}
    assert set(latest) == set(tags)
    assert {t for t, r in latest.items() if r.quality != "good"} == {"TypeTest.Uncertain", "TypeTest.Bad"}


async def test_browse_a_subtree_to_csv_over_a_secure_channel(
    sim: OpcUaSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reactor.csv"
    argv = ["opcua", "browse", sim.endpoint, "--root", "ns=2;s=Reactor1", "--out", str(out), "--mode", "poll",
            "--security-policy", "Basic256Sha256", "--security-mode", "SignAndEncrypt",
            "--username", "operator", "--password", "edgegw-sim",
            "--data-dir", str(tmp_path / "data"), "--trust-on-first-use"]  # fmt: skip
    assert await cli(*argv) == 0
    rows = csv_rows(out.read_text(encoding="utf-8"))
    tags = [OpcUaTag.model_validate(r) for r in rows]  # every row validates as a tag
    assert [t.name for t in tags] == [s.browse_name for s in BatchReactor().signals]
    assert all(t.mode == "poll" for t in tags)
    units = {t.name: t.unit for t in tags}
    assert units["Temperature"] == "°C" and units["AgitatorSpeed"] == "r/min" and units["FeedFlow"] == "m³/h"
    assert (tmp_path / "data/pki/own/cert.der").is_file()
    assert list((tmp_path / "data/pki/trusted").glob("tofu_*.der"))


async def test_browse_errors_are_reported(sim: OpcUaSimulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("opcua", "browse", sim.endpoint, "--root", "ns=2;x=1") == 2
    assert "is not an OPC UA node id" in capsys.readouterr().err
    assert await cli("opcua", "browse", f"opc.tcp://127.0.0.1:{free_port()}", "--timeout", "1s") == 1
    assert "connection refused" in capsys.readouterr().err
    assert await cli("opcua", "browse", sim.endpoint, "--security-policy", "Basic256Sha256") == 1
    assert "server certificate not trusted" in capsys.readouterr().err
