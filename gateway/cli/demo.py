"""`edgegw demo`: the whole product in one process on embedded defaults.

Embedded MQTT broker (amqtt, MQTT 3.1.1) → a simulated workshop (by default three air-jet looms over
Modbus TCP; `--industry` another pilot industry, or `all` for a mixed workshop, each machine over
its usual protocol: Modbus TCP or OPC UA) → the gateway (buffer, publisher, edge API on :8080) →
the ingester (evidence ledger on SQLite, and InfluxDB/VictoriaMetrics when a URL is given). Nothing
to install beyond the package.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_bridge.cloud.broker import EmbeddedBroker
from cloud_bridge.cloud.ingest.ingester import Ingester
from edge_config import timing
from edge_config.models import CloudConfig, GatewayConfig
from edge_config.secrets import redact_url
from gateway.agent import Agent
from simulators.registry import BY_NAME, INDUSTRIES
from simulators.serve import summary
from simulators.workshop import Workshop, WorkshopSpec

log = logging.getLogger(__name__)

ENTERPRISE_ID = "ent-demo-0001"
GATEWAY_ID = "gw-demo-01"
DEMO_USER = "demo"


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(host: str, preferred: int) -> int:
    if port_free(host, preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def pick_block(host: str, preferred: int, count: int) -> int:
    """First port of `count` consecutive free ports, starting at `preferred` if possible."""
    base = preferred
    for _ in range(200):
        if all(port_free(host, base + i) for i in range(count)):
            return base
        base += count
    raise RuntimeError("no free ports for the simulators")


@dataclass
class DemoSettings:
    seconds: float | None = None
    industry: str | None = None  # default textiles
    devices: int | None = None  # of each kind of machine; textiles by default: `looms` looms only
    looms: int = 3
    api: str = "127.0.0.1:8080"
    data_dir: str = "./edgegw-data/demo"
    influx_url: str | None = None

    @property
    def enterprise_name(self) -> str:
        industry = BY_NAME.get(self.industry or "textiles")
        return f"{industry.enterprise}（演示）" if industry else "昌吉某制造企业（演示）"

    def workshop(self, host: str, modbus_port: int, opcua_port: int) -> WorkshopSpec:
        """The simulated workshop; ValueError for an industry or count that makes none."""
        industry = self.industry or "textiles"
        if industry not in INDUSTRIES:
            raise ValueError(f"unknown industry {industry!r} (one of {', '.join(INDUSTRIES)})")
        devices: int | list[int] = self.devices if self.devices is not None else 1
        if industry == "textiles" and self.devices is None:
            devices = [self.looms, 0]  # the classic demo: air-jet looms only
        return WorkshopSpec(industry=industry, devices=devices, host=host, port=modbus_port, opcua_port=opcua_port,
                            security=("None",))  # fmt: skip


def build_configs(s: DemoSettings, broker_url: str, workshop: Workshop) -> tuple[GatewayConfig, CloudConfig]:
    data = Path(s.data_dir)
    config = workshop.gateway_config(gateway_id=GATEWAY_ID, enterprise_id=ENTERPRISE_ID,
                                     enterprise_name=s.enterprise_name, mqtt_url=broker_url, mqtt_protocol="3.1.1",
                                     data_dir=str(data / "edge"), api=s.api)  # fmt: skip
    gateway = GatewayConfig.model_validate(config)
    cloud: dict[str, Any] = {
        "mqtt": {
            "url": broker_url,
            "protocol": "3.1.1",
            "shared_group": None,
            "client_id": "edgegw-demo-ingest",
        },
        "ledger": {"url": f"sqlite:///{(data / 'cloud' / 'ledger.db').resolve()}"},
    }
    if s.influx_url:
        cloud["influx"] = {"url": s.influx_url}
    return gateway, CloudConfig.model_validate(cloud)


def summary_lines(agent: Agent, ingester: Ingester, elapsed: float) -> list[str]:
    devs = agent.runtime.devices.values()
    online = sum(1 for d in devs if d.online)
    read = sum(d.samples_read for d in devs)
    published = sum(agent.publisher.stats.samples_acked.values())
    ingested = ingester.stats.samples_ingested
    backlog = agent.backlog_at_stop or agent.buffer.depth()
    lines = [
        f"演示摘要 / Demo summary ({elapsed:.0f} s)",
        f"  在线设备 / devices online      : {online} / {len(agent.runtime.devices)}",
        f"  采集数据点 / samples read      : {read}",
        f"  已发布数据点 / samples published: {published}",
        f"  已入库数据点 / samples ingested : {ingested}",
        f"  死信 / dead letters            : {ingester.stats.dead_letters}",
        f"  拒收 / refused (unproven)      : {ingester.stats.refused}",
        f"  缓存积压 / buffer backlog      : {backlog.messages} messages",
    ]
    for d in devs:
        state = "在线 online" if d.online else f"离线 offline ({d.reason})"
        lines.append(
            f"  - {d.id} {d.name}: {state}, read {d.samples_read}, "
            f"published {agent.publisher.stats.samples_acked.get(d.id, 0)}"
        )
    return lines + oee_lines(agent)


def oee_lines(agent: Agent, now_ms: int | None = None) -> list[str]:
    """Live OEE of every device with OEE settings, for the current shift so far (from the edge history)."""
    from cloud_bridge.metrics import current_shift
    from gateway.oee.history import OeeHistory
    from gateway.oee.local import local_oee

    cfg = agent.config
    devices = [d for d in cfg.devices if d.oee is not None]
    if not devices:
        return []
    now = now_ms if now_ms is not None else timing.now_ms()
    occ = current_shift(cfg.shifts, cfg.timezone, now)
    lines = [f"  设备综合效率 / OEE, 当前班次 / current shift {occ.label(cfg.timezone)} (so far):"]

    def pct(x: float | None) -> str:
        return "   —  " if x is None else f"{x * 100:5.1f}%"

    history = OeeHistory(Path(cfg.gateway.data_dir) / "oee_history.db")  # the agent's is closed by now
    try:
        stopped = history.last_alive() or now
        for d in devices:
            tracker = agent.runtime.trackers.get(d.id)
            last = tracker.last_scan_ts if tracker and tracker.last_scan_ts else stopped
            end = max(occ.start + 1, min(occ.end, now, last))  # up to the device's last reading
            r = local_oee(cfg, history, d.id, occ.start, end, live=tracker.live_point() if tracker else None)
            note = " (Q: 无良品计数按1计 / no good counter, taken as 1)" if "quality_assumed" in r.flags else ""
            if "performance_above_one" in r.flags:
                note += " (P>100%: 理想节拍有误 / ideal cycle time wrong)"
            lines.append(
                f"  - {d.id}: A {pct(r.availability)}  P {pct(r.performance)}  Q {pct(r.quality)}  "
                f"OEE {pct(r.oee)}{note}"
            )
    finally:
        history.close()
    return lines


def enrol(agent: Agent, ingester: Ingester) -> str:
    """Register the demo gateway's key in the cloud's registry (what `edgegw cloud gateway add` does), so
    its messages are proven and accepted. Returns the key's fingerprint."""
    from cloud_bridge.cloud.trust.registry import Registry

    registry = ingester.trust.registry if ingester.trust is not None else Registry(ingester.ledger.db)
    gw = agent.config.gateway
    rec = registry.active(gw.enterprise_id, gw.id)
    if rec is None or rec.fingerprint != agent.identity.fingerprint:
        registry.add(gw.enterprise_id, gw.id, agent.identity.public_key)
    registry.invalidate()
    return agent.identity.fingerprint


