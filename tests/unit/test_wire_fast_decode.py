"""The data decoder's fast paths (msgspec's compiled decoder for the well-formed message; in the careful path
one loop over the samples, a payload-wide check for NUL and surrogates, the slug short cut) against the
careful reference they replace: the same message, or the same WireError, for valid and broken payloads
alike, with msgspec and without it."""

from __future__ import annotations

import json
import math
from functools import partial
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_bridge.wire.codec import (
    _BAD_CHARS,
    _BAD_NAME_CHARS,
    _HEX64,
    _MAX_SAMPLES,
    _MAX_STR,
    _MAX_UNITS,
    _SLUG,
    EARLIEST_MS,
    DataMessage,
    WireError,
    _load,
    _require,
    _sample_checked,
    decode_data,
)
from cloud_bridge.wire.fastdecode import decode as msgspec_decode
from cloud_bridge.wire.fastdecode import decode_data as decode_data_fast


def _reference_str(obj: dict[str, Any], key: str, *, slug: bool = False, default: str | None = None) -> str:
    """`codec._str` as it was before its slug short cut."""
    v = obj.get(key, default)
    _require(isinstance(v, str) and len(v) <= _MAX_STR, f"{key!r} must be a string")
    assert isinstance(v, str)
    _require(not _BAD_CHARS.search(v), f"{key!r} contains NUL or an unpaired surrogate")
    if slug:
        _require(bool(_SLUG.match(v)), f"{key!r} must be an ASCII slug")
    return v


def reference_decode_data(payload: bytes) -> DataMessage:
    """`decode_data` as it was (with the cloud's timestamp floor): every sample through the careful path,
    every string searched."""
    obj = _load(payload)
    _require(obj.get("v") == 1, f"unsupported wire version {obj.get('v')!r}")
    hist = obj.get("hist", False)
    _require(isinstance(hist, bool), "'hist' must be a boolean")
    gw, dev = _reference_str(obj, "gw", slug=True), _reference_str(obj, "dev", slug=True)
    seq = obj.get("seq")
    _require(
        isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= 2**63 - 1,
        "'seq' must be a non-negative integer (at most 2**63 - 1)",
    )
    raw = obj.get("samples")
    if not isinstance(raw, list) or not 0 < len(raw) <= _MAX_SAMPLES:
        raise WireError("'samples' must be a non-empty list")
    units = obj.get("units", {})
    _require(
        isinstance(units, dict) and all(isinstance(k, str) and isinstance(u, str) for k, u in units.items()),
        "'units' must map tag names to strings",
    )
    _require(len(units) <= _MAX_UNITS, f"'units' holds more than {_MAX_UNITS} entries")
    for k, u in units.items():
        _require(len(k) <= 128 and len(u) <= 128, "'units': tag names and units are at most 128 characters")
        _require(
            not _BAD_NAME_CHARS.search(k) and not _BAD_NAME_CHARS.search(u),
            "'units': a control character, NUL or an unpaired surrogate in a tag name or unit",
        )
    samples = tuple(_sample_checked(s, EARLIEST_MS) for s in raw)
    ent = _reference_str(obj, "ent", slug=True) if "ent" in obj else None
    prev = obj.get("prev")
    if prev is not None:
        _require(isinstance(prev, str) and bool(_HEX64.match(prev)), "'prev' must be 64 lowercase hex digits")
        prev = bytes.fromhex(prev)
    return DataMessage(gw, dev, int(seq), hist, samples, units, ent, prev)  # type: ignore[arg-type]


careful = partial(decode_data, earliest_ms=EARLIEST_MS)  # the careful path with the cloud's floor


def outcome(decode: Any, payload: bytes) -> Any:
    try:
        return decode(payload)
    except WireError as e:
        return ("WireError", str(e))


# strings that the checks care about: NUL, lone surrogates, non-ASCII, quotes, backslashes, slugs and near-slugs
TRICKY_TEXT = st.sampled_from(
    ["speed", "t", "", "x" * 128, "x" * 129, "温度", "a\x00b", "\ud800", "a\udfffb", "\U0001f600", 'q"uote', "b\\s",
     "gw-1", "gw-1\n", "gw 1", "-gw", "a" * 64, "a" * 65, "dev.01_x", "\x7f", "é", "a\tb", "\r", "\x1f", "\x80"]
)  # fmt: skip
TEXT = st.one_of(TRICKY_TEXT, st.text(max_size=12))
VALUE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    TEXT,
    st.none(),
    st.just([1]),
    st.just({"a": 1}),
)
TS = st.one_of(
    st.integers(min_value=-5, max_value=2**64),
    st.sampled_from([0, EARLIEST_MS - 1, EARLIEST_MS]),
    st.just(1.5),
    st.just("1"),
    st.just(True),
    st.none(),
)
QUALITY = st.one_of(st.sampled_from(["good", "bad", "uncertain", "ok", "GOOD"]), st.just(1), st.none())
MISSING = object()


