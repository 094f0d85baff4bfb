"""The ingester against real Mosquitto and VictoriaMetrics: MQTT → TSDB + evidence ledger."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from cloud_bridge.cloud.ingest.ingester import Ingester
from cloud_bridge.cloud.ingest.tsdb import TsdbWriter
from cloud_bridge.cloud.ledger.writer import Ledger
from cloud_bridge.wire.codec import (
    Event,
    Sample,
    Status,
    Topics,
    encode_data_body,
    encode_event_body,
    encode_status,
    envelope,
)
from cloud_bridge.wire.mqtt import host_port, make_client
from edge_config.models import CloudConfig, InfluxSection, IngestMqttSection, LedgerSection, TrustSection
from tests.servers import MosquittoServer, VictoriaMetrics, wait_for_samples

pytestmark = pytest.mark.integration

ENT, GW = "ent-0001", "gw-textile-01"
TOPICS = Topics("sf/v1", ENT, GW)
T0 = int(time.time() * 1000) - 60_000


def cloud_config(
    broker: MosquittoServer,
    victoria: VictoriaMetrics | None,
    tmp_path: Path,
    protocol: Literal["5", "3.1.1"] = "5",
    shared_group: str | None = "edgegw-ingest",
    client_id: str | None = None,
    inflight: int = 100,
) -> CloudConfig:
    return CloudConfig(
        mqtt=IngestMqttSection(
            url=broker.url, protocol=protocol, shared_group=shared_group, client_id=client_id, inflight=inflight
        ),
        influx=InfluxSection(url=victoria.url) if victoria else None,
        ledger=LedgerSection(url=f"sqlite:///{tmp_path}/cloud/ledger.db"),
        trust=TrustSection(mode="off"),  # hand-made messages (the trust checks: test_trust_attacks.py)
    )


class Publisher:
    """A plain paho client publishing QoS 1 and waiting for each PUBACK."""

    def __init__(self, url: str, protocol: str = "5") -> None:
        self.client = make_client(url, protocol, f"test-pub-{time.monotonic_ns()}", None, None, None)
        self.client.connect(*host_port(url))
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mosquitto: MosquittoServer) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.url)
    yield pub
    pub.close()


@pytest.fixture
def ingester_factory() -> Iterator[Callable[..., Ingester]]:
    started: list[Ingester] = []

    def start(config: CloudConfig, **kwargs: Any) -> Ingester:
        ing = Ingester(config, **kwargs)
        ing.start()
        started.append(ing)
        assert ing.wait_subscribed(5), "ingester did not subscribe"
        return ing

    yield start
    for ing in started:
        ing.stop(drain_timeout=1)  # idempotent


def wait_until(cond: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def data_payload(dev: str, seq: int, samples: list[Sample], units: dict[str, str] | None = None) -> bytes:
    return envelope(GW, dev, seq, False, encode_data_body(samples, units))


# Three messages: two devices, numbers, a bool, a string, all qualities, units on some tags.
BATCHES: list[tuple[str, int, list[Sample], dict[str, str]]] = [
    (
        "loom-01",
        1,
        [Sample("speed", 1450.5, T0), Sample("speed", 1451.0, T0 + 1000), Sample("run_state", 1, T0)],
        {"speed": "rpm"},
    ),
    (
        "loom-01",
        2,
        [Sample("speed", 1449.0, T0 + 2000, "uncertain"), Sample("recipe", "A-12", T0 + 2000)],
        {"speed": "rpm"},
    ),
    (
        "dyer-02",
        3,
        [Sample("temp", 88.25, T0, "good"), Sample("door_open", True, T0 + 500, "bad")],
        {"temp": "°C"},
    ),
]
NUMERIC = sum(1 for _, _, samples, _ in BATCHES for s in samples if not isinstance(s.v, str))  # 6
TOTAL = sum(len(samples) for _, _, samples, _ in BATCHES)  # 7


def publish_batches(pub: Publisher) -> None:
    for dev, seq, samples, units in BATCHES:
        pub.publish(TOPICS.data(dev), data_payload(dev, seq, samples, units))


def series_by_tag(series: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(s["metric"]["dev"], s["metric"]["tag"], s["metric"]["q"]): s for s in series}


def test_data_reaches_victoria_and_ledger_once(
    mosquitto: MosquittoServer,
    victoria: VictoriaMetrics,
    publisher: Publisher,
    ingester_factory: Callable[..., Ingester],
    tmp_path: Path,
) -> None:
    ing = ingester_factory(cloud_config(mosquitto, victoria, tmp_path))
    assert ing.subscriptions[0] == ["$share/edgegw-ingest/sf/v1/#"]
    publish_batches(publisher)
    wait_until(lambda: ing.stats.data_messages == 3, what="3 data messages")

    series = series_by_tag(wait_for_samples(victoria, '{__name__="sf_v"}', NUMERIC))
    assert set(series) == {
        ("loom-01", "speed", "good"),
        ("loom-01", "speed", "uncertain"),
        ("loom-01", "run_state", "good"),
        ("dyer-02", "temp", "good"),
        ("dyer-02", "door_open", "bad"),
    }
    speed = series[("loom-01", "speed", "good")]
    assert speed["metric"] == {
        "__name__": "sf_v", "ent": ENT, "gw": GW, "dev": "loom-01", "tag": "speed", "unit": "rpm", "q": "good"
    }  # fmt: skip
    assert sorted(zip(speed["timestamps"], speed["values"], strict=True)) == [
        (T0, 1450.5),
        (T0 + 1000, 1451.0),
    ]
    assert series[("loom-01", "speed", "uncertain")]["values"] == [1449.0]
    assert "unit" not in series[("loom-01", "run_state", "good")]["metric"]
    assert series[("dyer-02", "temp", "good")]["metric"]["unit"] == "°C"
    assert series[("dyer-02", "temp", "good")]["values"] == [88.25]
    door = series[("dyer-02", "door_open", "bad")]
    assert (door["values"], door["timestamps"]) == ([1], [T0 + 500])

    stats = ing.stats
    assert (stats.messages, stats.samples_ingested, stats.tsdb_skipped_strings) == (3, TOTAL, 1)
    assert (stats.duplicates, stats.dead_letters, stats.errors) == (0, 0, 0)
    led = ing.ledger
    assert led.total_samples() == TOTAL
    devices = {d["dev"]: d for d in led.devices()}
    assert (devices["loom-01"]["samples"], devices["loom-01"]["good_samples"]) == (5, 4)
    assert (devices["dyer-02"]["first_seen"], devices["dyer-02"]["last_seen"]) == (T0, T0 + 500)
    recipe = next(t for t in led.tag_stats("loom-01") if t["tag"] == "recipe")
    assert recipe["last_value_text"] == "A-12"  # strings are kept in the ledger, not in the TSDB

    # The same (gw, seq) again, even as a replay: acknowledged, counted as duplicates, stored nowhere.
    publish_batches(publisher)
    publisher.publish(TOPICS.data("loom-01"), envelope(GW, "loom-01", 1, True, encode_data_body(BATCHES[0][2])))
    wait_until(lambda: ing.stats.duplicates == 4, what="4 duplicates")
    assert ing.stats.data_messages == 3
    assert led.total_samples() == TOTAL
    assert led.received_count() == 3
    assert sum(len(s["values"]) for s in victoria.export('{__name__="sf_v"}')) == NUMERIC


def test_malformed_messages_are_dead_lettered_and_ingest_goes_on(
    mosquitto: MosquittoServer,
    victoria: VictoriaMetrics,
    publisher: Publisher,
    ingester_factory: Callable[..., Ingester],
    tmp_path: Path,
) -> None:
    ing = ingester_factory(cloud_config(mosquitto, victoria, tmp_path))
    good = [Sample("speed", 5.0, T0)]
    publisher.publish(TOPICS.data("loom-01"), b"{not json")
    publisher.publish(TOPICS.data("loom-01"), data_payload("loom-01", 1, []))  # no samples
    publisher.publish(TOPICS.data("other-dev"), data_payload("loom-01", 2, good))  # topic/payload mismatch
    publisher.publish(f"sf/v1/{ENT}/{GW}/loom-01/values", data_payload("loom-01", 3, good))  # unknown kind
    publisher.publish(TOPICS.status, b'{"online": "yes", "ts": 1}')
    publisher.publish(TOPICS.data("loom-01"), data_payload("loom-01", 4, good))
    wait_until(lambda: ing.stats.data_messages == 1, what="the good message")

    assert ing.stats.dead_letters == 5
    assert ing.ledger.dead_letter_count() == 5
    reasons = {d["topic"]: d for d in ing.ledger.dead_letters()}
    assert reasons[f"sf/v1/{ENT}/{GW}/loom-01/values"]["payload"] == data_payload("loom-01", 3, good)
    assert ing.ledger.total_samples() == 1
    assert not ing.ledger.is_duplicate(ENT, GW, 2)  # dead letters claim no seq
    [speed] = wait_for_samples(victoria, '{tag="speed"}', 1)
    assert speed["values"] == [5.0]


def test_events_and_status_land_in_ledger(
    mosquitto: MosquittoServer,
    publisher: Publisher,
    ingester_factory: Callable[..., Ingester],
    tmp_path: Path,
) -> None:
    # Retained before the ingester exists: a shared subscription alone would never see these.
    publisher.publish(TOPICS.status, encode_status(Status(True, T0, version="0.1.0")), retain=True)
    publisher.publish(TOPICS.device_status("loom-01"), encode_status(Status(False, T0, "timeout")), retain=True)
    ing = ingester_factory(cloud_config(mosquitto, None, tmp_path))  # no TSDB configured: ledger only
    wait_until(lambda: ing.stats.status_messages >= 2, what="retained statuses")

    events = (Event("online", T0 + 10, "connected"), Event("state", T0 + 20, "", "running"))
    publisher.publish(TOPICS.events("loom-01"), envelope(GW, "loom-01", 7, False, encode_event_body(events)))
    publisher.publish(TOPICS.events("loom-01"), envelope(GW, "loom-01", 7, True, encode_event_body(events)))
    publisher.publish(TOPICS.device_status("loom-01"), encode_status(Status(True, T0 + 10, "connected")), retain=True)
    wait_until(lambda: ing.stats.event_messages == 1 and ing.stats.duplicates == 1, what="events")
    wait_until(lambda: ing.ledger.devices() and ing.ledger.devices()[0]["online"] is True, what="device online")

    assert [(e["kind"], e["ts"], e["state"]) for e in ing.ledger.events("loom-01")] == [
        ("online", T0 + 10, None),
        ("state", T0 + 20, "running"),
    ]
    [dev] = ing.ledger.devices()
    assert (dev["ent"], dev["gw"], dev["dev"], dev["status_ts"], dev["reason"]) == (
        ENT, GW, "loom-01", T0 + 10, "connected"
    )  # fmt: skip
    assert ing.ledger.gateways() == [{"ent": ENT, "gw": GW, "online": True, "ts": T0, "version": "0.1.0"}]


def test_mqtt311_plain_subscription(
    mosquitto: MosquittoServer,
    victoria: VictoriaMetrics,
    ingester_factory: Callable[..., Ingester],
    tmp_path: Path,
) -> None:
    ing = ingester_factory(cloud_config(mosquitto, victoria, tmp_path, protocol="3.1.1", shared_group=None))
    assert ing.subscriptions == [["sf/v1/#"]]
    pub = Publisher(mosquitto.url, "3.1.1")
    try:
        publish_batches(pub)
        publish_batches(pub)
    finally:
        pub.close()
    wait_until(lambda: ing.stats.data_messages == 3 and ing.stats.duplicates == 3, what="3 + 3 messages")
    wait_for_samples(victoria, '{__name__="sf_v"}', NUMERIC)
    assert ing.ledger.total_samples() == TOTAL
    assert sum(len(s["values"]) for s in victoria.export('{__name__="sf_v"}')) == NUMERIC


class FlakyTsdb(TsdbWriter):
    """Fails the first `failures` requests, as a TSDB outage would."""

    def __init__(self, section: InfluxSection, failures: int) -> None:
        super().__init__(section)
        self.failures = failures

    def write_lines(self, lines: list[str]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("TSDB down")
        super().write_lines(lines)


def test_tsdb_failure_holds_the_message_and_retries(
    mosquitto: MosquittoServer,
    victoria: VictoriaMetrics,
    publisher: Publisher,
    ingester_factory: Callable[..., Ingester],
    tmp_path: Path,
) -> None:
    config = cloud_config(mosquitto, victoria, tmp_path)
    assert config.influx is not None
    tsdb = FlakyTsdb(config.influx, failures=3)
    ing = ingester_factory(config, tsdb=tsdb, retry_initial=0.05)
    publish_batches(publisher)
    wait_until(lambda: ing.stats.data_messages == 3, what="3 data messages")
    assert ing.stats.errors == 3
    assert ing.ledger.total_samples() == TOTAL
    wait_for_samples(victoria, '{__name__="sf_v"}', NUMERIC)
    tsdb.close()


def test_unacknowledged_message_is_redelivered_after_restart(
    mosquitto: MosquittoServer,
    victoria: VictoriaMetrics,
    publisher: Publisher,
    ingester_factory: Callable[..., Ingester],
    tmp_path: Path,
) -> None:
    # A fixed client_id gives a persistent session: what was never acknowledged comes back.
    config = cloud_config(mosquitto, victoria, tmp_path, client_id="ingest-a")
    assert config.influx is not None
    down = FlakyTsdb(config.influx, failures=1_000_000)
    first = ingester_factory(config, tsdb=down, retry_initial=0.05)
    publisher.publish(TOPICS.data("loom-01"), data_payload("loom-01", 1, BATCHES[0][2], BATCHES[0][3]))
    wait_until(lambda: first.stats.errors >= 2, what="failing TSDB writes")
    first.stop(drain_timeout=0.2)  # the message is still held, so never acknowledged
    down.close()
    assert first.stats.data_messages == 0

    ledger = Ledger(config.ledger.url)
    try:
        assert ledger.total_samples() == 0
        second = ingester_factory(config)
        wait_until(lambda: second.stats.data_messages == 1, what="the redelivered message")
        assert ledger.total_samples() == 3
        wait_for_samples(victoria, '{dev="loom-01"}', 3)
    finally:
        ledger.close()


def test_awkward_names_and_values_survive_line_protocol(
    mosquitto: MosquittoServer,
    victoria: VictoriaMetrics,
    publisher: Publisher,
    ingester_factory: Callable[..., Ingester],
    tmp_path: Path,
) -> None:
    ing = ingester_factory(cloud_config(mosquitto, victoria, tmp_path))
    tags = ["speed 1", "a,b=c", "back\\slash\\", "温度", 'quote"d']
    samples = [Sample(t, float(i), T0 + i) for i, t in enumerate(tags)]
    samples += [Sample("huge", 10**400, T0), Sample("big", 2**63, T0), Sample("tiny", 1e-300, T0)]
    units = {"speed 1": "kW h", "温度": "m/s²", "a,b=c": "x=y,z"}
    publisher.publish(TOPICS.data("loom-01"), data_payload("loom-01", 1, samples, units))
    wait_until(lambda: ing.stats.data_messages == 1, what="the message")
    assert ing.stats.tsdb_skipped_strings == 1  # the integer beyond the float range
    series = {s["metric"]["tag"]: s for s in wait_for_samples(victoria, '{__name__="sf_v"}', len(samples) - 1)}
    assert set(series) == {*tags, "big", "tiny"}
    for i, t in enumerate(tags):
        assert (series[t]["values"], series[t]["timestamps"]) == ([float(i)], [T0 + i])
        assert series[t]["metric"].get("unit") == units.get(t)
    # VictoriaMetrics stores decimals (and prints 2**63 as 9223372036854776000): compare as floats.
    assert [float(v) for v in series["big"]["values"]] == [pytest.approx(2.0**63)]
    assert [float(v) for v in series["tiny"]["values"]] == [pytest.approx(1e-300, rel=1e-9)]
    huge = next(t for t in ing.ledger.tag_stats("loom-01") if t["tag"] == "huge")
    assert huge["last_value_text"] == str(10**400)  # the ledger keeps what the TSDB cannot


def test_a_burst_is_taken_in_batches_and_lands_once(
    mosquitto: MosquittoServer,
    victoria: VictoriaMetrics,
    ingester_factory: Callable[..., Ingester],
    tmp_path: Path,
) -> None:
    # MQTT 3.1.1 (PUBACKs must go back in arrival order): 1,000 messages and 100 replays in a burst.
    ing = ingester_factory(
        cloud_config(mosquitto, victoria, tmp_path, protocol="3.1.1", shared_group=None, inflight=400)
    )
    assert ing.batch_messages == 200
    pub = Publisher(mosquitto.url, "3.1.1")
    try:
        infos = []
        for seq in range(1, 1101):
            n = seq if seq <= 1000 else seq - 1000  # the last 100 replay messages 1..100
            samples = [Sample(f"t{k}", float(n * 10 + k), T0 + n) for k in range(5)]
            infos.append(
                pub.client.publish(
                    TOPICS.data("loom-01"), envelope(GW, "loom-01", n, seq > 1000, encode_data_body(samples)), qos=1
                )
            )
        for info in infos:
            info.wait_for_publish(10)
    finally:
        pub.close()
    wait_until(lambda: ing.stats.messages == 1100, timeout=30, what="1,100 messages")
    s = ing.stats
    assert (s.data_messages, s.duplicates, s.samples_ingested) == (1000, 100, 5000)
    assert s.batches < 1100 / 2, f"{s.batches} batches for 1,100 messages"
    assert ing.ledger.total_samples() == 5000
    wait_for_samples(victoria, '{__name__="sf_v"}', 5000)
    assert victoria.count('{__name__="sf_v"}') == 5000
