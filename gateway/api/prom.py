"""`GET /metrics` of the edge agent in the Prometheus text format (prometheus-client).

Read from the agent's own counters when scraped (a custom collector): nothing is added to the scan path
but the scan-time histogram (`Runtime.scan_times`). Process RSS and CPU come from prometheus-client's
process collector. Names are listed in README, "Prometheus metrics".
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from edge_config.timing import now_ms
from edge_config.version import __version__
from gateway.api.view import AgentView

DEVICE_LABELS = ["device", "type", "driver"]
# DeviceState field -> (metric name without _total, help)
DEVICE_COUNTERS = [
    ("scans", "edgegw_device_scans", "scans (polls or notification batches)"),
    ("overruns", "edgegw_device_overruns", "scan slots missed"),
    ("samples_read", "edgegw_device_readings", "tag readings taken"),
    ("bad_readings", "edgegw_device_read_errors", "readings of bad quality"),
    ("samples_buffered", "edgegw_device_samples_buffered", "samples written to the buffer"),
    ("samples_lost", "edgegw_device_samples_lost", "samples the buffer refused"),
]


class AgentCollector(Collector):
    def __init__(self, agent: AgentView) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        rt, pub = agent.runtime, agent.publisher
        gw = agent.config.gateway
        info = GaugeMetricFamily(
            "edgegw_info", "the gateway and its version", labels=["gateway", "enterprise", "version"]
        )
        info.add_metric([gw.id, gw.enterprise_id, __version__], 1)
        yield info

        types = {d.id: d.type for d in agent.config.devices}
        online = GaugeMetricFamily("edgegw_device_online", "1 while the device answers", labels=DEVICE_LABELS)
        counters = {attr: CounterMetricFamily(name, doc, labels=DEVICE_LABELS) for attr, name, doc in DEVICE_COUNTERS}
        published = CounterMetricFamily(
            "edgegw_device_samples_published", "samples acknowledged by the broker", labels=DEVICE_LABELS
        )
        scan = HistogramMetricFamily("edgegw_device_scan_seconds", "scan time, read to buffered", labels=DEVICE_LABELS)
        for dev_id, s in list(rt.devices.items()):
            labels = [dev_id, types.get(dev_id, ""), s.driver]
            online.add_metric(labels, 1 if s.online else 0)
            for attr, family in counters.items():
                family.add_metric(labels, getattr(s, attr))
            published.add_metric(labels, pub.stats.samples_acked.get(dev_id, 0))
            times = rt.scan_times.get(dev_id)
            if times is not None:
                scan.add_metric(labels, times.cumulative(), times.sum)
        yield online
        yield from counters.values()
        yield published
        yield scan

        d = agent.runtime.buffer.depth()
        for name, doc, value in (
            ("edgegw_buffer_messages", "messages waiting in the store-and-forward buffer", d.messages),
            ("edgegw_buffer_bytes", "stored bytes of the waiting messages", d.bytes),
            ("edgegw_buffer_samples", "samples in the waiting messages", d.samples),
            ("edgegw_buffer_behind_seconds", "age of the oldest waiting message", d.behind_ms(now_ms()) / 1000),
            ("edgegw_buffer_dead_letters", "messages set aside (refused for good, or damaged)", d.dead_letters),
            ("edgegw_events_held", "events held in memory while the buffer refuses writes", rt.events_held),
            ("edgegw_mqtt_connected", "1 while connected to the broker", 1 if pub.stats.connected else 0),
            ("edgegw_mqtt_in_flight", "messages sent and not yet acknowledged", pub.health()["in_flight"]),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        for name, doc, value in (
            ("edgegw_buffer_dropped_messages", "messages dropped when the buffer was full", d.dropped_messages),
            ("edgegw_buffer_dropped_samples", "samples dropped when the buffer was full", d.dropped_samples),
            ("edgegw_events_lost", "held events dropped (the disk stayed full)", rt.events_lost),
            ("edgegw_mqtt_published", "messages published", pub.stats.published),
            ("edgegw_mqtt_acked", "messages acknowledged by the broker", pub.stats.acked),
            ("edgegw_mqtt_connects", "connections made (first and reconnects)", pub.stats.connects),
            ("edgegw_mqtt_disconnects", "connections lost", pub.stats.disconnects),
            ("edgegw_mqtt_stalls", "connections dropped: nothing acknowledged for ack_timeout", pub.stats.stalls),
            ("edgegw_mqtt_rejected", "messages refused for good (dead-lettered)", pub.stats.rejected),
        ):
            yield CounterMetricFamily(name, doc, value=value)


def registry_for(agent: AgentView) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(AgentCollector(agent))
    ProcessCollector(registry=reg)
    return reg
