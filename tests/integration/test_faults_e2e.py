"""Faults injected per device from test code, through the real pipeline: what arrives at the broker is
what the source produced (values, quality, timestamps, online and offline), and the other devices never
notice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge_config.scenario import Fault
from simulators.workshop import Workshop, WorkshopSpec
from tests.integration.conftest import MosquittoServer
from tests.integration.spy import Spy, gateway, gateway_config, wait_until
from tests.ports import free_port, free_port_block

pytestmark = pytest.mark.integration

FROZEN = 1e-9  # model time stands still: the machines show one set of values for the whole test


def newest(spy: Spy, dev: str, tag: str, after: float) -> dict[str, object] | None:
    got = spy.samples(dev, tag, after)
    return got[-1] if got else None


async def test_modbus_faults_arrive_as_the_source_made_them(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    ws = Workshop(WorkshopSpec(industry="food", devices=2, protocol="modbus", port=free_port_block(2), speed=FROZEN))
    cfg = gateway_config(ws, tmp_path, mosquitto.url, {"timeout": "300ms", "backoff_max": "1s", "bad_retry": "1s"},
                         poll_interval="200ms")  # fmt: skip
    spy = Spy(mosquitto.port)
    filler = ws.device("filler-01").machine
    source = filler.values()
    address = next(t["address"] for t in filler.tags if t["name"] == "fill_weight")
    async with ws, gateway(cfg):
        await wait_until(lambda: spy.samples("filler-01") and spy.samples("filler-02"), 10, "first data")
        for s in spy.samples("filler-01"):  # every value arrives as the machine shows it
            assert s["q"] == "good" and s["v"] == pytest.approx(source[s["tag"]]), s

        t = time.time()
        await ws.inject("filler-01", Fault("exception", address))  # the PLC refuses one register
        await wait_until(lambda: (newest(spy, "filler-01", "fill_weight", t) or {}).get("q") == "bad", 10, "bad")
        assert all(s["q"] == "good" for s in spy.samples("filler-01", after=t) if s["tag"] != "fill_weight")
        await ws.clear("filler-01", "exception")
        t = time.time()
        await wait_until(lambda: (newest(spy, "filler-01", "fill_weight", t) or {}).get("q") == "good", 10, "good")
        assert newest(spy, "filler-01", "fill_weight", t)["v"] == pytest.approx(source["fill_weight"])  # type: ignore[index]

        for fault, reason in ((Fault("slow", "1s"), "no response from unit 1"), (Fault("corrupt"), "garbled answer"),
                              (Fault("offline"), "connection "), ):  # fmt: skip
            ups = spy.online("filler-01").count(True)
            await ws.inject("filler-01", fault)
            await wait_until(lambda: spy.online("filler-01")[-1] is False, 10, f"offline by {fault}")
            assert reason in spy.reasons("filler-01")[-1], spy.reasons("filler-01")
            await ws.clear("filler-01", fault.kind)
            await wait_until(lambda n=ups: spy.online("filler-01").count(True) == n + 1, 10, f"back from {fault}")

        t = time.time()
        await ws.inject("filler-01", Fault("rollover"))  # the counters jump to just below 2³²
        top = 0xFFFFFFFF - 20
        await wait_until(lambda: (newest(spy, "filler-01", "bottles_total", t) or {}).get("v") == top, 10, "rollover")
        await ws.inject("filler-01", Fault("counter_reset"))
        await wait_until(lambda: (newest(spy, "filler-01", "bottles_total", t) or {}).get("v") == 0, 10, "reset")
        assert filler.values()["bottles_total"] == 0
    spy.close()
    assert spy.online("filler-02") == [True]  # the other filler never noticed


async def test_opcua_faults_offline_skew_and_restart(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    ws = Workshop(WorkshopSpec(industry="chemicals", protocol="opcua", opcua_port=free_port(), security=("None",)),
                  pki_dir=str(tmp_path / "pki"))  # fmt: skip
    cfg = gateway_config(ws, tmp_path, mosquitto.url, {"keepalive": "1s", "reconnect_max_delay": "2s"})
    spy = Spy(mosquitto.port)
    async with ws, gateway(cfg):
        await wait_until(lambda: spy.samples("reactor-01") and spy.samples("column-01"), 15, "first data")

        t = time.time()
        await ws.inject("reactor-01", Fault("offline"))  # the server reports the PLC behind it gone
        await wait_until(lambda: any(s["q"] == "bad" for s in spy.samples("reactor-01", after=t)), 10, "bad")
        bad = {s["tag"] for s in spy.samples("reactor-01", after=t) if s["q"] == "bad"}
        assert bad == {s.name for s in ws.device("reactor-01").machine.signals}  # every variable
        assert all(s["q"] == "good" for s in spy.samples("column-01", after=t))
        await ws.clear("reactor-01", "offline")
        t = time.time()
        await wait_until(lambda: any(s["q"] == "good" for s in spy.samples("reactor-01", after=t)), 10, "good")

        await ws.inject("reactor-01", Fault("skew", "-90s"))  # its clock runs 90 s late
        t = time.time()
        # samples read before the fault can still be on their way for a second or two on a loaded machine
        await wait_until(lambda: len(spy.samples("reactor-01", after=t + 3)) >= 3, 15, "skewed data")
        lags = [arrived - s["ts"] / 1000 for arrived, p in spy.of("reactor-01", "data") if arrived > t + 3
                for s in p["samples"]]  # fmt: skip
        assert all(89 <= lag <= 95 for lag in lags), lags  # the source timestamp is kept, skew and all
        await ws.clear("reactor-01", "skew")

        ups = {d: spy.online(d).count(True) for d in ("reactor-01", "column-01")}
        await ws.inject("reactor-01", Fault("restart"), seconds=1.0)  # the server restarts: both devices drop
        await wait_until(lambda: all(spy.online(d).count(True) == n + 1 for d, n in ups.items()), 20, "back")
        assert all(spy.online(d)[-2:] == [False, True] for d in ups)
    spy.close()


async def test_a_dead_meter_beside_live_modbus_units(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    ws = Workshop(WorkshopSpec(industry="power", devices=[2, 0, 0, 0], protocol="rtu", serial="pty", meters=True))
    async with ws:
        cfg = gateway_config(ws, tmp_path, mosquitto.url, {"timeout": "300ms", "backoff_max": "1s"},
                             poll_interval="300ms")  # fmt: skip
        spy = Spy(mosquitto.port)
        await ws.inject("winder-02-meter", Fault("offline"))
        async with gateway(cfg):
            await wait_until(lambda: all(spy.samples(d) for d in ("winder-01", "winder-02", "winder-01-meter")), 15)
            await wait_until(lambda: spy.online("winder-02-meter") == [False], 10, "the dead meter reported")
            assert "no response from meter 000000000002" in spy.reasons("winder-02-meter")[0]
            await ws.clear("winder-02-meter", "offline")
            await wait_until(lambda: spy.online("winder-02-meter") == [False, True], 10, "the meter back")
        spy.close()
        meter = ws.device("winder-01").machine.meter
        energy = [s["v"] for s in spy.samples("winder-01-meter", "energy_kwh") if s["q"] == "good"]
        assert energy and abs(energy[-1] - meter.energy_kwh) < 0.05  # what the meter showed, to the format's digits
    assert all(spy.online(d) == [True] for d in ("winder-01", "winder-02", "winder-01-meter"))
