"""What the edge sends and keeps for OEE and online evidence, per device.

A `DeviceTracker` observes a `DeviceChannel` (readings and online/offline changes) and:
- maps the OEE state tag through the config's state map and, on every change, buffers a `state`
  event carrying the counter values at that instant (`counts`);
- every `history.snapshot_interval` buffers a `snapshot` event with the counters and the number of
  readings taken so far (the cloud's data-completeness figure), for every device;
- keeps state changes, online transitions and counter readings in the local `OeeHistory`;
- after an unclean stop, reports the devices it last saw online as offline from the moment the
  gateway was last alive.

Everything it sends goes through the store-and-forward buffer, like samples. It never raises into
the polling loop: a failure is logged and collection goes on.

Also here: the per-device metadata message (retained `.../{device_id}/meta`) and the config hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from cloud_bridge.metrics import CountPoint, default_counter_max
from cloud_bridge.uplink.buffer import Outgoing
from cloud_bridge.wire.codec import DeviceMeta, Event, OeeMeta, TagMeta, Topics, encode_event_body, encode_meta
from drivers.base import Reading
from edge_config import timing
from edge_config.models import GatewayConfig
from edge_config.timing import is_future
from gateway.normalize import TagSpec, scale_value
from gateway.oee.history import OeeHistory

log = logging.getLogger(__name__)

Enqueue = Callable[[list[Outgoing]], None]
UNKNOWN = "unknown"
_SECRET_KEYS = frozenset(("password", "token"))


# ---------------------------------------------------------------- config hash and metadata


def _redact(obj: Any) -> Any:
    """`obj` without any `password` or `token`, at any depth. Tag lists are kept as they are: no secret is
    ever part of a tag, and they are nearly all of a large config (walking 40,000 tags took 0.5 s)."""
    if isinstance(obj, dict):
        return {k: v if k == "tags" else _redact(v) for k, v in obj.items() if k not in _SECRET_KEYS}
    if isinstance(obj, list):
        return [_redact(v) for v in obj]
    return obj


def canonical_config(config: GatewayConfig) -> bytes:
    """The validated config as canonical JSON (defaults filled in, keys sorted, secrets left out)."""
    return canonical_dump(config.model_dump(mode="json"))


def canonical_dump(data: dict[str, Any]) -> bytes:
    """`canonical_config` of a config's `model_dump(mode="json")`."""
    return json.dumps(_redact(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def config_hash(config: GatewayConfig) -> str:
    """SHA-256 (hex) of the canonical config: the same for files that differ only in layout or comments."""
    return hashlib.sha256(canonical_config(config)).hexdigest()


def _tag_interval(device: Any, tag: Any) -> float | None:
    if getattr(tag, "mode", "poll") == "subscribe":
        return None
    own = getattr(tag, "interval", None) or getattr(tag, "sampling_interval", None)
    return float(own or device.poll_interval)


def oee_meta(device: Any) -> OeeMeta | None:
    oee = device.oee
    if oee is None:
        return None
    tags = {t.name: t for t in device.tags}
    counter_max: float | None = oee.counter_max
    resolution = 1.0
    if oee.total_count_tag is not None:
        t = tags[oee.total_count_tag]
        if counter_max is None:
            counter_max = default_counter_max(t.type, t.scale, t.offset)
        resolution = abs(t.scale) or 1.0
    return OeeMeta(
        state_tag=oee.state_tag,
        total_count_tag=oee.total_count_tag,
        good_count_tag=oee.good_count_tag,
        reject_count_tag=oee.reject_count_tag,
        ideal_cycle_time_s=oee.ideal_cycle_time,
        counter_max=counter_max,
        resolution=resolution,
        micro_stop_s=oee.micro_stop,
        micro_stop_loss=oee.micro_stop_loss,
    )


def device_meta(device: Any, *, gw: str, ts: int, config_sha: str, version: str) -> DeviceMeta:
    return DeviceMeta(
        gw=gw,
        dev=device.id,
        ts=ts,
        name=device.name,
        type=device.type,
        line=device.line,
        production=device.production,
        driver=device.driver,
        poll_interval_s=float(device.poll_interval),
        tags=tuple(TagMeta(t.name, t.unit, t.domain, t.type, _tag_interval(device, t)) for t in device.tags),
        oee=oee_meta(device),
        config_hash=config_sha,
        version=version,
    )


# ---------------------------------------------------------------- state map


def _key(v: object) -> tuple[str, object]:
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, int | float):
        return ("n", float(v))
    return ("s", v)


class StateMap:
    """State tag value → OEE state; a value the map does not name is `unknown`."""

    def __init__(self, states: dict[str, list[int | str | bool]]) -> None:
        self._map = {_key(v): state for state, values in states.items() for v in values}

    def __call__(self, value: object) -> str:
        state = self._map.get(_key(value))
        if state is None and isinstance(value, bool):
            state = self._map.get(("n", float(value)))
        return state or UNKNOWN


# ---------------------------------------------------------------- the tracker


class DeviceTracker:
    """Observer of one device's channel (see `gateway.channel.ChannelObserver`)."""

    def __init__(
        self,
        device: Any,
        topics: Topics,
        enqueue: Enqueue,
        history: OeeHistory | None,
        *,
        snapshot_interval_s: float = 60.0,
        local_interval_s: float = 10.0,
        max_future_skew_s: float = 300.0,
    ) -> None:
        self.dev = device.id
        self.topics = topics
        self._enqueue = enqueue
        self.history = history
        self.snapshot_ms = max(1, round(snapshot_interval_s * 1000))
        self.local_ms = max(1, round(local_interval_s * 1000))
        self.max_future_skew_ms = round(max_future_skew_s * 1000)
        self.future_scans = 0  # scans stamped beyond the allowed skew (taken at the gateway's time)
        self._future_logged = -1
        specs = {t.name: TagSpec(t.name, t.type, t.scale, t.offset, t.unit, t.deadband) for t in device.tags}
        oee = device.oee
        self.state_tag: str | None = oee.state_tag if oee else None
        self.state_map = StateMap(oee.states) if oee else None
        self.counter_tags: dict[str, str] = {}
        if oee:
            for key, name in (("total", oee.total_count_tag), ("good", oee.good_count_tag)):
                if name:
                    self.counter_tags[name] = key
            if oee.reject_count_tag:
                self.counter_tags[oee.reject_count_tag] = "reject"
        self.specs = {n: specs[n] for n in [self.state_tag, *self.counter_tags] if n is not None}
        self.state: str | None = None  # None: not known in this online stretch
        self.counters: dict[str, float] = {}
        self.readings = 0
        self.good_readings = 0
        self.online_since = 0
        self.last_scan_ts = 0
        self._next_snapshot = 0
        self._last_snapshot_ts = 0
        self._next_local = 0
        self._last_local_ts = 0

    def live_point(self) -> CountPoint | None:
        """The counters as last read (the local history keeps them every `local_interval`)."""
        if not self.counters or not self.last_scan_ts:
            return None
        c = self.counters
        return CountPoint(self.last_scan_ts, c.get("total"), c.get("good"), c.get("reject"))

    # ------------------------------------------------------------ messages

    def _event(self, e: Event) -> None:
        self._enqueue([Outgoing("events", self.topics.events(self.dev), self.dev, encode_event_body([e]))])

    def _snapshot(self, ts: int) -> None:
        counts: dict[str, int | float] = dict(self.counters)
        counts["readings"] = self.readings
        counts["good_readings"] = self.good_readings
        self._event(Event("snapshot", ts, state=self.state if self.state_map else None, counts=counts))
        self._last_snapshot_ts = ts
        self._next_snapshot = (ts // self.snapshot_ms + 1) * self.snapshot_ms

    def _local_counts(self, ts: int) -> None:
        if self.history is not None and self.counters:
            c = self.counters
            self.history.record_counts(self.dev, ts, c.get("total"), c.get("good"), c.get("reject"))
        self._last_local_ts = ts
        self._next_local = ts + self.local_ms

    # ------------------------------------------------------------ observer

    def recover(self) -> None:
        """At start: a device the history last saw online, whose gateway then stopped without saying so,
        is reported offline from the moment the gateway was last alive."""
        if self.history is None:
            return
        try:
            since = self.history.open_devices().get(self.dev)
            alive = self.history.last_alive()
            if since is None or alive is None:
                return
            ts = max(alive, since)
            reason = "gateway stopped (offline since the gateway was last alive)"
            self._event(Event("offline", ts, reason))
            self.history.record_online(self.dev, ts, False, reason)
        except Exception:
            log.exception("device %s: could not recover the online history", self.dev)

    def final_snapshot(self) -> None:
        """When the gateway stops: the counters as last read, if not sent yet."""
        try:
            if self.last_scan_ts > self._last_snapshot_ts:
                self._snapshot(self.last_scan_ts)
            if self.last_scan_ts > self._last_local_ts:
                self._local_counts(self.last_scan_ts)
        except Exception:
            log.exception("device %s: could not send the last counter snapshot", self.dev)

    def on_online(self, online: bool, ts: int, reason: str) -> None:
        try:
            if not online and self.last_scan_ts > self._last_snapshot_ts:
                self._snapshot(self.last_scan_ts)  # the counters as they were last read
            if not online and self.last_scan_ts > self._last_local_ts:
                self._local_counts(self.last_scan_ts)
            self.state = None
            if online:
                self.online_since = ts
            if self.history is not None:
                self.history.record_online(self.dev, ts, online, reason)
                self.history.touch(ts)
        except Exception:
            log.exception("device %s: OEE tracking failed on an online change", self.dev)

    def on_readings(self, readings: Sequence[Reading]) -> None:
        """A scan that hands over every tag it read."""
        if readings:
            good = sum(1 for r in readings if r.quality == "good")
            self.on_scan(readings, max(r.ts for r in readings), len(readings), good)

    def on_scan(self, readings: Sequence[Reading], ts: int, read: int, good: int) -> None:
        if not read:
            return
        try:
            self._on_scan(readings, ts, read, good)
        except Exception:
            log.exception("device %s: OEE tracking failed on a scan", self.dev)

    def _on_scan(self, readings: Sequence[Reading], ts: int, read: int, good: int) -> None:
        now = timing.now_ms()
        if is_future(ts, now, self.max_future_skew_ms):  # e.g. an OPC UA source clock 40 days ahead
            self.future_scans += 1
            if self._future_logged < 0 or now - self._future_logged >= 60_000:
                self._future_logged = now
                log.warning(
                    "device %s: a reading stamped %.0f s ahead of this gateway's clock: flagged (%d so far), "
                    "taken at the gateway's time",
                    self.dev,
                    (ts - now) / 1000,
                    self.future_scans,
                )
            ts = now
        # never before the online report, never back in time (pushed values may carry old source stamps)
        ts = max(ts, self.online_since, self.last_scan_ts)
        self.last_scan_ts = ts
        self.readings += read
        self.good_readings += good
        new_state: str | None = None
        changed_counters = False
        for r in readings:
            spec = self.specs.get(r.tag)
            if spec is None:
                continue
            good = r.quality == "good" and r.value is not None
            value = scale_value(r.value, spec) if good and r.value is not None else None
            if r.tag == self.state_tag and self.state_map is not None:
                new_state = self.state_map(value) if value is not None else UNKNOWN
            key = self.counter_tags.get(r.tag)
            if key is not None and isinstance(value, int | float) and not isinstance(value, bool):
                changed_counters = changed_counters or self.counters.get(key) != value
                self.counters[key] = value
        if new_state is not None and new_state != self.state:
            self.state = new_state
            counts: dict[str, int | float] | None = dict(self.counters) if self.counters else None
            self._event(Event("state", ts, state=new_state, counts=counts))
            if self.history is not None:
                self.history.record_state(self.dev, ts, new_state)
                self._local_counts(ts)
        if ts >= self._next_snapshot:
            self._snapshot(ts)
        if ts >= self._next_local and (changed_counters or self._last_local_ts == 0):
            self._local_counts(ts)
        if self.history is not None:
            self.history.touch(ts)


def meta_message(device: Any, topics: Topics, *, gw: str, ts: int, sha: str, version: str) -> Outgoing:
    """The retained metadata message of one device (its full model: the tags are listed)."""
    meta = device_meta(device, gw=gw, ts=ts, config_sha=sha, version=version)
    return Outgoing("status", topics.meta(device.id), device.id, encode_meta(meta), retain=True)


def meta_messages(config: GatewayConfig, topics: Topics, *, ts: int, version: str) -> list[Outgoing]:
    """The retained metadata message of every device (sent at start, through the buffer)."""
    sha = config_hash(config)
    return [meta_message(d, topics, gw=config.gateway.id, ts=ts, sha=sha, version=version) for d in config.devices]