@st.composite
def sample(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from([1, "s", None, [], ["tag"]]))
    obj: dict[str, Any] = {}
    for key, strategy in (("tag", TEXT), ("v", VALUE), ("ts", TS), ("q", QUALITY)):
        valid = {
            "tag": st.just("speed"),
            "v": st.floats(-1e6, 1e6),
            "ts": st.integers(EARLIEST_MS, 2**62),
            "q": st.just("good"),
        }
        choice = draw(st.integers(0, 9))
        if choice == 0:
            continue  # left out
        obj[key] = draw(strategy if choice == 1 else valid[key])
    if draw(st.integers(0, 9)) == 0:
        obj["extra"] = draw(TEXT)
    return obj


@st.composite
def payload(draw: st.DrawFn) -> bytes:
    envelope: dict[str, Any] = {"v": 1, "ent": "ent-1", "gw": "gw-1", "dev": "dev-1", "seq": 7, "prev": "ab" * 32}
    for key, strategy in (("ent", TEXT), ("gw", TEXT), ("dev", TEXT)):
        if draw(st.integers(0, 5)) == 0:
            envelope[key] = draw(strategy)
    if draw(st.integers(0, 9)) == 0:
        envelope["units"] = draw(st.dictionaries(TEXT, TEXT, max_size=3))
        if draw(st.integers(0, 3)) == 0:
            envelope["units"] |= {"speed": draw(st.sampled_from(["x" * 128, "x" * 129, "r\npm"]))}
    envelope["samples"] = draw(st.lists(sample(), min_size=0, max_size=6))
    envelope["hist"] = draw(st.sampled_from([False, True, "no"]))
    text = json.dumps(envelope, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")  # raw (UTF-8 encoded) surrogates too, as json.loads accepts them


@settings(max_examples=1500, deadline=None)
@given(payload())
def test_the_fast_decoder_equals_the_reference(data: bytes) -> None:
    expected = outcome(reference_decode_data, data)
    assert outcome(decode_data_fast, data) == expected
    assert outcome(careful, data) == expected  # the careful path alone
    fast = msgspec_decode(data)
    assert fast is None or fast == expected


_HEAD = '{"v":1,"gw":"gw-1","dev":"dev-1","seq":1,"samples":[{"tag":"t","v":1.5,"ts":1700000000000}],"hist":false}'
# where a compiled JSON decoder may part from json.loads and the careful checks: every one answered as they do
MSGSPEC_EDGES = [
    _HEAD.encode(),
    *(_HEAD.replace('"v":1,', f'"v":{v},').encode() for v in ("1.0", "true", "2", '"1"', "null")),
    *(_HEAD.replace('"seq":1', f'"seq":{v}').encode()
      for v in ("1.0", "true", "-1", str(2**63 - 1), str(2**63), str(2**64), "1e3")),
    *(_HEAD.replace('"ts":1700000000000', f'"ts":{v}').encode()
      for v in ("-0", "0", "1000", "1700000000000.0", "1.7e12", str(EARLIEST_MS - 1), str(EARLIEST_MS), str(2**63),
                "false")),
    *(_HEAD.replace('"v":1.5', f'"v":{v}').encode()
      for v in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0.0", "-0", "2.2250738585072011e-308",
                "0.1000000000000000055511151231257827", "123456789012345678901234567890", str(2**64), str(-(2**63) - 1),
                "true", "null", '"x"', '"a\\u0000b"', '"\\udfff"', '"' + "x" * 4097 + '"', "[1]", "{}", "1E5", "0e0")),
    _HEAD.replace('"gw":"gw-1"', '"gw":"gw-1","gw":"gw-2"').encode(),  # a duplicate key: the last one
    _HEAD.replace('"samples"', '"samples":[],"samples"').encode(),
    _HEAD.replace('"hist":false', '"hist":false,"ent":null').encode(),
    _HEAD.replace('"hist":false', '"hist":false,"ent":"e-1","prev":null').encode(),
    _HEAD.replace('"hist":false', '"hist":false,"prev":"' + "AB" * 32 + '"').encode(),
    _HEAD.replace('"hist":false', '"hist":false,"prev":"' + "ab" * 32 + '\\n"').encode(),
    _HEAD.replace('"hist":false', '"hist":false,"units":null').encode(),
    _HEAD.replace('"hist":false', '"hist":false,"units":{"t":1}').encode(),
    _HEAD.replace('"hist":false', '"hist":false,"units":{"t":"\\u00b0C","t":"K"}').encode(),
    _HEAD.replace('"hist":false', '"hist":0').encode(),
    _HEAD.replace('"samples":[', '"samples":[null,').encode(),
    _HEAD.replace(',"ts":1700000000000}', ',"ts":1700000000000,"q":null}').encode(),
    _HEAD.replace(',"ts":1700000000000}', ',"ts":1700000000000,"q":"good","q":"bad"}').encode(),
    _HEAD.replace('"tag":"t"', '"tag":"' + "x" * 129 + '"').encode(),
    _HEAD.replace('"tag":"t"', '"tag":"\\u0000"').encode(),
    _HEAD.replace('"tag":"t"', '"tag":"\\u6e29\\u5ea6"').encode(),  # escaped CJK: not "clean", still fine
    _HEAD.replace('"tag":"t"', '"tag":"\\udc00"').encode(),
    _HEAD.replace('"tag":"t"', '"tag":"t\x7f"').encode(),  # a raw DEL: valid JSON, no escape
    *(_HEAD.replace('"tag":"t"', f'"tag":"t{c}q"').encode() for c in ("\\n", "\\r", "\\t", "\\u007f", "\\u001f")),
    *(_HEAD.replace('"hist":false', f'"hist":false,"units":{u}').encode()
      for u in ('{"t":"' + "x" * 128 + '"}', '{"t":"' + "x" * 129 + '"}', '{"' + "x" * 129 + '":"K"}', '{"t":"r\\npm"}',
                '{"t\\n":"K"}')),
    _HEAD.replace('"gw":"gw-1"', '"gw":"gw\\u002d1"').encode(),  # an escaped slug
    (" \n" + _HEAD + " \t").encode(),
    (_HEAD + "x").encode(),
    _HEAD.encode()[:-1],
    b"[]",
    b'{"v":1,"samples":' + b"[" * 5000 + b"]" * 5000 + b"}",
    _HEAD.encode().replace(b'"t"', b'"\xff"'),  # not UTF-8
    "\ufeff".encode() + _HEAD.encode(),  # a byte-order mark
]  # fmt: skip


