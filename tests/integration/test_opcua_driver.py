"""OpcUaDriver against the OPC UA simulator over loopback: subscriptions, polling, every type and
node id form, security policies and identities, the watchdog."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers import make_driver
from drivers.base import Driver, DriverError, DriverStatus, Reading, SubscribingDriver
from drivers.opcua import OpcUaDriver
from drivers.opcua.values import to_raw
from edge_config.models import OpcUaDevice
from simulators.chemicals import BatchReactor
from simulators.opcua_server import (
    ID_FORMS,
    TYPE_TEST,
    OpcUaSimulator,
    SimulatorThread,
    bulk_node_id,
    bulk_value,
    node_id,
)
from tests.ports import free_port

pytestmark = pytest.mark.integration

BULK = 1000


@pytest.fixture(scope="module")
def shared_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpcUaSimulator]:
    """One open simulator (security None allowed) with a reactor and 1,000 bulk nodes, for the module."""
    sim = OpcUaSimulator([BatchReactor()], port=free_port(), bulk=BULK, pki_dir=tmp_path_factory.mktemp("sim-pki"))
    thread = SimulatorThread(sim).start()
    try:
        yield sim
    finally:
        thread.stop()


def device(endpoint: str, tags: list[dict[str, Any]], **conn: Any) -> OpcUaDevice:
    return OpcUaDevice.model_validate(
        {"id": "dev-1", "driver": "opcua", "poll_interval": conn.pop("poll_interval", "1s"),
         "connection": {"endpoint": endpoint, "timeout": "4s", **conn}, "tags": tags}
    )  # fmt: skip


class Collector:
    """emit and status sinks that remember everything."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.batches = 0
        self.statuses: list[DriverStatus] = []

    def emit(self, readings: Any) -> None:
        self.readings.extend(readings)
        self.batches += 1

    def status(self, s: DriverStatus) -> None:
        self.statuses.append(s)

    def latest(self) -> dict[str, Reading]:
        return {r.tag: r for r in self.readings}


async def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


@pytest.fixture
async def running() -> AsyncIterator[list[OpcUaDriver]]:
    """Drivers a test starts; stopped at the end even when the test fails."""
    drivers: list[OpcUaDriver] = []
    yield drivers
    for d in drivers:
        await d.stop()


async def test_subscribe_1000_nodes_and_receive_every_change(
    shared_sim: OpcUaSimulator, tmp_path: Path, running: list[OpcUaDriver]
) -> None:
    tags = [{"name": f"n{i:05d}", "node": bulk_node_id(i), "sampling_interval": "200ms"} for i in range(BULK)]
    drv = OpcUaDriver(device(shared_sim.endpoint, tags), data_dir=tmp_path)
    assert isinstance(drv, SubscribingDriver) and isinstance(drv, Driver)
    got = Collector()
    t0 = time.monotonic()
    await drv.start(got.emit, got.status)
    running.append(drv)
    subscribe_s = time.monotonic() - t0
    assert got.statuses[-1].online and "1000 subscribed" in got.statuses[-1].reason
    first = shared_sim.bulk_cycle + 1  # the next full cycle after subscribing
    expected = {(f"n{i:05d}", bulk_value(i, c)) for i in range(BULK) for c in (first, first + 1)}

    def complete() -> bool:
        return expected <= {(r.tag, r.value) for r in got.readings}

    await wait_until(complete, 10.0, "every change of two cycles of 1,000 nodes")
    assert all(r.quality == "good" for r in got.readings)
    now_ms = time.time() * 1000
    assert all(now_ms - 15_000 < r.ts <= now_ms + 1000 for r in got.readings)  # source timestamps, recent
    assert got.batches < len(got.readings) / 50  # one batch per Publish response, not one per value
    assert subscribe_s < 5.0
    # memory: no per-item bookkeeping in asyncua's subscription, and node ids kept for polled tags only
    assert drv._sub is not None and drv._sub._monitored_items == {} and drv._poll_ids == {}
    # the values above came through fastpublish (its Double scalars are its common shape), not asyncua's decoder
    assert drv.stats.fast_publishes >= 2 and drv.stats.fast_publishes >= drv.stats.publishes


