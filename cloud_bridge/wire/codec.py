"""The MQTT wire contract, version 1: topics, the canonical `Sample`, message envelopes and their codec.

Both sides import this module: the gateway encodes, the ingester decodes. Decoding is strict:
anything that does not match the contract raises `WireError` with a reason (the ingester
dead-letters it).
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from math import isfinite
from typing import Any, Literal, NamedTuple

WIRE_VERSION = 1
Quality = Literal["good", "uncertain", "bad"]
Value = bool | int | float | str
QUALITIES: frozenset[str] = frozenset(("good", "uncertain", "bad"))
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MAX_SAMPLES = 100_000
_MAX_STR = 4096
_MAX_UNITS = 10_000
_MAX_EVENTS = 10_000
_MAX_NAME = 128  # tag names, units, event states, status versions: short texts (some become TSDB labels)
# What the cloud takes (`earliest_ms=EARLIEST_MS`, the ingester's decoders and `fastdecode`): timestamps from
# 2000-01-01 (the floor of `cloud_bridge.metrics.period`): no reading of the pilot is older, a gateway that
# stamps one has lost its clock (an RTC reset to 1970), and VictoriaMetrics takes a line-protocol timestamp of
# 0 for "now" while the ledger would keep 1970. Beyond the present, `trust.max_future_skew` flags (README
# "Trust model"). The decoders' default (0) reads whatever a gateway may have written, for tools and tests.
EARLIEST_MS = 946_684_800_000
_SINCE_2000 = " (2000-01-01)"


class WireError(ValueError):
    """A payload or topic that does not follow the wire contract."""


class Sample(NamedTuple):
    """One value of one tag at one instant: the canonical unit of data on the wire.

    A NamedTuple rather than a frozen dataclass: as immutable, and built about 5× faster, which
    matters at 100,000 samples/s in the ingester."""

    tag: str
    v: Value
    ts: int  # UTC epoch milliseconds
    q: Quality = "good"


EVENT_KINDS = ("online", "offline", "state", "snapshot")
# OEE states on the wire: the config's state map, plus `unknown` (a value the map does not name, or a bad read)
EVENT_STATES = frozenset(("running", "idle", "fault", "setup", "planned_stop", "unknown"))
# counts: the device's counters (engineering values) and the gateway's reading counters since it started
COUNT_KEYS = frozenset(("total", "good", "reject", "readings", "good_readings"))
DOMAINS = frozenset(("equipment", "energy", "quality", "production", "safety"))


@dataclass(frozen=True, slots=True)
class Event:
    """A device event: `online`, `offline`, `state` (OEE state change) or `snapshot` (periodic counters).

    `counts` (optional) holds counter values at `ts`: `total`, `good`, `reject` (the device's counters)
    and `readings`, `good_readings` (readings the gateway took of the device since it started).
    """

    kind: str
    ts: int
    reason: str = ""
    state: str | None = None
    counts: dict[str, int | float] | None = None


@dataclass(frozen=True, slots=True)
class DataMessage:
    gw: str
    dev: str
    seq: int
    hist: bool
    samples: tuple[Sample, ...]
    units: dict[str, str] = field(default_factory=dict)
    ent: str | None = None  # in the envelope since the chain (absent in older gateways' messages)
    prev: bytes | None = None  # chain hash of the gateway's previous message (see wire/signing.py)


@dataclass(frozen=True, slots=True)
class EventMessage:
    gw: str
    dev: str
    seq: int
    hist: bool
    events: tuple[Event, ...]
    ent: str | None = None
    prev: bytes | None = None


@dataclass(frozen=True, slots=True)
class Status:
    """Retained gateway or device status."""

    online: bool
    ts: int
    reason: str = ""
    version: str | None = None
    backlog: dict[str, int] | None = None  # gateway only: store-and-forward depth and drops


# ---------------------------------------------------------------- topics


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    enterprise_id: str
    gateway_id: str

    @property
    def root(self) -> str:
        return f"{self.prefix}/{self.enterprise_id}/{self.gateway_id}"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    def device_status(self, device_id: str) -> str:
        return f"{self.root}/{device_id}/status"

    def data(self, device_id: str) -> str:
        return f"{self.root}/{device_id}/data"

    def events(self, device_id: str) -> str:
        return f"{self.root}/{device_id}/events"

    def meta(self, device_id: str) -> str:
        return f"{self.root}/{device_id}/meta"

    @property
    def checkpoint(self) -> str:
        """Signed checkpoints of the gateway's hash chain (see wire/signing.py)."""
        return f"{self.root}/checkpoint"


@dataclass(frozen=True, slots=True)
class TopicInfo:
    enterprise_id: str
    gateway_id: str
    device_id: str | None
    kind: Literal["status", "data", "events", "meta", "checkpoint"]


def parse_topic(topic: str, prefix: str) -> TopicInfo:
    """Split `{prefix}/{ent}/{gw}[/{dev}]/{kind}`; raise WireError on anything else."""
    if not topic.startswith(prefix + "/"):
        raise WireError(f"topic {topic!r} is not under {prefix!r}")
    parts = topic[len(prefix) + 1 :].split("/")
    if len(parts) == 3 and parts[2] in ("status", "checkpoint"):
        ent, gw, kind = parts
        dev = None
    elif len(parts) == 4 and parts[3] in ("status", "data", "events", "meta"):
        ent, gw, dev, kind = parts
    else:
        raise WireError(f"topic {topic!r} does not follow the wire contract")
    for slug in (ent, gw, dev):
        if slug is not None and not _SLUG.match(slug):
            raise WireError(f"topic {topic!r}: {slug!r} is not an ASCII slug")
    return TopicInfo(ent, gw, dev, kind)  # type: ignore[arg-type]


# ---------------------------------------------------------------- encoding


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sample_dict(s: Sample) -> dict[str, Any]:
    return {"tag": s.tag, "v": s.v, "ts": s.ts, "q": s.q}


def encode_data_body(samples: tuple[Sample, ...] | list[Sample], units: dict[str, str] | None = None) -> bytes:
    """The part of a data message that does not change on replay: samples (and units).

    The same bytes as `_dumps({"samples": [sample_dict(s) ...], "units": units})` (tests hold it to
    that), written out directly: it runs for every sample the gateway sends, and building a dict per
    sample for `json.dumps` costs twice as much.
    """
    text = ",".join([f'{{"tag":{_json_tag(s.tag)},"v":{_json_value(s.v)},"ts":{int(s.ts)},"q":{_json_tag(s.q)}}}'
                     for s in samples])  # fmt: skip
    if units:
        return f'{{"samples":[{text}],"units":{_dumps(units).decode()}}}'.encode()
    return f'{{"samples":[{text}]}}'.encode()


_TAG_JSON: dict[str, str] = {}  # tag names (and qualities) as JSON strings: a gateway sends the same few


def _json_tag(tag: str) -> str:
    j = _TAG_JSON.get(tag)
    if j is None:
        j = encode_basestring(tag)
        if len(_TAG_JSON) < 100_000:
            _TAG_JSON[tag] = j
    return j


def _json_value(v: object) -> str:
    t = type(v)
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return int.__repr__(v)
    if t is float:
        if not math.isfinite(v):  # type: ignore[arg-type]
            raise ValueError(f"Out of range float values are not JSON compliant: {v!r}")
        return float.__repr__(v)
    return _dumps(v).decode()  # str, and anything else json.dumps takes (or refuses)


def encode_event_body(events: tuple[Event, ...] | list[Event]) -> bytes:
    out = []
    for e in events:
        d: dict[str, Any] = {"kind": e.kind, "ts": e.ts, "reason": e.reason}
        if e.state is not None:
            d["state"] = e.state
        if e.counts is not None:
            d["counts"] = e.counts
        out.append(d)
    return _dumps({"events": out})


def envelope(gw: str, dev: str, seq: int, hist: bool, body: bytes) -> bytes:
    """Wrap a stored body into the versioned envelope; seq and hist are set at publish time."""
    head = _dumps({"v": WIRE_VERSION, "gw": gw, "dev": dev, "seq": seq, "hist": hist})
    return head[:-1] + b"," + body[1:]


def encode_status(status: Status) -> bytes:
    d: dict[str, Any] = {"online": status.online, "ts": status.ts}
    if status.version is not None:
        d["version"] = status.version
    else:
        d["reason"] = status.reason
    if status.backlog is not None:
        d["backlog"] = status.backlog
    return _dumps(d)


# ---------------------------------------------------------------- decoding


def _require(cond: bool, reason: str) -> None:
    if not cond:
        raise WireError(reason)


INT64_MAX = 2**63 - 1  # every integer of the envelope (seq, timestamps) fits a signed 64-bit column
_FLOAT_MAX_INT = int(sys.float_info.max)  # the largest integer a float (a Double column) can take
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")  # NUL and lone surrogates: no store takes them
# in a name that becomes a TSDB label (tag names, units): control characters too (line protocol escapes
# a newline as `\n`, which VictoriaMetrics keeps as a backslash and an n: the label no longer matches)
_BAD_NAME_CHARS = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def wire_text(text: str) -> str | None:
    """A string value as the wire carries it: cut at the first NUL (a C string, a PLC's fixed buffer),
    unpaired surrogates replaced by U+FFFD; None when it is longer than the wire allows."""
    if "\x00" in text:
        text = text.split("\x00", 1)[0]
    if _SURROGATES.search(text):
        text = _SURROGATES.sub("\ufffd", text)
    return text if len(text) <= _MAX_STR else None


def _int(obj: dict[str, Any], key: str) -> int:
    v = obj.get(key)
    _require(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= INT64_MAX,
        f"{key!r} must be a non-negative integer (at most 2**63 - 1)",
    )
    return int(v)  # type: ignore[arg-type]


def _stamp(obj: dict[str, Any], earliest_ms: int, key: str = "ts") -> int:
    """A timestamp: integer milliseconds from `earliest_ms` (EARLIEST_MS in the cloud) to 2**63 - 1."""
    if not earliest_ms:
        return _int(obj, key)
    v = obj.get(key)
    _require(
        isinstance(v, int) and not isinstance(v, bool) and earliest_ms <= v <= INT64_MAX,
        f"{key!r} must be integer milliseconds from {earliest_ms}{_SINCE_2000 if earliest_ms == EARLIEST_MS else ''}"
        " to 2**63 - 1",
    )
    return int(v)  # type: ignore[arg-type]


def _name(obj: dict[str, Any], key: str, what: str) -> str:
    """A tag name: 1..128 characters, no control character, NUL or lone surrogate."""
    v = _str(obj, key)
    _require(0 < len(v) <= _MAX_NAME, f"{what} must be 1..{_MAX_NAME} characters")
    _require(not _BAD_NAME_CHARS.search(v), f"{what} {v!r} contains a control character")
    return v


def _str(obj: dict[str, Any], key: str, *, slug: bool = False, default: str | None = None) -> str:
    v = obj.get(key, default)
    if slug and type(v) is str and _SLUG.match(v):
        return v  # a slug is short ASCII: the checks below would pass it too
    _require(isinstance(v, str) and len(v) <= _MAX_STR, f"{key!r} must be a string")
    _require(not _BAD_CHARS.search(v), f"{key!r} contains NUL or an unpaired surrogate")  # type: ignore[arg-type]
    if slug:
        _require(bool(_SLUG.match(v)), f"{key!r} must be an ASCII slug")  # type: ignore[arg-type]
    return v  # type: ignore[return-value]


def _load(payload: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, an integer of > 4300 digits
        raise WireError(f"not JSON: {str(e)[:200]}") from None
    if not isinstance(obj, dict):
        raise WireError("payload must be a JSON object")
    return obj


def _envelope_fields(obj: dict[str, Any]) -> tuple[str, str, int, bool]:
    _require(obj.get("v") == WIRE_VERSION, f"unsupported wire version {obj.get('v')!r}")
    hist = obj.get("hist", False)
    _require(isinstance(hist, bool), "'hist' must be a boolean")
    return _str(obj, "gw", slug=True), _str(obj, "dev", slug=True), _int(obj, "seq"), hist


_HEX64_PREV = re.compile(r"^[0-9a-f]{64}$")


def _chain_fields(obj: dict[str, Any]) -> tuple[str | None, bytes | None]:
    """`ent` and `prev` of a chained envelope (both absent in a message of an older gateway)."""
    ent = _str(obj, "ent", slug=True) if "ent" in obj else None
    prev = obj.get("prev")
    if prev is None:
        return ent, None
    _require(isinstance(prev, str) and bool(_HEX64_PREV.match(prev)), "'prev' must be 64 lowercase hex digits")
    return ent, bytes.fromhex(prev)


def _samples(raw: list[Any], clean: bool, earliest_ms: int = 0) -> tuple[Sample, ...]:
    """The samples of a data message. A fast path for the common, well-formed sample (exact types), in
    one loop rather than a call per sample; anything else takes `_sample_checked`, which gives the
    precise reason. `clean`: the payload can hold no NUL nor surrogate in any string (`_clean`), so the
    tags need not be searched for them. The same samples, or the same WireError, as `_sample_checked`
    on each (tests hold it to that)."""
    out: list[Sample] = []
    append = out.append
    new = tuple.__new__
    for r in raw:
        if type(r) is dict:
            tag, v, ts, q = r.get("tag"), r.get("v"), r.get("ts"), r.get("q", "good")
            if (
                type(tag) is str
                and 0 < len(tag) <= _MAX_NAME
                and type(ts) is int
                and earliest_ms <= ts <= INT64_MAX
                and (q == "good" or q == "bad" or q == "uncertain")
                and ((type(v) is float and isfinite(v)) or type(v) is int or type(v) is bool)
                and (clean or not _BAD_NAME_CHARS.search(tag))
            ):
                append(new(Sample, (tag, v, ts, q)))  # Sample(tag, v, ts, q) without the Python-level __new__
                continue
        append(_sample_checked(r, earliest_ms))
    return tuple(out)


def _clean(payload: bytes | str) -> bool:
    """True when no string the payload decodes to can hold a control character (NUL among them) or a
    UTF-16 surrogate: pure ASCII (a surrogate needs non-ASCII bytes, which json.loads would decode with
    surrogatepass) with no escape at all (`\\n`, `\\u0000`, …: raw control characters are not valid JSON)
    and no raw DEL (valid JSON, unescaped)."""
    return isinstance(payload, bytes) and payload.isascii() and b"\\" not in payload and b"\x7f" not in payload


def _sample_checked(raw: Any, earliest_ms: int = 0) -> Sample:
    _require(isinstance(raw, dict), "a sample must be an object")
    tag = _name(raw, "tag", "'tag'")
    v = raw.get("v")
    _require(isinstance(v, bool | int | float | str), f"sample {tag!r}: 'v' must be a number, boolean or string")
    if isinstance(v, float):
        _require(math.isfinite(v), f"sample {tag!r}: 'v' must be finite")
    if isinstance(v, str):
        _require(len(v) <= _MAX_STR, f"sample {tag!r}: string value too long")
        _require(not _BAD_CHARS.search(v), f"sample {tag!r}: NUL or an unpaired surrogate in the value")
    q = raw.get("q", "good")
    _require(isinstance(q, str) and q in QUALITIES, f"sample {tag!r}: 'q' must be good, uncertain or bad")
    return Sample(tag, v, _stamp(raw, earliest_ms), q)


def decode_data(payload: bytes, *, earliest_ms: int = 0) -> DataMessage:
    """A data message; `earliest_ms`: the first timestamp taken (EARLIEST_MS in the cloud)."""
    obj = _load(payload)
    gw, dev, seq, hist = _envelope_fields(obj)
    raw = obj.get("samples")
    if not isinstance(raw, list) or not 0 < len(raw) <= _MAX_SAMPLES:
        raise WireError("'samples' must be a non-empty list")
    units = obj.get("units", {})
    _require(
        isinstance(units, dict) and all(isinstance(k, str) and isinstance(u, str) for k, u in units.items()),
        "'units' must map tag names to strings",
    )
    _require(len(units) <= _MAX_UNITS, f"'units' holds more than {_MAX_UNITS} entries")
    _check_units(units)
    return DataMessage(gw, dev, seq, hist, _samples(raw, _clean(payload), earliest_ms), units, *_chain_fields(obj))


def _check_units(units: dict[str, str]) -> None:
    """Units become TSDB labels: tag names and units of at most 128 characters, no control character."""
    for k, u in units.items():
        _require(
            len(k) <= _MAX_NAME and len(u) <= _MAX_NAME,
            f"'units': tag names and units are at most {_MAX_NAME} characters",
        )
        _require(
            not _BAD_NAME_CHARS.search(k) and not _BAD_NAME_CHARS.search(u),
            "'units': a control character, NUL or an unpaired surrogate in a tag name or unit",
        )


def decode_events(payload: bytes, *, earliest_ms: int = 0) -> EventMessage:
    obj = _load(payload)
    gw, dev, seq, hist = _envelope_fields(obj)
    raw = obj.get("events")
    if not isinstance(raw, list) or not 0 < len(raw) <= _MAX_EVENTS:
        raise WireError(f"'events' must be a list of 1..{_MAX_EVENTS} events")
    events = []
    for e in raw:
        _require(isinstance(e, dict), "an event must be an object")
        kind = _str(e, "kind")
        _require(kind in EVENT_KINDS, f"unknown event kind {kind!r}")
        state = e.get("state")
        _require(state is None or isinstance(state, str), "'state' must be a string")
        if state is not None:  # bounded whatever the kind
            _require(len(state) <= _MAX_NAME, f"'state' is at most {_MAX_NAME} characters")
            _require(not _BAD_CHARS.search(state), "'state' contains NUL or an unpaired surrogate")
        if kind == "state" or (kind == "snapshot" and state is not None):
            _require(state in EVENT_STATES, f"{kind} event: 'state' must be one of {', '.join(sorted(EVENT_STATES))}")
        counts = _counts(e.get("counts"))
        _require(kind != "snapshot" or counts is not None, "a snapshot event needs 'counts'")
        events.append(Event(kind, _stamp(e, earliest_ms), _str(e, "reason", default=""), state, counts))
    return EventMessage(gw, dev, seq, hist, tuple(events), *_chain_fields(obj))


def _number(v: Any) -> bool:
    """A finite number a float (a Double column) can hold: an integer too large for one is not."""
    if isinstance(v, float):
        return math.isfinite(v)
    return isinstance(v, int) and not isinstance(v, bool) and -_FLOAT_MAX_INT <= v <= _FLOAT_MAX_INT


def _counts(raw: Any) -> dict[str, int | float] | None:
    if raw is None:
        return None
    _require(
        isinstance(raw, dict) and all(k in COUNT_KEYS and _number(v) for k, v in raw.items()),
        f"'counts' must map {', '.join(sorted(COUNT_KEYS))} to finite numbers",
    )
    return dict(raw)


def decode_status(payload: bytes, *, earliest_ms: int = 0) -> Status:
    obj = _load(payload)
    online = obj.get("online")
    _require(isinstance(online, bool), "'online' must be a boolean")
    version = obj.get("version")
    _require(
        version is None or (isinstance(version, str) and len(version) <= _MAX_NAME),
        f"'version' must be a string of at most {_MAX_NAME} characters",
    )
    backlog = obj.get("backlog")
    if backlog is not None:
        _require(
            isinstance(backlog, dict)
            and len(backlog) <= 16
            and all(
                isinstance(k, str) and len(k) <= _MAX_NAME and type(v) is int and -INT64_MAX <= v <= INT64_MAX
                for k, v in backlog.items()
            ),
            "'backlog' must map names to 64-bit integers",
        )
    return Status(online, _stamp(obj, earliest_ms), _str(obj, "reason", default=""), version, backlog)  # type: ignore[arg-type]


# ---------------------------------------------------------------- device metadata (birth)


@dataclass(frozen=True, slots=True)
class TagMeta:
    name: str
    unit: str | None = None
    domain: str | None = None  # business area: equipment, energy, quality, production, safety
    type: str | None = None
    interval_s: float | None = None  # how often it is read; None when the device pushes it (subscription)


@dataclass(frozen=True, slots=True)
class OeeMeta:
    state_tag: str
    total_count_tag: str | None = None
    good_count_tag: str | None = None
    reject_count_tag: str | None = None
    ideal_cycle_time_s: float | None = None
    counter_max: float | None = None  # engineering value at which the counters wrap (None: they don't)
    resolution: float = 1.0  # one count in engineering units
    micro_stop_s: float = 120.0
    micro_stop_loss: str = "performance"


@dataclass(frozen=True, slots=True)
class DeviceMeta:
    """Retained per-device metadata (`.../{device_id}/meta`), published when the gateway starts: what the
    device is, its tags and their business areas, its OEE settings and the hash of the config behind it."""

    gw: str
    dev: str
    ts: int
    name: str = ""
    type: str = ""
    line: str = ""
    production: bool = True
    driver: str = ""
    poll_interval_s: float | None = None
    tags: tuple[TagMeta, ...] = ()
    oee: OeeMeta | None = None
    config_hash: str = ""  # SHA-256 (hex) of the gateway config's canonical JSON
    version: str = ""  # gateway software version


_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MICRO_LOSSES = ("performance", "availability")


def encode_meta(meta: DeviceMeta) -> bytes:
    d: dict[str, Any] = {
        "v": WIRE_VERSION,
        "gw": meta.gw,
        "dev": meta.dev,
        "ts": meta.ts,
        "name": meta.name,
        "type": meta.type,
        "line": meta.line,
        "production": meta.production,
        "driver": meta.driver,
        "poll_interval_s": meta.poll_interval_s,
        "tags": [
            {"name": t.name, "unit": t.unit, "domain": t.domain, "type": t.type, "interval_s": t.interval_s}
            for t in meta.tags
        ],
        "oee": None,
        "config_hash": meta.config_hash,
        "version": meta.version,
    }
    if meta.oee is not None:
        o = meta.oee
        d["oee"] = {
            "state_tag": o.state_tag,
            "total_count_tag": o.total_count_tag,
            "good_count_tag": o.good_count_tag,
            "reject_count_tag": o.reject_count_tag,
            "ideal_cycle_time_s": o.ideal_cycle_time_s,
            "counter_max": o.counter_max,
            "resolution": o.resolution,
            "micro_stop_s": o.micro_stop_s,
            "micro_stop_loss": o.micro_stop_loss,
        }
    return _dumps(d)


def _opt_str(obj: dict[str, Any], key: str, limit: int = 128) -> str | None:
    v = obj.get(key)
    _require(v is None or (isinstance(v, str) and len(v) <= limit), f"{key!r} must be a string or null")
    return v


def _opt_num(obj: dict[str, Any], key: str, *, positive: bool = False) -> float | None:
    v = obj.get(key)
    if v is None:
        return None
    _require(_number(v) and (not positive or v > 0), f"{key!r} must be a {'positive ' if positive else ''}number")
    return float(v)


def _tag_meta(raw: Any) -> TagMeta:
    _require(isinstance(raw, dict), "a tag must be an object")
    name = _name(raw, "name", "tag 'name'")
    domain = _opt_str(raw, "domain")
    _require(domain is None or domain in DOMAINS, f"tag {name!r}: unknown domain {domain!r}")
    return TagMeta(name, _opt_str(raw, "unit"), domain, _opt_str(raw, "type"), _opt_num(raw, "interval_s"))


def _oee_meta(raw: Any) -> OeeMeta | None:
    if raw is None:
        return None
    _require(isinstance(raw, dict), "'oee' must be an object or null")
    state_tag = _str(raw, "state_tag")
    loss = _str(raw, "micro_stop_loss", default="performance")
    _require(loss in _MICRO_LOSSES, "'micro_stop_loss' must be performance or availability")
    resolution = _opt_num(raw, "resolution", positive=True)
    micro = _opt_num(raw, "micro_stop_s")
    return OeeMeta(
        state_tag,
        _opt_str(raw, "total_count_tag"),
        _opt_str(raw, "good_count_tag"),
        _opt_str(raw, "reject_count_tag"),
        _opt_num(raw, "ideal_cycle_time_s", positive=True),
        _opt_num(raw, "counter_max"),
        resolution if resolution is not None else 1.0,
        micro if micro is not None and micro >= 0 else 120.0,
        loss,
    )


def decode_meta(payload: bytes, *, earliest_ms: int = 0) -> DeviceMeta:
    obj = _load(payload)
    _require(obj.get("v") == WIRE_VERSION, f"unsupported wire version {obj.get('v')!r}")
    production = obj.get("production", True)
    _require(isinstance(production, bool), "'production' must be a boolean")
    tags = obj.get("tags", [])
    _require(isinstance(tags, list) and len(tags) <= 10_000, "'tags' must be a list")
    config_hash = _str(obj, "config_hash", default="")
    _require(config_hash == "" or bool(_HEX64.match(config_hash)), "'config_hash' must be a SHA-256 in hex")
    return DeviceMeta(
        gw=_str(obj, "gw", slug=True),
        dev=_str(obj, "dev", slug=True),
        ts=_stamp(obj, earliest_ms),
        name=_str(obj, "name", default=""),
        type=_str(obj, "type", default=""),
        line=_str(obj, "line", default=""),
        production=production,
        driver=_str(obj, "driver", default=""),
        poll_interval_s=_opt_num(obj, "poll_interval_s"),
        tags=tuple(_tag_meta(t) for t in tags),
        oee=_oee_meta(obj.get("oee")),
        config_hash=config_hash,
        version=_str(obj, "version", default=""),
    )