def write_demo_config(cfg: GatewayConfig) -> Path:
    """The demo's config as a file, so the console's tag-map editor has something to write."""
    from gateway.reload import config_text, write_config

    path = Path(cfg.gateway.data_dir) / "gateway.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_config(path, config_text(cfg), keep=3)
    return path


def demo_user(cfg: GatewayConfig) -> str:
    """Create (or renew) the demo's admin user with a fresh random password, which the banner prints."""
    from gateway.users import UserStore, users_path

    password = secrets.token_urlsafe(9)
    UserStore(users_path(cfg)).add(DEMO_USER, "admin", password, replace=True)
    return password


async def run_demo(s: DemoSettings) -> int:
    host = "127.0.0.1"
    try:
        planned = Workshop(s.workshop(host, 5020, 4840))  # how many Modbus TCP ports it takes
        tcp = sum(1 for d in planned.devices if d.protocol == "modbus")
        spec = s.workshop(host, pick_block(host, 5020, max(1, tcp)), pick_port(host, 4840))
        workshop = Workshop(spec, pki_dir=str(Path(s.data_dir) / "sim-pki"))
    except ValueError as e:
        print(f"edgegw demo: {e}")
        return 2
    api_host, _, api_port = s.api.rpartition(":")
    if not port_free(api_host, int(api_port)):
        print(f"端口被占用 / port in use: {s.api} — stop the other program or pass --api HOST:PORT")
        return 2
    broker_port = pick_port(host, 1883)
    broker = EmbeddedBroker(host, broker_port)
    await broker.start()
    try:
        await workshop.start()
    except (OSError, RuntimeError) as e:  # a port taken meanwhile, no socat, …
        await broker.stop()
        print(f"edgegw demo: {e}")
        return 2
    gateway_cfg, cloud_cfg = build_configs(s, broker.url, workshop)
    ingester = Ingester(cloud_cfg)
    ingester.start()
    config_file = write_demo_config(gateway_cfg)
    password = demo_user(gateway_cfg)
    agent = Agent(gateway_cfg, config_path=config_file)
    fingerprint = enrol(agent, ingester)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("edgegw demo — 演示已启动 / started")
    print(f"  MQTT 嵌入式代理 / embedded broker : {broker.url} (MQTT 3.1.1)")
    for line in summary(workshop):
        print(f"  {line}")
    print(f"  网关 / gateway                  : {GATEWAY_ID} ({s.enterprise_name})")
    print(f"  网关身份 / gateway identity      : SHA256:{fingerprint[:32]} (registered with the ingester)")
    print(f"  边缘 API / edge API             : http://{s.api}/api/v1/devices")
    print(f"  证据台账 / evidence ledger       : {redact_url(cloud_cfg.ledger.url)}")
    if s.influx_url:
        print(f"  时序库 / time-series store      : {s.influx_url}")
    print(f"  配置文件 / config file           : {config_file} (the console's editor writes it)")
    print("  按 Ctrl-C 停止 / press Ctrl-C to stop" if s.seconds is None else f"  运行 / running {s.seconds:g} s")
    print(f"  控制台 / console                : http://{s.api}/")
    print(f"  演示用户 / demo user            : {DEMO_USER} / {password} (admin)")
    started = time.monotonic()
    agent_task = asyncio.create_task(agent.run(stop))
    if s.seconds is not None:
        try:
            await asyncio.wait_for(stop.wait(), timeout=s.seconds)
        except asyncio.TimeoutError:
            stop.set()
    await agent_task
    await asyncio.sleep(0.5)  # let the ingester take the last acked messages
    elapsed = time.monotonic() - started
    lines = summary_lines(agent, ingester, elapsed)
    ingested = ingester.stats.samples_ingested
    ingester.stop()
    await workshop.stop()
    await broker.stop()
    print("\n".join(lines))
    flowed = ingested > 0 and all(d.samples_read > 0 for d in agent.runtime.devices.values())
    if s.seconds is not None:
        print(
            "结果 / result: "
            + ("数据端到端贯通 / data flowed end to end" if flowed else "数据未贯通 / NO end-to-end data")
        )
        return 0 if flowed else 1
    return 0