async def test_poll_mode_reads_many_nodes_per_request(
    shared_sim: OpcUaSimulator, tmp_path: Path, running: list[OpcUaDriver]
) -> None:
    tags = [{"name": f"n{i:05d}", "node": bulk_node_id(i), "mode": "poll"} for i in range(BULK)]
    drv = OpcUaDriver(device(shared_sim.endpoint, tags, max_nodes_per_request=300), data_dir=tmp_path)
    running.append(drv)
    await drv.connect()
    assert drv._client is not None
    reads: list[int] = []
    real_read = drv._client.uaclient.read

    async def counting_read(params: Any) -> Any:
        reads.append(len(params.NodesToRead))
        return await real_read(params)

    drv._client.uaclient.read = counting_read  # type: ignore[method-assign]
    cycle = shared_sim.bulk_cycle
    readings = await drv.read()
    assert reads == [300, 300, 300, 100]  # batched Read, 300 nodes per request
    assert [r.tag for r in readings] == [t["name"] for t in tags]
    for i, r in enumerate(readings):
        assert r.quality == "good"
        assert r.value in {bulk_value(i, c) for c in range(cycle - 1, cycle + 3)}, (r.tag, r.value, cycle)
    await drv.close()


async def test_poll_loop_inside_a_started_driver(
    shared_sim: OpcUaSimulator, tmp_path: Path, running: list[OpcUaDriver]
) -> None:
    tags = [
        {"name": "temp", "node": node_id("Reactor1", "Temperature")},
        {"name": "polled", "node": bulk_node_id(7), "mode": "poll", "sampling_interval": "200ms"},
    ]
    drv = OpcUaDriver(device(shared_sim.endpoint, tags), data_dir=tmp_path)
    got = Collector()
    await drv.start(got.emit, got.status)
    running.append(drv)
    assert "1 subscribed, 1 polled" in got.statuses[-1].reason
    await wait_until(lambda: sum(r.tag == "polled" for r in got.readings) >= 4, 5.0, "four polls")
    assert any(r.tag == "temp" and isinstance(r.value, float) for r in got.readings)


def type_tags() -> list[dict[str, Any]]:
    tags = [{"name": f"t_{name}", "node": f"ns=2;s=TypeTest.{name}"} for name in TYPE_TEST]
    tags += [{"name": f"q_{n}", "node": f"ns=2;s=TypeTest.{n}"} for n in ("Uncertain", "Bad")]
    tags += [{"name": f"id_{name}", "node": text} for name, (_nid, text) in ID_FORMS.items()]
    tags += [
        {"name": "by_uri", "node": "nsu=urn:edgegw:simulator;s=TypeTest.Int32"},
        {"name": "server_time", "node": "i=2258"},
        {"name": "missing", "node": "ns=2;s=NoSuchNode"},
        {"name": "missing_ns", "node": "nsu=urn:no-such-namespace;s=X"},
    ]
    return tags


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_every_type_and_node_id_form(
    shared_sim: OpcUaSimulator, tmp_path: Path, running: list[OpcUaDriver], mode: str
) -> None:
    tags = [{**t, "mode": mode} for t in type_tags()]
    drv = OpcUaDriver(device(shared_sim.endpoint, tags, poll_interval="300ms"), data_dir=tmp_path)
    got = Collector()
    await drv.start(got.emit, got.status)
    running.append(drv)
    names = {t["name"] for t in tags}
    await wait_until(lambda: names <= set(got.latest()), 5.0, "a reading of every tag")
    latest = got.latest()
    stamp_2024 = 1704067200000  # the simulator writes TypeTest values with this source timestamp
    for name, (vtype, value) in TYPE_TEST.items():
        r = latest[f"t_{name}"]
        assert (r.value, r.quality) == (to_raw(value, vtype), "good"), name
        assert r.ts == stamp_2024, name
    assert (latest["t_Float"].value, latest["t_DoubleArray"].value) == (21.3, "[1.5,-2.25,3.0]")
    assert (latest["q_Uncertain"].value, latest["q_Uncertain"].quality) == (7.5, "uncertain")
    assert (latest["q_Bad"].value, latest["q_Bad"].quality) == (None, "bad")
    assert "BadSensorFailure" in latest["q_Bad"].error
    assert latest["by_uri"].value == -2_000_000_000
    assert isinstance(latest["server_time"].value, str) and latest["server_time"].value.endswith("Z")
    for name in ID_FORMS:
        assert latest[f"id_{name}"].quality == "good" and isinstance(latest[f"id_{name}"].value, float)
    assert latest["missing"].quality == "bad" and "BadNodeIdUnknown" in latest["missing"].error
    assert latest["missing_ns"].quality == "bad" and "urn:no-such-namespace" in latest["missing_ns"].error
    assert got.statuses[-1].online  # a few bad nodes do not take the device offline


