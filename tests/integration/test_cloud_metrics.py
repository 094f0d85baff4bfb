"""`/metrics` of the cloud side, scraped from the real processes and read with prometheus-client's parser:
`edgegw ingest` (its own listener, `ingest.metrics_listen`) against Mosquitto and VictoriaMetrics, and
`edgegw serve` (behind a cloud user)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_cloud_api import add_user
from tests.integration.test_ingester import BATCHES, GW, TOPICS, TOTAL, Publisher, data_payload
from tests.ports import free_port
from tests.servers import MosquittoServer, VictoriaMetrics
from tests.unit.test_evidence_build import fill_day

pytestmark = pytest.mark.integration
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, token: str = "") -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse(text: str) -> Samples:
    """Every sample of the exposition, keyed by (name, sorted labels); the parser refuses a malformed text."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@contextmanager
def process(args: list[str], listening: str) -> Iterator[subprocess.Popen[bytes]]:
    """`edgegw ARGS` as a process, once `listening` (a URL) answers; terminated after."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )

    def answers() -> bool:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"edgegw {args[0]} exited {proc.returncode}: {out}")
        try:
            scrape(listening)
        except OSError:
            return False
        return True

    try:
        wait_for(answers, f"edgegw {args[0]} to listen")
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_ingester_metrics(tmp_path: Path, mosquitto: MosquittoServer, victoria: VictoriaMetrics) -> None:
    port = free_port()
    cloud = tmp_path / "cloud.yaml"
    cloud.write_text(
        f'mqtt: {{url: "{mosquitto.url}"}}\ninflux: {{url: "{victoria.url}"}}\n'
        f'ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}\ningest: {{metrics_listen: "127.0.0.1:{port}"}}\n'
        "trust: {mode: 'off'}\n",  # the test publishes hand-made, unchained messages
        encoding="utf-8",
    )
    url = f"http://127.0.0.1:{port}/metrics"
    with process(["ingest", "-c", str(cloud)], url):
        wait_for(lambda: value(parse(scrape(url)[1]), "edgegw_ingest_mqtt_subscribed") == 1, "the subscription")
        pub = Publisher(mosquitto.url)
        try:
            for dev, seq, samples, units in BATCHES:
                pub.publish(TOPICS.data(dev), data_payload(dev, seq, samples, units))
            dev, seq, samples, units = BATCHES[0]
            pub.publish(TOPICS.data(dev), data_payload(dev, seq, samples, units))  # again: a duplicate
            pub.publish(TOPICS.data("loom-09"), b"{not json")  # a dead letter
        finally:
            pub.close()
        wait_for(lambda: value(parse(scrape(url)[1]), "edgegw_ingest_messages_total") == 5, "five messages handled")
        before = time.time()
        status, text = scrape(url)
        assert status == 200
        m = parse(text)
    assert value(m, "edgegw_ingest_samples_total") == TOTAL
    assert value(m, "edgegw_ingest_data_messages_total") == len(BATCHES)
    assert value(m, "edgegw_ingest_duplicates_total") == 1
    assert value(m, "edgegw_ingest_dead_letters_total") == 1
    assert value(m, "edgegw_ingest_pending_messages") == 0
    batches = value(m, "edgegw_ingest_batches_total")
    assert value(m, "edgegw_ingest_batch_messages_count") == batches >= 1
    assert value(m, "edgegw_ingest_batch_messages_sum") == 5
    assert value(m, "edgegw_ingest_batch_samples_sum") == TOTAL + len(BATCHES[0][2])  # the duplicate's too
    # every new data message went through one TSDB write and one ledger transaction at least
    assert value(m, "edgegw_ingest_store_seconds_count", store="tsdb") >= 1
    assert value(m, "edgegw_ingest_store_seconds_count", store="ledger") >= 1
    assert value(m, "edgegw_ingest_store_seconds_sum", store="ledger") > 0
    newest = max(s.ts for _, _, samples, _ in BATCHES for s in samples)
    assert value(m, "edgegw_ingest_newest_sample_timestamp_seconds") == newest / 1000
    assert value(m, "edgegw_ingest_lag_seconds") >= before - newest / 1000  # now − the newest sample
    assert value(m, "edgegw_ingest_store_errors_total") == 0
    assert value(m, "process_resident_memory_bytes") > 0 and ("process_cpu_seconds_total", ()) in m
    assert any(k[0] == "edgegw_ingest_info" for k in m) and GW  # the info gauge


def test_ingest_refuses_a_bad_metrics_address(tmp_path: Path) -> None:
    cloud = tmp_path / "cloud.yaml"
    cloud.write_text(f'ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}\n', encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "ingest", "-c", str(cloud), "--metrics-listen", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "is not host:port" in out.stderr


def test_serve_metrics(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    fill_day(url)
    token = add_user(url, "eva", "evaluator", [])
    port = free_port()
    cloud = tmp_path / "cloud.yaml"
    cloud.write_text(
        f'ledger: {{url: "{url}"}}\napi: {{listen: "127.0.0.1:{port}"}}\nenterprises: [{{id: ent-1}}]\n',
        encoding="utf-8",
    )
    base = f"http://127.0.0.1:{port}"
    with process(["serve", "-c", str(cloud)], base + "/api/v1/health"):
        assert scrape(base + "/metrics")[0] == 401  # a cloud user only
        for ent in ("ent-1", "ent-1", "nobody"):
            scrape(f"{base}/api/v1/enterprises/{ent}/summary?from=2024-05-01&to=2024-05-01", token)
        status, text = scrape(base + "/metrics", token)
    assert status == 200
    m = parse(text)
    route = "/api/v1/enterprises/{ent}/summary"  # the template, never the raw path
    assert value(m, "edgegw_api_requests_total", method="GET", route=route, status="200") == 2
    assert value(m, "edgegw_api_requests_total", method="GET", route=route, status="404") == 1
    assert value(m, "edgegw_api_requests_total", method="GET", route="/metrics", status="401") == 1
    assert value(m, "edgegw_api_request_seconds_count", method="GET", route=route) == 3
    assert not any("nobody" in str(k) for k in m)
    assert value(m, "process_resident_memory_bytes") > 0 and ("process_cpu_seconds_total", ()) in m
