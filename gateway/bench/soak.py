"""`edgegw bench soak --hours H`: the real agent (`edgegw run`, its own process) polling simulated looms
fast (time compressed: `--poll 100ms` is ten times the usual scan rate) into a real Mosquitto that is
restarted every `--broker-restart` seconds, so reconnects, replays and the store-and-forward buffer are
exercised all along. Every `--every` seconds it records the agent's RSS, open files, threads and CPU;
the report says whether they stay flat (the second half against the first).

What it leaves out: the cloud side (no ingester), OPC UA devices, and a real clock's calendar (shifts
roll over only as often as the wall clock says)."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from gateway.bench.servers import (
    BenchFailed,
    MosquittoServer,
    free_port,
    free_port_block,
    port_open,
    proc_cpu_seconds,
    start_with_retry,
    stop_process,
)
from gateway.users import UserStore

LOOMS = 4


def proc_sample(pid: int) -> dict[str, float]:
    """RSS (MB), open file descriptors, threads and CPU seconds of a process (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(fields["Threads"]),
        "cpu_s": proc_cpu_seconds(pid),
    }


def _devices(listen: str, token: str) -> list[dict[str, Any]]:
    """The agent's own account of its devices (edge API, as a viewer)."""
    request = urllib.request.Request(f"http://{listen}/api/v1/devices", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return list(json.loads(r.read()))


def flatness(samples: list[dict[str, float]]) -> dict[str, Any]:
    """Each figure over the first and the second half of the run (after a warm-up tenth): RSS may not
    grow more than 5 % (and 5 MB), open files and threads not at all beyond ±2 (a reconnect's socket)."""
    body = samples[max(1, len(samples) // 10) :]
    if len(body) < 4:
        return {"enough_samples": False, "flat": False}
    half = len(body) // 2
    first, second = body[:half], body[half:]
    out: dict[str, Any] = {"enough_samples": True}
    flat = True
    for key, tolerance in (("rss_mb", None), ("fds", 2.0), ("threads", 2.0)):
        a = max(s[key] for s in first)
        b = max(s[key] for s in second)
        allowed = max(a * 0.05, 5.0) if tolerance is None else tolerance
        ok = b - a <= allowed
        out[key] = {"first_half_max": a, "second_half_max": b, "growth": b - a, "allowed": allowed, "flat": ok}
        flat = flat and ok
    out["flat"] = flat
    return out


def run_soak(hours: float, every: float, poll: str, broker_restart: float, workdir: Path) -> dict[str, Any]:
    base = free_port_block(LOOMS)  # one port per loom
    sims = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "simulate", "--industry", "textiles", "--devices", f"{LOOMS},0",
         "--port", str(base)],
        stdout=subprocess.DEVNULL, stderr=(workdir / "simulators.log").open("wb"),
    )  # fmt: skip
    # the looms' ports taken before any other port is chosen: a broker or API port inside the block, picked
    # while the simulators were still starting, left a loom without its port (a flaky smoke test)
    deadline = time.monotonic() + 60
    while not all(port_open(base + i) for i in range(LOOMS)):
        if sims.poll() is not None or time.monotonic() > deadline:
            stop_process(sims)
            raise BenchFailed(
                f"the simulators did not listen on {base}..{base + LOOMS - 1}; see {workdir}/simulators.log"
            )
        time.sleep(0.1)
    broker = start_with_retry(lambda port: MosquittoServer(port, workdir / "mq", persistence=True))
    from simulators.workshop import Workshop, WorkshopSpec

    devices = Workshop(WorkshopSpec(industry="textiles", devices=[LOOMS, 0], port=base)).device_configs()
    for d in devices:
        d["poll_interval"] = poll
    listen = f"127.0.0.1:{free_port()}"
    cfg: dict[str, Any] = {
        "gateway": {"id": "gw-soak", "enterprise_id": "ent-soak", "data_dir": str(workdir / "data")},
        "mqtt": {"url": broker.url, "protocol": "5", "ack_timeout": "10s"},
        "api": {"listen": listen},
        "history": {"snapshot_interval": "10s", "local_interval": "1s"},
        "devices": devices,
    }
    (workdir / "gw.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    users = UserStore(workdir / "data" / "users.json")
    users.add("soak", "viewer", secrets.token_hex(16))
    token = users.add_token("soak")
    agent = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "-c", str(workdir / "gw.yaml")],
        stdout=subprocess.DEVNULL, stderr=(workdir / "agent.log").open("wb"),
    )  # fmt: skip
    samples: list[dict[str, float]] = []
    restarts = 0
    t0 = time.monotonic()
    next_restart = t0 + broker_restart if broker_restart > 0 else float("inf")
    try:
        while time.monotonic() - t0 < hours * 3600:
            time.sleep(every)
            if agent.poll() is not None:
                raise BenchFailed(f"the agent exited with {agent.returncode}; see {workdir}/agent.log")
            samples.append({"t_s": round(time.monotonic() - t0, 1), **proc_sample(agent.pid)})
            if time.monotonic() >= next_restart:
                broker.stop()
                time.sleep(min(5.0, every))
                broker.start()
                restarts += 1
                next_restart = time.monotonic() + broker_restart
        devices = _devices(listen, token)
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
        stop_process(sims)
        broker.stop()
    return {
        "settings": {
            "hours": hours,
            "every_s": every,
            "poll": poll,
            "looms": LOOMS,
            "broker_restart_s": broker_restart,
        },
        "broker_restarts": restarts,
        "samples_read": sum(d["samples_read"] for d in devices),
        "samples_published": sum(d["samples_published"] for d in devices),
        "devices_online": sum(1 for d in devices if d["online"]),
        "agent_exit": agent.returncode,
        "samples": samples,
        "verdict": flatness(samples),
        "workdir": str(workdir),
    }