async def test_absolute_deadband_is_applied_by_the_server(tmp_path: Path, running: list[OpcUaDriver]) -> None:
    async with OpcUaSimulator(port=free_port(), pki_dir=tmp_path / "sim", period=60) as sim:
        tags = [
            {"name": "db", "node": "ns=2;s=TypeTest.Double", "deadband": 0.5, "sampling_interval": "100ms"},
            {"name": "pct", "node": "ns=2;s=TypeTest.Int32", "eu_range_deadband": 5.0},
        ]
        drv = OpcUaDriver(device(sim.endpoint, tags), data_dir=tmp_path)
        got = Collector()
        await drv.start(got.emit, got.status)
        running.append(drv)
        assert "2 subscribed" in got.statuses[-1].reason  # the server accepted both filters
        await wait_until(lambda: "db" in got.latest(), 5.0, "the initial value")
        for v in (10.0, 10.2, 10.4, 11.0, 11.3, 12.0):
            await sim.write("TypeTest.Double", v)
            await asyncio.sleep(0.25)
        await wait_until(lambda: got.latest()["db"].value == 12.0, 5.0, "the last value")
        assert [r.value for r in got.readings if r.tag == "db"][1:] == [10.0, 11.0, 12.0]


# ---------------------------------------------------------------- security


def user_identity(folder: Path) -> tuple[Path, Path]:
    """A user certificate and key (X.509 identity), like an engineer's smart-card export."""
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key, "engineer zhang", {}, [x509.UniformResourceIdentifier("urn:user:zhang")],
        [ExtendedKeyUsageOID.CLIENT_AUTH], 30,
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "user.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "user.key").write_bytes(cert_gen.dump_private_key_as_pem(key))
    return folder / "user.pem", folder / "user.key"


TEMP = [{"name": "temp", "node": node_id("Reactor1", "Temperature"), "unit": "°C"}]


async def test_sign_and_encrypt_with_a_user_name(tmp_path: Path, running: list[OpcUaDriver]) -> None:
    sim = OpcUaSimulator([BatchReactor()], port=free_port(), pki_dir=tmp_path / "sim", security=["SignAndEncrypt"],
                         allow_anonymous=False, type_test=False)  # fmt: skip
    async with sim:
        data = tmp_path / "gw"
        secure = {"security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt"}
        good = device(sim.endpoint, TEMP, **secure, username="operator", password="edgegw-sim")

        # 1. the server's certificate is not in the trust list yet: refused, kept in rejected/
        with pytest.raises(DriverError, match="server certificate not trusted") as err:
            await OpcUaDriver(good, data_dir=data).start(Collector().emit)
        rejected = list((data / "pki/rejected").iterdir())
        assert len(rejected) == 1 and "move it from" in str(err.value)
        assert (data / "pki/own/cert.der").is_file() and (data / "pki/own/key.pem").is_file()

        # 2. the engineer trusts it: values flow, encrypted, as operator
        rejected[0].rename(data / "pki/trusted" / rejected[0].name)
        drv = OpcUaDriver(good, data_dir=data)
        got = Collector()
        await drv.start(got.emit, got.status)
        running.append(drv)
        assert "Basic256Sha256/SignAndEncrypt, user operator" in got.statuses[-1].reason
        await wait_until(lambda: "temp" in got.latest(), 5.0, "a temperature")
        assert isinstance(got.latest()["temp"].value, float)
        assert drv.stats.fast_publishes >= 1  # fastpublish reads the decrypted message as well

        # 3. a wrong password and an anonymous session are refused, with reasons
        wrong = device(sim.endpoint, TEMP, **secure, username="operator", password="nope")
        with pytest.raises(DriverError, match="user name or password refused"):
            await OpcUaDriver(wrong, data_dir=data).start(Collector().emit)
        anonymous = device(sim.endpoint, TEMP, **secure)
        with pytest.raises(DriverError, match="BadIdentityTokenRejected"):
            await OpcUaDriver(anonymous, data_dir=data).start(Collector().emit)

        # 4. an endpoint the server does not offer
        sign_only = device(sim.endpoint, TEMP, security_policy="Basic256Sha256", security_mode="Sign")
        with pytest.raises(DriverError, match="offers no Basic256Sha256/Sign endpoint"):
            await OpcUaDriver(sign_only, data_dir=data).start(Collector().emit)


