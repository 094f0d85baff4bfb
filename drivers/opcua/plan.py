"""What an OPC UA device asks of its server: monitored items, poll groups, subscription timing.

Pure logic, no I/O: made once from the validated device config.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from edge_config.models import OpcUaDevice
from edge_config.opcua import NodeRef, parse_node_id

T = TypeVar("T")
DeadbandKind = Literal["absolute", "percent"]


@dataclass(frozen=True, slots=True)
class TagRef:
    index: int  # position in the device's tag list; also the monitored item's client handle
    name: str
    node: NodeRef


@dataclass(frozen=True, slots=True)
class MonitoredTag:
    tag: TagRef
    sampling_ms: float
    queue_size: int
    deadband: tuple[DeadbandKind, float] | None  # server-side DataChangeFilter


@dataclass(frozen=True, slots=True)
class MonitoredGroup:
    """Subscribed tags sharing their monitoring settings; one object per setting, not per tag (memory)."""

    sampling_ms: float
    queue_size: int
    deadband: tuple[DeadbandKind, float] | None  # server-side DataChangeFilter
    tags: tuple[TagRef, ...]


@dataclass(frozen=True, slots=True)
class PollGroup:
    interval: float  # seconds
    tags: tuple[TagRef, ...]


@dataclass(frozen=True, slots=True)
class SubscriptionTiming:
    publishing_ms: float
    keepalive_count: int  # publishing intervals without data before the server sends a keep-alive
    lifetime_count: int  # publishing intervals without a Publish request before the server drops it


@dataclass(frozen=True, slots=True)
class Plan:
    refs: tuple[TagRef, ...]  # every tag, by index: the one TagRef of each tag the driver keeps
    groups: tuple[MonitoredGroup, ...]  # subscribed tags, in the device's order within a group
    poll_groups: tuple[PollGroup, ...]
    timing: SubscriptionTiming | None  # None when no tag is subscribed

    @property
    def monitored(self) -> tuple[MonitoredTag, ...]:
        """Each subscribed tag with its settings, in the device's order (made on demand: not kept)."""
        items = [MonitoredTag(t, g.sampling_ms, g.queue_size, g.deadband) for g in self.groups for t in g.tags]
        return tuple(sorted(items, key=lambda m: m.tag.index))


def subscription_timing(publishing_s: float, keepalive_s: float) -> SubscriptionTiming:
    """Keep-alive every `keepalive_s` at most, and a lifetime of 4 keep-alives (the spec wants ≥ 3).

    Many clients ask for keep-alives every 45 minutes (asyncua derives the count from the session
    timeout); then nobody notices a subscription the server has dropped. We ask for seconds.
    """
    publishing_ms = max(1.0, publishing_s * 1000.0)
    keepalive = max(1, math.ceil(keepalive_s * 1000.0 / publishing_ms - 1e-9))
    return SubscriptionTiming(publishing_ms, keepalive, 4 * keepalive)


def stale_after(publishing_ms: float, keepalive_count: int, factor: float = 3.0) -> float:
    """Seconds of silence (no data, no keep-alive) after which a subscription counts as dead."""
    return max(2.0, factor * publishing_ms * max(1, keepalive_count) / 1000.0)


def make_plan(device: OpcUaDevice) -> Plan:
    refs: list[TagRef] = []
    grouped: dict[tuple[float, int, tuple[DeadbandKind, float] | None], list[TagRef]] = {}
    polled: dict[float, list[TagRef]] = {}
    for i, tag in enumerate(device.tags):
        ref = TagRef(i, tag.name, parse_node_id(tag.node))
        refs.append(ref)
        interval = tag.sampling_interval if tag.sampling_interval is not None else device.poll_interval
        if tag.mode == "poll":
            polled.setdefault(interval, []).append(ref)
            continue
        deadband: tuple[DeadbandKind, float] | None = None
        if tag.eu_range_deadband is not None:
            deadband = ("percent", tag.eu_range_deadband)
        elif tag.deadband:
            deadband = ("absolute", tag.deadband)
        grouped.setdefault((interval * 1000.0, tag.queue_size, deadband), []).append(ref)
    timing = None
    if grouped:
        conn = device.connection
        publishing = conn.publishing_interval or min(k[0] for k in grouped) / 1000.0
        timing = subscription_timing(publishing, conn.keepalive)
    groups = tuple(MonitoredGroup(*k, tuple(v)) for k, v in grouped.items())
    polls = tuple(PollGroup(k, tuple(v)) for k, v in sorted(polled.items()))
    return Plan(tuple(refs), groups, polls, timing)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + size]
