"""`edgegw bench opcua`: the gateway's OPC UA path against a bare asyncua client, same nodes, same run.

For each node count (default 1,000 and 10,000 Double nodes, each changing once per second):
1. the OPC UA simulator starts in its own process (its CPU is not counted);
2. bare asyncua clients subscribe to the same nodes with the same subscription settings and count
   notifications: asyncua's documented handler API (`datachange_notification`, the reference for the
   goal) and, for the floor, a raw publish callback that only unpacks the values;
3. the gateway (`Agent`: OPC UA driver → normalization → SQLite buffer → MQTT publisher) runs in its
   own process against Mosquitto; a subscriber here takes every sample's source timestamp `ts` and
   its receipt time, for the latency from the PLC's clock to the broker's subscriber.
Each measured process reports its own CPU (`time.process_time`, all threads) over the same window.
Goals: gateway CPU ≤ 1.5× the bare client's per 1,000 notifications; p99 `ts` → MQTT ≤ 250 ms.

The workers run as `python -m gateway.bench.opcua {client,floor,gateway} ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from gateway.bench.servers import BenchFailed

GOAL_CPU_RATIO = 1.5
GOAL_P99_MS = 250.0
SAMPLING_MS = 1000.0  # the nodes change once per second
GW, ENT, DEV = "gw-bench-ua", "ent-bench", "bulk-01"


def cmd_opcua(args: argparse.Namespace) -> int:
    counts = [int(n) for n in str(args.nodes).split(",") if n.strip()]
    result = run_bench(counts, args.seconds, args.warmup, args.publishing_ms, args.mqtt_url)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


# ---------------------------------------------------------------- pure helpers


def percentiles(values: Sequence[float], ps: Sequence[float] = (50, 90, 99)) -> dict[str, float | None]:
    """Nearest-rank percentiles, plus the maximum."""
    if not values:
        return {**{f"p{p:g}": None for p in ps}, "max": None}
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for p in ps:
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        out[f"p{p:g}"] = ordered[rank - 1]
    out["max"] = ordered[-1]
    return out


def phase_figures(count: int, seconds: float, cpu_s: float, latencies: Sequence[float]) -> dict[str, Any]:
    return {
        "notifications": count,
        "seconds": seconds,
        "cpu_s": cpu_s,
        "rate_per_s": count / seconds if seconds > 0 else 0.0,
        "cpu_ms_per_1000": cpu_s * 1e6 / count if count else None,
        "cpu_share": cpu_s / seconds if seconds > 0 else None,
        "latency_ms": percentiles(latencies),
    }


# ---------------------------------------------------------------- workers (separate processes)


def _subscription_params(publishing_ms: float) -> Any:
    from asyncua import ua

    from drivers.opcua.plan import subscription_timing

    t = subscription_timing(publishing_ms / 1000.0, 5.0)
    params = ua.CreateSubscriptionParameters()
    params.RequestedPublishingInterval = t.publishing_ms
    params.RequestedMaxKeepAliveCount = t.keepalive_count
    params.RequestedLifetimeCount = t.lifetime_count
    params.MaxNotificationsPerPublish = 0
    params.PublishingEnabled = True
    return params


async def _bare_client(endpoint: str, nodes: int, seconds: float, warmup: float, publishing_ms: float,
                       floor: bool) -> dict[str, Any]:  # fmt: skip
    """A plain asyncua client: the documented handler API, or (floor) a raw publish callback."""
    from asyncua import Client, ua
    from asyncua.common.subscription import Subscription

    from drivers.opcua.values import epoch_ms
    from simulators.opcua_server import bulk_node_id

    state = {"n": 0, "measuring": False}
    lat: list[float] = []

    class Handler:
        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            state["n"] += 1
            if state["measuring"]:
                lat.append(time.time() * 1000 - (epoch_ms(data.monitored_item.Value.SourceTimestamp) or 0))

    class Floor(Subscription):
        async def publish_callback(self, publish_result: ua.PublishResult) -> None:
            self.last_publish_at = time.monotonic()
            now = time.time() * 1000
            for notif in publish_result.NotificationMessage.NotificationData or []:
                if isinstance(notif, ua.DataChangeNotification):
                    for item in notif.MonitoredItems:
                        dv = item.Value
                        _value = dv.Value.Value
                        state["n"] += 1
                        if state["measuring"]:
                            lat.append(now - (epoch_ms(dv.SourceTimestamp) or 0))

    client = Client(endpoint, timeout=30)
    await client.connect()
    try:
        params = _subscription_params(publishing_ms)
        sub: Subscription
        if floor:
            sub = Floor(client.uaclient.session, params, handler=None, queue_maxsize=1)
            await sub.init()
        else:
            sub = await client.create_subscription(params, Handler())
        node_objs = [client.get_node(bulk_node_id(i)) for i in range(nodes)]
        for start in range(0, nodes, 1000):
            batch = node_objs[start : start + 1000]
            await sub.subscribe_data_change(batch, queuesize=1, sampling_interval=SAMPLING_MS)  # type: ignore[call-overload]
        await asyncio.sleep(warmup)
        n0, c0, t0 = state["n"], time.process_time(), time.monotonic()
        state["measuring"] = True
        await asyncio.sleep(seconds)
        state["measuring"] = False
        n1, c1, t1 = state["n"], time.process_time(), time.monotonic()
        return phase_figures(int(n1) - int(n0), t1 - t0, c1 - c0, lat)
    finally:
        await client.disconnect()


async def _gateway(config_path: str, seconds: float, warmup: float) -> dict[str, Any]:
    """The whole edge agent on the bulk device; CPU and notifications over the window."""
    from edge_config import load_gateway_config
    from gateway.agent import Agent

    cfg = load_gateway_config(config_path)
    agent = Agent(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, serve_api=False))
    state = agent.runtime.devices[DEV]
    try:
        deadline = time.monotonic() + 120
        while not state.online and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if not state.online:
            raise BenchFailed(f"the gateway did not get {DEV} online: {state.reason}")
        await asyncio.sleep(warmup)
        n0, c0, t0, w0 = state.samples_read, time.process_time(), time.monotonic(), time.time()
        await asyncio.sleep(seconds)
        n1, c1, t1, w1 = state.samples_read, time.process_time(), time.monotonic(), time.time()
        out = phase_figures(n1 - n0, t1 - t0, c1 - c0, [])
        out.update(window=[w0, w1], samples_buffered=state.samples_buffered, online=state.online)
        stats = agent.publisher.stats
        out["published_messages"] = stats.published
        return out
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def worker_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.bench.opcua")
    p.add_argument("role", choices=["client", "floor", "gateway"])
    p.add_argument("--endpoint", default="")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--publishing-ms", type=float, default=100.0)
    p.add_argument("--config", default="")
    a = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    if a.role == "gateway":
        result = asyncio.run(_gateway(a.config, a.seconds, a.warmup))
    else:
        result = asyncio.run(
            _bare_client(a.endpoint, a.nodes, a.seconds, a.warmup, a.publishing_ms, floor=a.role == "floor")
        )
    print(json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------- orchestration


def _run_worker(args: list[str], timeout: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.bench.opcua", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise BenchFailed(f"worker {args[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class _Simulator:
    """The OPC UA simulator in its own process (`python -m simulators.opcua_process --industry bulk`)."""

    def __init__(self, nodes: int, port: int) -> None:
        self.nodes, self.port = nodes, port
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> str:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulators.opcua_process", "--industry", "bulk", "--bulk", str(self.nodes),
             "--port", str(self.port), "--security", "None"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "ready opc.tcp://... bulk=N" once serving
        if not line.startswith("ready "):
            self.__exit__()
            raise BenchFailed(f"the OPC UA simulator did not start: {line!r}")
        return line.split()[1]

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class _LatencySpy:
    """Subscribes to the gateway's data topic; keeps (receipt time, receipt − ts) for every sample."""

    def __init__(self, url: str) -> None:
        import paho.mqtt.client as mqtt

        from cloud_bridge.wire.mqtt import host_port

        host, port = host_port(url)
        self.samples: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-ua-spy", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect(host, port)
        self.client.subscribe(f"sf/v1/{ENT}/{GW}/{DEV}/data", qos=1)
        self.client.loop_start()
        if not ready.wait(10):
            raise BenchFailed("the latency subscriber could not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now = time.time()
        body = json.loads(msg.payload)
        rows = [(now, now * 1000 - s["ts"]) for s in body["samples"]]
        with self._lock:
            self.samples.extend(rows)

    def window(self, start: float, end: float) -> list[float]:
        with self._lock:
            return [lat for t, lat in self.samples if start <= t <= end]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _gateway_config(endpoint: str, nodes: int, mqtt_url: str, data_dir: Path, publishing_ms: float) -> dict[str, Any]:
    from simulators.opcua_server import bulk_node_id

    tags = [{"name": f"n{i:05d}", "node": bulk_node_id(i)} for i in range(nodes)]
    return {
        "gateway": {"id": GW, "enterprise_id": ENT, "data_dir": str(data_dir)},
        "mqtt": {"url": mqtt_url, "protocol": "5"},
        "devices": [
            {
                "id": DEV,
                "driver": "opcua",
                "poll_interval": f"{SAMPLING_MS:g}ms",
                "connection": {
                    "endpoint": endpoint,
                    "timeout": "30s",
                    "publishing_interval": f"{publishing_ms:g}ms",
                    "max_nodes_per_request": 1000,
                },
                "tags": tags,
            }
        ],
    }


def run_bench(
    counts: Sequence[int], seconds: float, warmup: float, publishing_ms: float, mqtt_url: str | None = None
) -> dict[str, Any]:
    from gateway.bench.servers import MosquittoServer, free_port, start_with_retry

    result: dict[str, Any] = {
        "settings": {"seconds": seconds, "warmup": warmup, "publishing_ms": publishing_ms,
                     "sampling_ms": SAMPLING_MS, "cpus": os.cpu_count()},
        "runs": [],
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgegw-bench-ua-") as tmp:
        broker = None
        if mqtt_url is None:
            broker = start_with_retry(lambda port: MosquittoServer(port, Path(tmp) / "mosquitto"))
            mqtt_url = broker.url
        try:
            for n in counts:
                budget = 120 + seconds + warmup + n / 200
                with _Simulator(n, free_port()) as endpoint:
                    common = ["--endpoint", endpoint, "--nodes", str(n), "--seconds", str(seconds),
                              "--warmup", str(warmup), "--publishing-ms", str(publishing_ms)]  # fmt: skip
                    bare = _run_worker(["client", *common], budget)
                    floor = _run_worker(["floor", *common], budget)
                    cfg_path = Path(tmp) / f"gateway-{n}.yaml"
                    cfg = _gateway_config(endpoint, n, mqtt_url, Path(tmp) / f"edge-{n}", publishing_ms)
                    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
                    spy = _LatencySpy(mqtt_url)
                    try:
                        gw = _run_worker(["gateway", "--config", str(cfg_path), *common[4:]], budget)
                        time.sleep(0.5)
                        start, end = gw["window"]
                        gw["latency_ms"] = percentiles(spy.window(start, end))
                        gw["mqtt_samples_in_window"] = len(spy.window(start, end))
                    finally:
                        spy.close()
                result["runs"].append(_verdict(n, bare, floor, gw))
        finally:
            if broker is not None:
                broker.stop()
    return result


def _verdict(nodes: int, bare: dict[str, Any], floor: dict[str, Any], gw: dict[str, Any]) -> dict[str, Any]:
    ratio = None
    if gw["cpu_ms_per_1000"] and bare["cpu_ms_per_1000"]:
        ratio = gw["cpu_ms_per_1000"] / bare["cpu_ms_per_1000"]
    p99 = gw["latency_ms"]["p99"]
    return {
        "nodes": nodes,
        "expected_per_s": nodes * 1000.0 / SAMPLING_MS,
        "bare_client": bare,
        "bare_floor": floor,
        "gateway": gw,
        "cpu_ratio": ratio,
        "cpu_goal_met": ratio is not None and ratio <= GOAL_CPU_RATIO,
        "p99_goal_met": p99 is not None and p99 <= GOAL_P99_MS,
    }


# ---------------------------------------------------------------- report


def _f(v: Any, fmt: str = "{:,.0f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _ok(flag: bool) -> str:
    return "达标 / met" if flag else "未达标 / NOT met"


def report(r: dict[str, Any]) -> str:
    s = r["settings"]
    runs = r["runs"]
    head = (f"edgegw bench opcua — publishing {s['publishing_ms']:g} ms, every node changes once per second, "
            f"{s['seconds']:g} s per phase, {s['cpus']} CPUs")  # fmt: skip
    rows: list[tuple[str, list[str]]] = [
        ("订阅节点 / subscribed nodes", [f"{x['nodes']:,}" for x in runs]),
        ("通知/秒 裸客户端 / notifications/s, bare client", [_f(x["bare_client"]["rate_per_s"]) for x in runs]),
        ("通知/秒 网关 / notifications/s, gateway", [_f(x["gateway"]["rate_per_s"]) for x in runs]),
        ("期望 / expected", [_f(x["expected_per_s"]) for x in runs]),
        ("CPU ms/千通知 裸客户端 / bare client (handler)", [_f(x["bare_client"]["cpu_ms_per_1000"], "{:.1f}")
                                                          for x in runs]),
        ("CPU ms/千通知 下限 (raw callback) / floor", [_f(x["bare_floor"]["cpu_ms_per_1000"], "{:.1f}") for x in runs]),
        ("CPU ms/千通知 网关 / gateway", [_f(x["gateway"]["cpu_ms_per_1000"], "{:.1f}") for x in runs]),
        ("网关CPU占用 / gateway CPU (share of a core)", [_f(x["gateway"]["cpu_share"], "{:.0%}") for x in runs]),
        ("网关 ÷ 裸客户端 / gateway ÷ bare (goal ≤ 1.5×)", [_f(x["cpu_ratio"], "{:.2f}×") for x in runs]),
        ("网关 ÷ 下限 / gateway ÷ floor", [_f(_div(x["gateway"]["cpu_ms_per_1000"], x["bare_floor"]["cpu_ms_per_1000"]),
                                               "{:.2f}×") for x in runs]),
        ("延迟 p50 ts→MQTT / latency p50 (ms)", [_f(x["gateway"]["latency_ms"]["p50"]) for x in runs]),
        ("延迟 p99 ts→MQTT / latency p99 (goal ≤ 250 ms)", [_f(x["gateway"]["latency_ms"]["p99"]) for x in runs]),
        ("延迟 p99 ts→裸客户端 / bare client p99 (ms)", [_f(x["bare_client"]["latency_ms"]["p99"]) for x in runs]),
        ("CPU 目标 / CPU goal", [_ok(x["cpu_goal_met"]) for x in runs]),
        ("延迟目标 / latency goal", [_ok(x["p99_goal_met"]) for x in runs]),
    ]  # fmt: skip
    width = max(_width(k) for k, _ in rows)
    cols = [max(_width(v[i]) for _, v in rows) for i in range(len(runs))]
    lines = [head]
    for k, vals in rows:
        cells = "  ".join(" " * (cols[i] - _width(v)) + v for i, v in enumerate(vals))
        lines.append(f"  {k}{' ' * (width - _width(k))}  {cells}")
    lines += _notes(runs)
    return "\n".join(lines)


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _width(text: str) -> int:
    """Display width: CJK characters take two columns."""
    return sum(2 if ord(c) > 0x2E80 else 1 for c in text)


def _notes(runs: list[dict[str, Any]]) -> list[str]:
    out = []
    for x in runs:
        n, gw, ratio = x["nodes"], x["gateway"], x["cpu_ratio"]
        if not x["cpu_goal_met"] and ratio is not None:
            over = ratio / GOAL_CPU_RATIO - 1
            out.append(
                f"  {n:,} 节点 CPU 未达标 / nodes, CPU goal missed: {ratio:.2f}× the bare client, "
                f"{over:.0%} over 1.5×; the gateway also normalizes, encodes JSON, writes the SQLite buffer "
                "and publishes over MQTT"
            )
        p99 = gw["latency_ms"]["p99"]
        if p99 is not None and not x["p99_goal_met"]:
            out.append(
                f"  {n:,} 节点延迟未达标 / nodes, latency goal missed: p99 {p99:.0f} ms, "
                f"{p99 - GOAL_P99_MS:.0f} ms over 250 ms (a message waits for the signed checkpoint that covers "
                f"it, up to 1 s: README 'Trust model'; the publishing interval adds up to its length)"
            )
        expected = x["expected_per_s"]
        if gw["rate_per_s"] < 0.98 * expected:
            out.append(f"  {n:,} 节点通知不全 / nodes: the gateway took {gw['rate_per_s']:,.0f}/s of {expected:,.0f}/s")
    return out


if __name__ == "__main__":
    sys.exit(worker_main())