@pytest.mark.parametrize("policy", ["Basic256Sha256", "Aes256_Sha256_RsaPss"])
async def test_sign_with_a_user_certificate(tmp_path: Path, running: list[OpcUaDriver], policy: str) -> None:
    cert, key = user_identity(tmp_path / "user")
    other_cert, other_key = user_identity(tmp_path / "stranger")
    sim = OpcUaSimulator([BatchReactor()], port=free_port(), pki_dir=tmp_path / "sim", security=["Sign"],
                         allow_anonymous=False, user_certificates=[cert], type_test=False)  # fmt: skip
    async with sim:
        secure = {"security_policy": policy, "security_mode": "Sign", "trust_on_first_use": True}
        dev = device(sim.endpoint, TEMP, **secure, user_certificate=str(cert), user_private_key=str(key))
        drv = OpcUaDriver(dev, data_dir=tmp_path / "gw")
        got = Collector()
        await drv.start(got.emit, got.status)
        running.append(drv)
        assert f"{policy}/Sign, user certificate" in got.statuses[-1].reason
        await wait_until(lambda: "temp" in got.latest(), 5.0, "a temperature")
        # trusted on first use: pinned in the trust list
        assert len(list((tmp_path / "gw/pki/trusted").glob("tofu_*.der"))) == 1
        stranger = device(sim.endpoint, TEMP, **secure, user_certificate=str(other_cert),
                          user_private_key=str(other_key))  # fmt: skip
        with pytest.raises(DriverError, match=r"user name or password refused|BadUserAccessDenied"):
            await OpcUaDriver(stranger, data_dir=tmp_path / "gw").start(Collector().emit)


# ---------------------------------------------------------------- robustness


async def test_watchdog_notices_a_subscription_that_stopped_publishing(
    tmp_path: Path, running: list[OpcUaDriver]
) -> None:
    async with OpcUaSimulator([BatchReactor()], port=free_port(), pki_dir=tmp_path / "sim", type_test=False) as sim:
        dev = device(sim.endpoint, TEMP, keepalive="500ms", publishing_interval="250ms")
        drv = OpcUaDriver(dev, data_dir=tmp_path)
        got = Collector()
        await drv.start(got.emit, got.status)
        running.append(drv)
        await wait_until(lambda: "temp" in got.latest(), 5.0, "a temperature")
        assert await sim.drop_subscriptions() == 1  # the server forgets it and tells nobody
        took = await wait_until(lambda: not got.statuses[-1].online, 10.0, "the watchdog")
        assert "subscription stopped publishing" in got.statuses[-1].reason
        assert took < 8.0


async def test_server_down_then_back(tmp_path: Path, running: list[OpcUaDriver]) -> None:
    port = free_port()
    sim = OpcUaSimulator([BatchReactor()], port=port, pki_dir=tmp_path / "sim", type_test=False)
    drv = OpcUaDriver(device(sim.endpoint, TEMP, timeout="1s"), data_dir=tmp_path)
    with pytest.raises(DriverError, match="connection refused"):
        await drv.start(Collector().emit)
    await drv.stop()
    async with sim:
        got = Collector()
        await drv.start(got.emit, got.status)
        running.append(drv)
        await sim.stop()
        await wait_until(lambda: not got.statuses[-1].online, 10.0, "offline after the server stopped")
        assert "connection lost" in got.statuses[-1].reason or "network error" in got.statuses[-1].reason


def test_make_driver_gives_the_opcua_driver(tmp_path: Path) -> None:
    drv = make_driver(device("opc.tcp://127.0.0.1:4840", TEMP), data_dir=str(tmp_path))
    assert isinstance(drv, OpcUaDriver)
    assert drv.pki.root == tmp_path / "pki"
