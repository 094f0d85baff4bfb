"""A simulated workshop: an industry's machines served over their protocols, a scenario, faults, and the
gateway config that reads them.

    spec = WorkshopSpec(industry="power", devices=2, protocol="modbus", speed=60)
    async with Workshop(spec) as ws:
        config = ws.gateway_config()                 # validates as edge_config's GatewayConfig
        await ws.inject("winder-01", Fault("offline"))
        await ws.clear("winder-01", "offline")

Serving:
- `modbus`: one Modbus TCP port per device, consecutive from `port`, unit id 1 (as each machine's own PLC);
- `rtu`: every device on one serial line (`serial`, or `pty` for a socat pair), unit ids 1, 2, …; with
  `meters`, each machine's energy meter is also a DL/T 645 meter on the same line (`<device>-meter`);
- `opcua`: one OPC UA server (`opcua_port`), or `shards` servers on consecutive ports, device i on
  shard i mod shards (`serve_shards` picks the ones this process serves);
- no protocol: each kind of machine over the protocol plants usually read it with (Modbus TCP or OPC UA).

The scenario: `seed` (the same seed tells the same story), `speed` (model time runs that many times
faster: 480 plays an 8 h shift in a minute), a scripted `timeline`, extra monitoring `points` per
machine (scale runs), and `faults` (`FaultSpec`s, scheduled in real seconds from the start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_config.dlt645 import parse_di
from edge_config.scenario import EVENT_KINDS, Fault, FaultSpec, Timeline, TimelineSegment, parse_fault
from simulators.device_config import device_config, meter_config
from simulators.equipment import STATE_CODES, Interval, Machine
from simulators.faults import LineFaults
from simulators.modbus_server import ModbusTcpSimulator, exception_at
from simulators.registry import BY_NAME, USUAL_PROTOCOL, Planned, machines
from simulators.stepping import TickStats, tick_loop

if TYPE_CHECKING:  # asyncua and pyserial load only when an OPC UA or serial device is served
    from simulators.modbus_rtu import ModbusRtuSimulator
    from simulators.opcua_server import OpcUaSimulator
    from simulators.pty import PtyPair

log = logging.getLogger(__name__)

PROTOCOLS = ("modbus", "rtu", "opcua")
MAX_RTU_UNITS = 247
# which faults each protocol can show
SUPPORTED: dict[str, frozenset[str]] = {
    "modbus": frozenset(("offline", "slow", "exception", "corrupt", "counter_reset", "rollover", "skew")),
    "rtu": frozenset(("offline", "slow", "exception", "corrupt", "counter_reset", "rollover", "skew")),
    "opcua": frozenset(("offline", "restart", "counter_reset", "rollover", "skew")),
    "dlt645": frozenset(("offline", "slow", "exception", "corrupt", "skew")),
}


class SimClock:
    """Model time: the wall clock at the start, then `speed` times faster."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be above 0, not {speed:g}")
        self.speed = speed
        self.t0 = time.time() if start is None else start
        self.m0 = time.monotonic()

    def __call__(self) -> float:
        return self.t0 + (time.monotonic() - self.m0) * self.speed

    def real(self, model_seconds: float) -> float:
        """Real seconds that `model_seconds` of model time take."""
        return model_seconds / self.speed


@dataclass
class WorkshopSpec:
    industry: str = "textiles"
    devices: int | Sequence[int] = 1  # per kind of machine (a list: per kind, in the industry's order)
    protocol: str | None = None  # modbus | rtu | opcua; None: each kind's usual protocol
    host: str = "127.0.0.1"
    port: int = 5020  # first Modbus TCP port
    opcua_port: int = 4840
    serial: str | None = None  # rtu: the port the simulator opens, or "pty" for a socat pair
    gateway_serial: str | None = None  # rtu: the port the gateway opens (default: `serial`)
    baudrate: int = 9600
    parity: str = "N"
    meters: bool = False  # rtu: a DL/T 645 meter per machine on the same line
    seed: int = 0
    speed: float = 1.0
    points: int = 0  # extra monitoring points per machine
    point_change: float = 0.2  # chance a point moves in a step
    timeline: Timeline | None = None
    shards: int = 1
    security: Sequence[str] = ("None", "Sign", "SignAndEncrypt")
    faults: Sequence[FaultSpec] = ()
    period: float = 1.0  # update period of the servers (real seconds)