def report(r: dict[str, Any]) -> str:
    s, v = r["settings"], r["verdict"]
    lines = [
        f"edgegw bench soak — {s['hours']:g} h, {s['looms']} looms polled every {s['poll']}, "
        f"broker restarted {r['broker_restarts']} times; {r['devices_online']} online at the end, "
        f"{r['samples_read']:,} samples read, {r['samples_published']:,} published",
        f"  {'t (s)':>8} {'RSS MB':>8} {'files':>6} {'threads':>8} {'CPU s':>8}",
    ]
    step = max(1, len(r["samples"]) // 12)
    for x in r["samples"][::step] + r["samples"][-1:]:
        lines.append(f"  {x['t_s']:>8.0f} {x['rss_mb']:>8.1f} {x['fds']:>6.0f} {x['threads']:>8.0f} {x['cpu_s']:>8.1f}")
    if not v.get("enough_samples"):
        lines.append("  样本不足 / not enough samples for a verdict (run longer)")
        return "\n".join(lines)
    if not r["samples_read"]:
        lines.append(f"  未读到数据 / no sample read: an idle agent, no verdict (see {r['workdir']}/*.log)")
        return "\n".join(lines)
    for key, name in (("rss_mb", "RSS"), ("fds", "open files"), ("threads", "threads")):
        x = v[key]
        lines.append(
            f"  {name}: max {x['first_half_max']:.1f} → {x['second_half_max']:.1f} "
            f"(allowed +{x['allowed']:.1f}): {'平稳 / flat' if x['flat'] else '增长 / GROWING'}"
        )
    lines.append(f"  结论 / verdict: {'平稳 / flat' if v['flat'] else '有增长 / something grows'}")
    return "\n".join(lines)


def cmd_soak(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="edgegw-bench-soak-"))
    result = run_soak(args.hours, args.every, args.poll, args.broker_restart, work)
    clean = result["agent_exit"] == 0 and bool(result["samples_read"])
    if clean:  # a run that failed keeps its work directory for the logs
        shutil.rmtree(work, ignore_errors=True)
        result["workdir"] = None
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0 if clean else 1
