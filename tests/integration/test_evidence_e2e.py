"""End to end on real parts, on a compressed timeline: a scripted machine (Modbus TCP) → gateway →
Mosquitto → ingester → ledger → `edgegw evidence export`, and the pack's numbers match the script.

The script runs 32 s: running, a fault, a micro-stop, a slow run (speed loss), setup, a run with rejects
after a counter reset, a planned stop, a run during which the machine is switched off for 2 s
(offline), and a stop. The 16-bit counter starts near its top, so it wraps in the first run.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.cloud.ingest.ingester import Ingester
from edge_config.models import CloudConfig, GatewayConfig
from gateway.agent import Agent
from gateway.cli import main
from gateway.oee.tracker import config_hash
from simulators.modbus_server import ModbusTcpSimulator
from simulators.scripted import ScriptedMachine, Segment, scripted_device_config
from tests.ports import free_port
from tests.servers import MosquittoServer
from tests.trust import enrol

pytestmark = pytest.mark.integration

ICT = 0.1  # ideal: 10 parts per second
POLL = 0.2  # the resolution of everything the gateway sees
SCRIPT = [
    Segment(6, "running", 10),
    Segment(3, "fault"),
    Segment(4, "running", 10),
    Segment(1, "idle"),  # a micro-stop: under the 1.5 s threshold, between runs
    Segment(4, "running", 8),  # 20 % speed loss
    Segment(2, "setup"),
    Segment(3, "running", 10, reject_ratio=0.1, reset=True),  # counters reset by hand, 10 % rejects
    Segment(2, "planned_stop"),
    Segment(5, "running", 10),  # switched off from 26 s to 28 s
    Segment(2, "idle"),  # stopped at the end (so the window's end cuts no production)
]
OFF_AT, ON_AT = 26.0, 28.0


async def wait_until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.time()))


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


async def test_scripted_timeline_to_evidence_pack(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    machine = ScriptedMachine(SCRIPT, start_total=65_500)
    port = free_port()
    sim = ModbusTcpSimulator(machine, port=port, clock=time.time)
    gw_cfg = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-ev", "enterprise_id": "ent-ev", "data_dir": str(tmp_path / "edge")},
            "mqtt": {"url": mosquitto.url},
            "api": {"listen": f"127.0.0.1:{free_port()}"},
            "history": {"snapshot_interval": "1s", "local_interval": "500ms"},
            "devices": [
                scripted_device_config(
                    "press-01", "127.0.0.1", port, ideal_cycle_time=ICT, poll_interval=POLL, micro_stop=1.5
                )
            ],
        }
    )
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    cloud_cfg = CloudConfig.model_validate(
        {"mqtt": {"url": mosquitto.url, "shared_group": "ev"}, "ledger": {"url": ledger_url}}
    )
    enrol(ledger_url, gw_cfg)
    ingester = Ingester(cloud_cfg)
    ingester.start()
    assert ingester.wait_subscribed(10)
    await sim.start()
    assert machine.t0 is not None
    t0 = machine.t0
    agent = Agent(gw_cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, serve_api=False))
    try:
        await wait_until(lambda: agent.runtime.devices["press-01"].online, 10, "the machine online")
        w0 = max(time.time() + 0.3, t0 + 1.0)  # the window starts once the gateway sees the machine
        await sleep_until(t0 + OFF_AT)
        await sim.stop()  # power off
        await sleep_until(t0 + ON_AT)
        await sim.start()  # power back
        await sleep_until(t0 + machine.length + 2.0)  # past the end: the next snapshot and the micro-stop margin
    finally:
        stop.set()
        await task
        await sim.stop()
    assert ingester.wait_idle(10)
    ingester.stop()
    w1 = t0 + machine.length
    assert w0 < t0 + 6, "the gateway took too long to connect for this script"

    # the equipment ledger: this machine and two others that are not connected (one digitized)
    sheet = tmp_path / "equipment.csv"
    sheet.write_text(
        "设备编号,设备名称,设备类型,产线,关键工序,数字化\n"
        "press-01,冲压机 1#,press,L1,是,是\n"
        "press-02,冲压机 2#,press,L1,否,是\n"
        "lathe-01,普通车床,lathe,L2,否,否\n",
        encoding="utf-8",
    )
    assert main(["evidence", "import-equipment", str(sheet), "--enterprise", "ent-ev", "--ledger", ledger_url]) == 0
    out = tmp_path / "pack"
    argv = ["evidence", "export", "--enterprise", "ent-ev", "--ledger", ledger_url, "-o", str(out)]
    assert main([*argv, "--from", str(round(w0 * 1000)), "--to", str(round(w1 * 1000))]) == 0
    noted = hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()  # what the evaluator notes on receipt
    assert main(["evidence", "verify", str(out), "--expect", noted]) == 0
    assert main(["evidence", "recompute", str(out)]) == 0  # every figure again, from the pack's files alone

    ev = json.loads((out / "evidence.json").read_text())
    lo, hi = w0 - t0, w1 - t0  # the window in script offsets

    # --- online time: the 2 s power-off, seen within the gateway's reconnect backoff
    press = next(d for d in ev["devices"] if d["id"] == "press-01")
    window = hi - lo
    offline = window - press["online_s"]
    assert 2.0 - 2 * POLL <= offline <= 2.0 + 2.5, offline
    gaps = [
        (b1 / 1000 - t0, a2 / 1000 - t0)
        for (_, b1), (a2, _) in zip(press["online_intervals"], press["online_intervals"][1:], strict=False)
    ]
    assert len(gaps) == 1 and OFF_AT - 0.1 <= gaps[0][0] <= OFF_AT + 2 * POLL and ON_AT <= gaps[0][1] <= ON_AT + 2.5
    assert press["online_rate"] == pytest.approx(press["online_s"] / window, abs=0.01)  # 24 h a day planned
    assert press["networked"] and round(w0 * 1000) <= press["first_seen_ms"] < press["last_seen_ms"] < w1 * 1000
    assert press["completeness"]["ratio"] == pytest.approx(press["online_s"] / window, abs=0.15)
    rows = read_csv(out / "csv" / "online_intervals.csv")
    assert sum(float(r["seconds"]) for r in rows if r["id"] == "press-01") == pytest.approx(press["online_s"], abs=0.01)

    # --- OEE: every state's time, the counts (wrap and reset), A, P, Q against the script
    o = press["oee"]
    t, c = o["time_s"], o["counts"]
    tol = 2.5 * POLL
    assert t["offline"] == pytest.approx(offline, abs=0.05)
    assert t["fault"] == pytest.approx(machine.time_in("fault", lo, hi), abs=tol)
    assert t["micro_stops"] == pytest.approx(machine.time_in("idle", lo, 25), abs=tol)
    assert t["idle"] == pytest.approx(machine.time_in("idle", 30, hi), abs=tol)
    assert t["setup"] == pytest.approx(machine.time_in("setup", lo, hi), abs=tol)
    assert t["planned_stop"] == pytest.approx(machine.time_in("planned_stop", lo, hi), abs=tol)
    running = machine.time_in("running", lo, hi) - offline  # the power-off is in the last run
    assert t["running"] == pytest.approx(running, abs=2 * tol)
    made = machine.made(hi) - machine.made(lo)
    rejects = machine.made(hi, rejects=True) - machine.made(lo, rejects=True)
    assert c["produced"] + c["during_offline"] == pytest.approx(made, abs=3)
    assert c["during_offline"] == pytest.approx(10 * offline, abs=5)
    assert c["scrap"] == pytest.approx(rejects, abs=1.5)
    assert c["rollovers"] >= 1 and c["resets"] == 1
    assert {"counter_rollover", "counter_reset", "not_observed_time"} <= set(o["flags"])
    pbt = window - offline - machine.time_in("planned_stop", lo, hi)
    apt = running + machine.time_in("idle", lo, 25)  # micro-stops are performance losses (default)
    assert o["availability"] == pytest.approx(apt / pbt, abs=0.03)
    assert o["performance"] == pytest.approx(ICT * (made - 10 * offline) / apt, abs=0.06)
    assert o["quality"] == pytest.approx((made - 10 * offline - rejects) / (made - 10 * offline), abs=0.02)
    assert o["oee"] == pytest.approx(o["availability"] * o["performance"] * o["quality"], rel=1e-4)
    assert "performance_above_one" not in o["flags"]
    oee_rows = read_csv(out / "csv" / "oee.csv")
    assert float(next(r for r in oee_rows if r["scope"] == "period")["oee"]) == pytest.approx(o["oee"], abs=1e-5)

    # --- the indicators: 1 of 3 networked (20-40 % → 3 points), 2 of 3 digitized (→ 6), four business areas
    s = ev["summary"]
    assert s["denominator_source"] == "equipment_ledger"
    assert (s["networked"]["numerator"], s["networked"]["denominator"], s["networked"]["score"]) == (1, 3, 3.0)
    assert s["networked"]["band"] == "(20,40%]"
    assert (s["digitized"]["numerator"], s["digitized"]["score"]) == (2, 6.0)
    assert s["key_process"] == {"total": 1, "networked": 1}
    assert [a["key"] for a in s["areas"] if a["counted"]] == ["production", "quality", "equipment", "energy"]
    assert len(s["areas"]) == 14 and all(a["data_arrived"] for a in s["areas"] if a["counted"])
    assert s["networked_rule"]["source"] == "default" and press["networked_fails"] == []
    assert o["observed"] == pytest.approx((window - offline) / window, abs=0.01)
    assert o["availability_all"] == pytest.approx(o["availability"] * pbt / (pbt + offline), abs=0.02)
    summary = {r["indicator"]: r for r in read_csv(out / "csv" / "summary.csv")}
    assert summary["networked_ratio"]["score"] == "3" and summary["networked_ratio"]["numerator"] == "1"
    events = read_csv(out / "csv" / "events.csv")
    assert [e["kind"] for e in events if e["kind"] in ("online", "offline") and e["boundary"] == "in"] == [
        "offline",
        "online",
    ]
    assert [(e["kind"], e["boundary"]) for e in events if e["boundary"] != "in"] == [("online", "before")]

    # --- provenance: the gateway and the hash of the config that produced the data
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["gateways"] == [{"gateway": "gw-ev", "config_hashes": [config_hash(gw_cfg)]}]
    assert {f["path"] for f in manifest["files"]} >= {"evidence.json", "report.html", "csv/oee.csv", "csv/devices.csv"}
    html = (out / "report.html").read_text()
    assert "生产设备联网率" in html and "networked equipment ratio" in html and "<svg" in html

    # --- the pack holds what the maths used: the boundary rows (the state before the window starts, and the
    # state changes past its end that tell a stop there), the state timeline, the settings behind the hash
    counts = read_csv(out / "csv" / "counts.csv")
    assert {r["boundary"] for r in counts} >= {"before", "in"}
    timeline = read_csv(out / "csv" / "state_timeline.csv")
    assert sum(float(r["seconds"]) for r in timeline) == pytest.approx(window, abs=0.01)
    assert sum(float(r["seconds"]) for r in timeline if r["state"] == "offline") == pytest.approx(offline, abs=0.05)
    [settings] = read_csv(out / "csv" / "oee_settings.csv")
    assert float(settings["ideal_cycle_time_s"]) == ICT and settings["config_hash"] == config_hash(gw_cfg)

    # --- and an edited number is caught, by verify and by recompute
    p = out / "csv" / "devices.csv"
    p.write_text(p.read_text(encoding="utf-8-sig").replace("press-01", "press-99"), encoding="utf-8-sig")
    assert main(["evidence", "verify", str(out), "--expect", noted]) == 1
    assert main(["evidence", "recompute", str(out)]) == 1
