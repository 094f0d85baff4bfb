"""A scripted timeline from a file, sixty times faster than life, through the real pipeline: the OEE state
events on the wire follow the script, the counters arrive as the machine made them, and a fault in the
script takes the device offline for its interval."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_config.scenario import load_timeline
from simulators.workshop import Workshop, WorkshopSpec
from tests.integration.conftest import MosquittoServer
from tests.integration.spy import Spy, gateway, gateway_config, wait_until
from tests.ports import free_port

pytestmark = pytest.mark.integration

TIMELINE = """\
segments:
  - {for: 3m, state: running, rate: 0.8}
  - {for: 2m, state: fault}
  - {for: 2m, state: idle}
  - {for: 3m, state: running, reject: 0.05}
  - {for: 3m, state: setup, faults: [offline]}
  - {for: 2m, state: running}
  - {for: 1h, state: planned_stop}
"""
SCRIPT = ["running", "fault", "idle", "running", "setup", "running", "planned_stop"]


async def test_a_timeline_plays_through_to_the_wire(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    path = tmp_path / "timeline.yaml"
    path.write_text(TIMELINE, encoding="utf-8")
    spec = WorkshopSpec(industry="food", protocol="modbus", port=free_port(), speed=60, timeline=load_timeline(path))
    ws = Workshop(spec)
    assert [(round(at), d, str(f), round(s or 0)) for at, d, f, s in ws.schedule] == [(10, "filler-01", "offline", 3)]
    cfg = gateway_config(ws, tmp_path, mosquitto.url, {"timeout": "300ms", "backoff_max": "500ms"},
                         poll_interval="200ms")  # fmt: skip
    spy = Spy(mosquitto.port)
    filler = ws.device("filler-01").machine
    async with ws, gateway(cfg):
        await wait_until(lambda: filler.run_state == 4 and spy.samples("filler-01", after=0), 30, "the script")
        await wait_until(lambda: spy.online("filler-01") == [True, False, True], 10, "offline for the interval")
        total = filler.values()["bottles_total"]
        await wait_until(lambda: any(s["v"] == total for s in spy.samples("filler-01", "bottles_total")), 5)
    spy.close()
    states = [e["state"] for _, p in spy.of("filler-01", "events") for e in p["events"] if e["kind"] == "state"]
    played = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
    # the device was offline (unknown) during the setup interval: the script around it is intact
    assert [s for s in played if s != "unknown"][:3] == SCRIPT[:3]
    assert played[-1] == "planned_stop" and "running" in played[3:]
    counts = [s["v"] for s in spy.samples("filler-01", "bottles_total") if s["q"] == "good"]
    assert counts == sorted(counts) and counts[-1] == total  # what arrived is what the machine counted
    rejects = filler.values()["bottles_rejected"]
    assert rejects == pytest.approx(0.05 * 3 * 60 * 6, abs=20)  # 5 % of the second run, at 360 a minute