def test_msgspec_takes_the_well_formed_message_and_leaves_the_rest() -> None:
    """The fast path is taken (a silent fallback would pass the tests above and lose the speed), and it
    answers only when the careful path would give the same message."""
    well_formed = MSGSPEC_EDGES[0]
    assert msgspec_decode(well_formed) == reference_decode_data(well_formed)
    assert msgspec_decode(well_formed.replace(b'"hist":false', b'"hist":false,"units":{"t":"kW"}')) is not None
    taken = 0
    for data in MSGSPEC_EDGES:
        fast = msgspec_decode(data)
        if fast is not None:
            taken += 1
            assert fast == reference_decode_data(data), data
    assert taken >= 10


def test_the_fast_decoder_equals_the_reference_on_chosen_payloads() -> None:
    sample = '{"tag":"%s","v":1.5,"ts":1700000000000,"q":"good"}'
    head = '{"v":1,"gw":"gw-1","dev":"dev-1","seq":1,"samples":[%s],"hist":false}'
    payloads = [
        (head % (sample % "speed")).encode(),
        (head % (sample % "a\\u0000b")).encode(),  # an escaped NUL: the payload is ASCII
        (head % (sample % "a\\ud800")).encode(),  # an escaped lone surrogate
        (head % (sample % "\\ud83d\\ude00")).encode(),  # an escaped pair: fine
        (head % (sample % "a")).encode().replace(b'"a"', b'"\xed\xa0\x80"'),  # a raw UTF-8 surrogate
        (head % (sample % "温度")).encode(),
        (head % (sample % "x" * 1)).encode().replace(b"1.5", b"1e400"),  # inf in JSON text: refused by the codec
        (head % (sample % "x")).encode().replace(b'"gw-1"', b'"gw-1\\n"'),
        (head % (sample % "x")).encode().replace(b'"gw-1"', b'"gw\\u0000"'),
        (head % ",".join([sample % f"t{i}" for i in range(50)])).encode(),
    ]
    for data in payloads + MSGSPEC_EDGES:
        expected = outcome(reference_decode_data, data)
        assert outcome(decode_data_fast, data) == expected, data
        assert outcome(careful, data) == expected, data
    msg = decode_data(payloads[0])
    assert msg.samples[0] == ("speed", 1.5, 1_700_000_000_000, "good") and type(msg.samples[0]).__name__ == "Sample"
    assert math.isinf(json.loads(payloads[6])["samples"][0]["v"])
