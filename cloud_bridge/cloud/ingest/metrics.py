"""Prometheus metrics of the ingester (`edgegw ingest`, served by `serve_metrics` on `ingest.metrics_listen`).

The counters are read from `Ingester.stats` when scraped (a custom collector: nothing added to the hot
path). What the stats do not hold is observed where the batch is handled: the batch sizes, each store
attempt's latency (TSDB, ledger) and the newest sample time (for the lag). `IngestMetrics` is what the
ingester calls; it is cheap (a histogram observation is a lock and an add).

Names (README, "Prometheus metrics"): `edgegw_ingest_messages_total`, `_batches_total`,
`_data_messages_total`, `_event_messages_total`, `_status_messages_total`, `_samples_total`,
`_duplicates_total`, `_dead_letters_total`, `_tsdb_skipped_strings_total`, `_store_errors_total`;
histograms `edgegw_ingest_batch_messages`, `edgegw_ingest_batch_samples`, `edgegw_ingest_store_seconds`
(label `store`: tsdb, ledger); gauges `edgegw_ingest_pending_messages` (received from the broker, not yet
handled: the backlog inside the ingester; the broker's own queue is not visible to a client),
`edgegw_ingest_newest_sample_timestamp_seconds`, `edgegw_ingest_lag_seconds` (now − newest sample
time), `edgegw_ingest_mqtt_subscribed`; `edgegw_ingest_info`; `process_*` (RSS, CPU).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cloud_bridge.wire.codec import DataMessage
from edge_config.version import __version__

T = TypeVar("T")

# IngestStats field -> (metric name without _total, help)
COUNTERS: dict[str, tuple[str, str]] = {
    "messages": ("edgegw_ingest_messages", "messages received, whatever became of them"),
    "batches": ("edgegw_ingest_batches", "batches handled"),
    "data_messages": ("edgegw_ingest_data_messages", "data messages newly recorded"),
    "event_messages": ("edgegw_ingest_event_messages", "events messages newly recorded"),
    "status_messages": ("edgegw_ingest_status_messages", "status and meta messages recorded"),
    "samples_ingested": ("edgegw_ingest_samples", "samples of newly recorded data messages"),
    "duplicates": ("edgegw_ingest_duplicates", "messages already recorded, acknowledged and dropped"),
    "dead_letters": ("edgegw_ingest_dead_letters", "messages set aside in the dead-letter table"),
    "tsdb_skipped_strings": ("edgegw_ingest_tsdb_skipped_strings", "text samples not written to the TSDB"),
    "errors": ("edgegw_ingest_store_errors", "failed store attempts (each retry counts)"),
}
MESSAGE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
SAMPLE_BUCKETS = (1, 10, 100, 500, 1000, 5000, 10_000, 50_000, 100_000)
STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class IngestMetrics:
    """What the ingester observes while it handles batches, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.batch_messages = Histogram(
            "edgegw_ingest_batch_messages", "messages per batch", buckets=MESSAGE_BUCKETS, registry=self.registry
        )
        self.batch_samples = Histogram(
            "edgegw_ingest_batch_samples", "samples per batch", buckets=SAMPLE_BUCKETS, registry=self.registry
        )
        self.store_seconds = Histogram(
            "edgegw_ingest_store_seconds",
            "one store attempt: a TSDB write request or a ledger transaction",
            ["store"],
            buckets=STORE_BUCKETS,
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self.newest_sample_ms: int | None = None

    def timed(self, store: str, fn: Callable[[], T]) -> T:
        """Call `fn` (one store attempt) and observe how long it took, failed or not."""
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.store_seconds.labels(store).observe(time.perf_counter() - t0)

    def store_totals(self) -> dict[str, float]:
        """Seconds spent in each store's attempts so far (the histograms' sums), e.g. for a bench."""
        out: dict[str, float] = {}
        for metric in self.store_seconds.collect():
            for sample in metric.samples:
                if sample.name.endswith("_sum"):
                    out[sample.labels["store"]] = sample.value
        return out

    def batch(self, records: list[Any]) -> None:
        """A batch handled: `records` are the wire records (data, events, or None) of its messages."""
        samples = 0
        newest = -1
        for r in records:
            if isinstance(r, DataMessage) and r.samples:
                samples += len(r.samples)
                newest = max(newest, max(s.ts for s in r.samples))
        self.batch_messages.observe(len(records))
        self.batch_samples.observe(samples)
        if newest >= 0:
            with self._lock:
                if self.newest_sample_ms is None or newest > self.newest_sample_ms:
                    self.newest_sample_ms = newest


class Observed(Protocol):
    """What the collector reads of an `Ingester` (a protocol: this module is imported by the ingester)."""

    client_id: str
    metrics: IngestMetrics

    @property
    def stats(self) -> Any: ...  # IngestStats, a dataclass of counters

    @property
    def pending(self) -> int: ...

    @property
    def subscribed(self) -> bool: ...


class _IngesterCollector(Collector):
    def __init__(self, ingester: Observed, clock: Callable[[], float]) -> None:
        self.ingester = ingester
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        ing = self.ingester
        info = GaugeMetricFamily("edgegw_ingest_info", "the ingester and its version", labels=["client_id", "version"])
        info.add_metric([ing.client_id, __version__], 1)
        yield info
        stats = ing.stats
        for f in fields(stats):
            name, doc = COUNTERS.get(f.name, (f"edgegw_ingest_{f.name}", f.name.replace("_", " ")))
            yield CounterMetricFamily(name, doc, value=getattr(stats, f.name))
        yield GaugeMetricFamily(
            "edgegw_ingest_pending_messages", "received from the broker and not yet handled", value=ing.pending
        )
        yield GaugeMetricFamily(
            "edgegw_ingest_mqtt_subscribed", "1 while subscribed to the broker", value=1 if ing.subscribed else 0
        )
        newest = ing.metrics.newest_sample_ms
        if newest is not None:
            yield GaugeMetricFamily(
                "edgegw_ingest_newest_sample_timestamp_seconds", "newest sample time ingested", value=newest / 1000
            )
            lag = self.clock() - newest / 1000
            yield GaugeMetricFamily("edgegw_ingest_lag_seconds", "now minus the newest sample time ingested", value=lag)


def registry_for(ingester: Observed, clock: Callable[[], float] = time.time) -> CollectorRegistry:
    """The ingester's registry: its observations, its counters read at scrape time, the process."""
    reg = ingester.metrics.registry
    reg.register(_IngesterCollector(ingester, clock))
    ProcessCollector(registry=reg)
    return reg


def serve_metrics(ingester: Observed, listen: str) -> Callable[[], None]:
    """`GET /metrics` (any path) on `listen` (host:port) in a thread of its own; returns a stop function."""
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry_for(ingester))

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