@dataclass
class SimDevice:
    """A served device: its machine, how it is reached, and what the gateway config says."""

    id: str
    name: str
    machine: Machine
    protocol: str  # modbus | rtu | opcua | dlt645 (a meter)
    connection: dict[str, Any]
    unit: int = 1
    shard: int = 0
    meter_of: str | None = None  # dlt645: the device whose energy meter this is


@dataclass
class _Servers:
    tcp: dict[str, ModbusTcpSimulator] = field(default_factory=dict)
    rtu: ModbusRtuSimulator | None = None
    opcua: dict[int, OpcUaSimulator] = field(default_factory=dict)
    pty: PtyPair | None = None


class Workshop:
    """Machines served over their protocols; `start()`, `stop()`, configs, and faults."""

    def __init__(self, spec: WorkshopSpec, *, serve_shards: Collection[int] | None = None, local: bool = True,
                 pki_dir: str | None = None) -> None:  # fmt: skip
        """`serve_shards`: the OPC UA shards this process serves (default all); `local`: whether it serves
        the Modbus TCP devices and the serial line (an OPC UA shard process does not)."""
        self.spec = spec
        self.clock = SimClock(spec.speed)
        self.serve_shards = set(range(spec.shards)) if serve_shards is None else set(serve_shards)
        self.local = local
        self.pki_dir = pki_dir
        self.stats = TickStats()  # the Modbus machines' update loop (OPC UA servers keep their own)
        self.devices: list[SimDevice] = []
        self._servers = _Servers()
        self._tasks: list[asyncio.Task[None]] = []
        self._active: dict[tuple[str, str], Fault] = {}
        self._check_spec()
        self._plan()
        self.schedule = self._schedule()  # every fault, validated before anything starts

    # ------------------------------------------------------------ the plan

    def _check_spec(self) -> None:
        s = self.spec
        if s.protocol is not None and s.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {s.protocol!r} (one of {', '.join(PROTOCOLS)})")
        if s.protocol == "rtu" and not s.serial:
            raise ValueError(
                "protocol rtu needs a serial port (--serial /dev/ttyUSB1, or --serial pty for a socat pair)"
            )
        if s.meters and s.protocol != "rtu":
            raise ValueError("DL/T 645 meters are on a serial line: they need protocol rtu")
        if s.shards < 1:
            raise ValueError(f"shards must be 1 or more, not {s.shards}")
        wrong = [x for x in s.security if x not in ("None", "Sign", "SignAndEncrypt")]
        if wrong or not s.security:
            raise ValueError(f"security {','.join(wrong) or '(none)'}: None, Sign or SignAndEncrypt")
        if s.points < 0:
            raise ValueError(f"points must be 0 or more, not {s.points}")

    def _plan(self) -> None:
        s = self.spec
        planned = machines(s.industry, s.devices, seed=s.seed,
                           machine_options={"points": s.points, "point_change": s.point_change})  # fmt: skip
        if s.timeline is not None:
            for p in planned:
                segments = s.timeline.for_device(p.device_id)
                if segments:
                    p.machine.play(intervals(segments), s.timeline.repeat)
        rtu_units = 0
        opcua_index = 0
        tcp_index = 0
        for p in planned:
            protocol = s.protocol or USUAL_PROTOCOL[p.machine.kind]
            if protocol == "modbus":
                conn = {"host": s.host, "port": s.port + tcp_index, "unit_id": 1, "timeout": "1s"}
                tcp_index += 1
                self.devices.append(SimDevice(p.device_id, p.name, p.machine, protocol, conn))
            elif protocol == "rtu":
                rtu_units += 1
                if rtu_units > MAX_RTU_UNITS:
                    raise ValueError(f"one serial line takes at most {MAX_RTU_UNITS} Modbus units")
                self.devices.append(SimDevice(p.device_id, p.name, p.machine, protocol,
                                              self._serial_connection(unit_id=rtu_units), unit=rtu_units))  # fmt: skip
                if s.meters:
                    self._add_meter(p, rtu_units)
            else:
                shard = opcua_index % s.shards
                opcua_index += 1
                endpoint = f"opc.tcp://{s.host}:{s.opcua_port + shard}"
                self.devices.append(SimDevice(p.device_id, p.name, p.machine, protocol, {"endpoint": endpoint},
                                              shard=shard))  # fmt: skip
        if tcp_index and not 1 <= s.port <= s.port + tcp_index - 1 <= 65_535:
            raise ValueError(f"{tcp_index} Modbus TCP ports from {s.port}: beyond 1…65535 (choose a lower --port)")
        if opcua_index and not 1 <= s.opcua_port <= s.opcua_port + min(s.shards, opcua_index) - 1 <= 65_535:
            raise ValueError(f"OPC UA ports from {s.opcua_port}: beyond 1…65535 (choose a lower --opcua-port)")

    def _serial_connection(self, **extra: Any) -> dict[str, Any]:
        s = self.spec
        port = s.gateway_serial or s.serial or ""
        return {"port": port, "baudrate": s.baudrate, "parity": s.parity, "timeout": "500ms", **extra}

    def _add_meter(self, p: Planned, unit: int) -> None:
        address = f"{unit:012d}"
        conn = self._serial_connection(address=address)
        self.devices.append(SimDevice(f"{p.device_id}-meter", f"{p.machine.label} {unit}# 电能表 / meter", p.machine,
                                      "dlt645", conn, unit=unit, meter_of=p.device_id))  # fmt: skip

    def _serves(self, d: SimDevice) -> bool:
        return d.shard in self.serve_shards if d.protocol == "opcua" else self.local

    def device(self, device_id: str) -> SimDevice:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(f"no device {device_id!r} (devices: {', '.join(d.id for d in self.devices)})")

    @property
    def industry_label(self) -> str:
        i = BY_NAME.get(self.spec.industry)
        return f"{i.label} / {i.english}" if i else "全部行业 / every industry"

    # ------------------------------------------------------------ configs

    def device_configs(self) -> list[dict[str, Any]]:
        out = []
        for d in self.devices:
            if d.protocol == "dlt645":
                out.append(meter_config(d.id, d.name, d.connection, ct=d.machine.METER_CT))
            else:
                out.append(device_config(d.machine, d.id, d.name, d.connection, d.protocol))
        return out

    def gateway_config(
        self,
        *,
        gateway_id: str = "gw-sim-01",
        enterprise_id: str = "ent-sim-0001",
        enterprise_name: str | None = None,
        mqtt_url: str = "mqtt://127.0.0.1:1883",
        mqtt_protocol: str = "5",
        data_dir: str = "./edgegw-data/sim",
        api: str = "127.0.0.1:8080",
    ) -> dict[str, Any]:
        """A whole gateway.yaml (as a dict) reading this workshop."""
        industry = BY_NAME.get(self.spec.industry)
        name = enterprise_name or (industry.enterprise if industry else "昌吉某制造企业（模拟）")
        return {
            "gateway": {
                "id": gateway_id,
                "enterprise_id": enterprise_id,
                "enterprise_name": name,
                "data_dir": data_dir,
            },
            "mqtt": {"url": mqtt_url, "protocol": mqtt_protocol},
            "api": {"listen": api},
            "devices": self.device_configs(),
        }

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start every server this process serves; on failure nothing is left running."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        self._tasks.append(asyncio.create_task(tick_loop(self.spec.period, self._tick, self.stats), name="ws-tick"))
        if self.schedule:
            self._tasks.append(asyncio.create_task(self._play(self.schedule), name="ws-faults"))

    async def _start(self) -> None:
        s = self.spec
        now = self.clock()
        for d in self.devices:
            d.machine.step(now)
        tcp = [d for d in self.devices if d.protocol == "modbus"]
        if tcp and self.local:
            for d in tcp:
                sim = ModbusTcpSimulator(d.machine, host=s.host, port=d.connection["port"], clock=self.clock)
                await sim.start()
                self._servers.tcp[d.id] = sim
        serial = [d for d in self.devices if d.protocol in ("rtu", "dlt645")]
        if serial and self.local:
            await self._start_serial(serial)
        opcua = [d for d in self.devices if d.protocol == "opcua" and d.shard in self.serve_shards]
        if opcua:
            from simulators.opcua_server import OpcUaSimulator

            for shard in sorted({d.shard for d in opcua}):
                eq = [d.machine for d in opcua if d.shard == shard]
                pki = f"{self.pki_dir}/shard{shard}" if self.pki_dir else None
                server = OpcUaSimulator(eq, host=s.host, port=s.opcua_port + shard, pki_dir=pki, security=s.security,
                                        period=s.period, clock=self.clock, type_test=False)  # fmt: skip
                await server.start()
                self._servers.opcua[shard] = server

    async def _start_serial(self, devices: list[SimDevice]) -> None:
        from simulators.modbus_rtu import ModbusRtuSimulator

        s = self.spec
        port = s.serial or ""
        if port == "pty":
            from simulators.pty import PtyPair

            self._servers.pty = PtyPair(name="edgegw")
            gateway_end, port = self._servers.pty.start()
            for d in devices:
                d.connection["port"] = gateway_end
        units = {d.unit: d.machine for d in devices if d.protocol == "rtu"}
        meters = {d.connection["address"]: d.machine for d in devices if d.protocol == "dlt645"}
        sim = ModbusRtuSimulator(units, port=port, baudrate=s.baudrate, clock=self.clock, meters=meters)
        await sim.start()
        self._servers.rtu = sim

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        servers = self._servers
        for sim in servers.tcp.values():
            await sim.stop()
        servers.tcp.clear()
        if servers.rtu is not None:
            await servers.rtu.stop()
            servers.rtu = None
        for ua_sim in servers.opcua.values():
            await ua_sim.close()
        servers.opcua.clear()
        if servers.pty is not None:
            servers.pty.stop()
            servers.pty = None

    async def __aenter__(self) -> Workshop:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _tick(self) -> None:
        """Step the machines served over Modbus and DL/T 645 (the OPC UA servers step their own)."""
        now = self.clock()
        for d in self.devices:
            if d.protocol in ("modbus", "rtu"):
                d.machine.step(now)

    @property
    def opcua_servers(self) -> dict[int, OpcUaSimulator]:
        return self._servers.opcua

    @property
    def serial_ports(self) -> tuple[str, str] | None:
        """(the gateway's end, the simulator's end) of the serial line, when there is one."""
        if self._servers.rtu is None:
            return None
        return self.devices_on_serial[0].connection["port"], self._servers.rtu.port

    @property
    def devices_on_serial(self) -> list[SimDevice]:
        return [d for d in self.devices if d.protocol in ("rtu", "dlt645")]

    # ------------------------------------------------------------ faults

    def check_fault(self, device_id: str, fault: Fault) -> SimDevice:
        """The device, if `fault` is one it can show; ValueError with the reason otherwise."""
        try:
            d = self.device(device_id)
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
        if fault.kind not in SUPPORTED[d.protocol]:
            can = ", ".join(sorted(SUPPORTED[d.protocol]))
            raise ValueError(f"{device_id}: fault {fault.kind} is not possible over {d.protocol} (possible: {can})")
        try:
            if fault.kind == "exception":
                parse_di(fault.arg) if d.protocol == "dlt645" else exception_at(fault.arg)
        except ValueError as exc:
            raise ValueError(f"{device_id}: {exc}") from None
        return d

    async def inject(self, device_id: str, fault: Fault, seconds: float | None = None) -> None:
        """Make `device_id` show `fault` now (`restart`: down for `seconds`, default 2 s)."""
        d = self.check_fault(device_id, fault)
        m = d.machine
        kind = fault.kind
        log.info("fault on %s: %s", device_id, fault)
        if kind == "counter_reset":
            m.reset_counters()
        elif kind == "rollover":
            m.rollover()
        elif kind == "skew":
            m.clock_skew = fault.seconds
        elif kind == "restart":
            await self._servers.opcua[d.shard].restart(down_for=2.0 if seconds is None else seconds)
        elif d.protocol == "opcua":  # offline
            self._servers.opcua[d.shard].offline.add(m.name)
        elif d.protocol == "modbus" and kind == "offline":
            await self._servers.tcp[d.id].stop()  # the port closes, as when a PLC loses power
        else:
            self._line_faults(d).apply(fault)
        if kind not in EVENT_KINDS and kind != "restart":
            self._active[(device_id, kind)] = fault

    def _require_rtu(self) -> ModbusRtuSimulator:
        if self._servers.rtu is None:
            raise RuntimeError("the serial line is not served by this process")
        return self._servers.rtu

    def _line_faults(self, d: SimDevice) -> LineFaults:
        if d.protocol == "dlt645":
            return self._require_rtu().meter(d.connection["address"]).faults
        if d.protocol == "rtu":
            return self._require_rtu().faults(d.unit)
        return self._servers.tcp[d.id].faults(1)

    async def clear(self, device_id: str, kind: str) -> None:
        """End a lasting fault (`offline`, `slow`, `exception`, `corrupt`, `skew`) of `device_id`."""
        fault = self._active.pop((device_id, kind), None)
        if fault is None:
            return
        d = self.device(device_id)
        log.info("fault on %s cleared: %s", device_id, fault)
        if kind == "skew":
            d.machine.clock_skew = 0.0
        elif d.protocol == "opcua":
            self._servers.opcua[d.shard].offline.discard(d.machine.name)
        elif d.protocol == "modbus" and kind == "offline":
            await self._servers.tcp[d.id].start()
        else:
            self._line_faults(d).lift(kind)

    # ------------------------------------------------------------ scheduled faults

    def _schedule(self) -> list[tuple[float, str, Fault, float | None]]:
        """(real seconds from the start, device, fault, how long) for the spec's faults and the timeline's."""
        out: list[tuple[float, str, Fault, float | None]] = []
        for spec in self.spec.faults:
            targets = [spec.device]
            if spec.device == "*":  # every device that can show it
                targets = [d.id for d in self.devices if spec.fault.kind in SUPPORTED[d.protocol]]
                if not targets:
                    raise ValueError(f"*: no device here can show fault {spec.fault.kind}")
            for device_id in targets:
                d = self.check_fault(device_id, spec.fault)
                if self._serves(d):
                    out.append((spec.at, device_id, spec.fault, spec.seconds))
        tl = self.spec.timeline
        if tl is not None:
            for d in self.devices:
                if d.protocol == "dlt645" or not self._serves(d):
                    continue
                offset = 0.0
                for seg in tl.for_device(d.id):
                    for text in seg.faults:
                        fault = parse_fault(text)
                        self.check_fault(d.id, fault)
                        out.append((self.clock.real(offset), d.id, fault, self.clock.real(seg.seconds)))
                    offset += seg.seconds
        return sorted(out, key=lambda x: x[0])

    async def _play(self, schedule: list[tuple[float, str, Fault, float | None]]) -> None:
        t0 = time.monotonic()
        pending: list[asyncio.Task[None]] = []
        try:
            for at, device_id, fault, seconds in schedule:
                await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
                pending.append(asyncio.create_task(self._one(device_id, fault, seconds)))
            await asyncio.gather(*pending)
        finally:
            for t in pending:
                t.cancel()

    async def _one(self, device_id: str, fault: Fault, seconds: float | None) -> None:
        try:
            await self.inject(device_id, fault, seconds)
            if seconds is not None and fault.kind not in EVENT_KINDS and fault.kind != "restart":
                await asyncio.sleep(seconds)
                await self.clear(device_id, fault.kind)
        except (OSError, RuntimeError) as exc:  # a port taken meanwhile: report, do not stop the workshop
            log.warning("fault %s on %s failed: %s", fault, device_id, exc)


def intervals(segments: Sequence[TimelineSegment]) -> list[Interval]:
    """A timeline's segments as the state machine's intervals."""
    return [Interval(s.seconds, STATE_CODES[s.state], s.rate, s.reject, tuple(s.events)) for s in segments]
