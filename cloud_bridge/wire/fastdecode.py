"""`decode_data` for the cloud side: the common, well-formed data message decoded by msgspec's compiled JSON
decoder (the cloud extra); anything else by `codec.decode_data`, the careful path, which gives the message
or the precise `WireError`. So the answer is always the careful path's own (`tests/unit/
test_wire_fast_decode.py` holds both to the reference).

Why: the ingester decodes every message, and `json.loads` plus a Python check of every field and sample
cost ≈ 25 µs for a 10-sample message, ≈ 10 µs here (README, Ingester, "Small messages"). The cloud side
imports it; the gateway, which never decodes data, does not (msgspec would add ≈ 4 MB to it).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from cloud_bridge.wire.codec import (
    _BAD_NAME_CHARS,
    _HEX64_PREV,
    _MAX_NAME,
    _MAX_SAMPLES,
    _MAX_UNITS,
    _SLUG,
    EARLIEST_MS,
    INT64_MAX,
    WIRE_VERSION,
    DataMessage,
    Sample,
    WireError,
    _check_units,
    _clean,
)
from cloud_bridge.wire.codec import decode_data as decode_data_checked

# The constraints are the careful path's, in msgspec's terms: a value that meets them passes that path too.
_Slug = Annotated[str, Meta(pattern=_SLUG.pattern)]
_Seq = Annotated[int, Meta(ge=0, le=INT64_MAX)]
_Stamp = Annotated[int, Meta(ge=EARLIEST_MS, le=INT64_MAX)]


class _Sample(Struct, gc=False):
    tag: Annotated[str, Meta(min_length=1, max_length=_MAX_NAME)]
    v: float | int | bool  # strings (and what JSON cannot hold as a double) go the careful way
    ts: _Stamp
    q: Literal["good", "uncertain", "bad"] = "good"


class _Data(Struct, gc=False):
    v: Literal[WIRE_VERSION]  # type: ignore[valid-type]
    gw: _Slug
    dev: _Slug
    seq: _Seq
    samples: Annotated[list[_Sample], Meta(min_length=1, max_length=_MAX_SAMPLES)]
    hist: bool = False
    units: Annotated[dict[str, str], Meta(max_length=_MAX_UNITS)] = {}
    ent: _Slug | UnsetType = UNSET  # present, it must be a slug (null is the careful path's to refuse)
    prev: Annotated[str, Meta(pattern=_HEX64_PREV.pattern)] | None = None


_decoder = msgspec.json.Decoder(_Data)
_new = tuple.__new__


def decode_data(payload: bytes) -> DataMessage:
    """The data message in `payload`, or WireError: `codec.decode_data`'s answer with the cloud's timestamp
    floor (`earliest_ms=EARLIEST_MS`), sooner."""
    msg = decode(payload)
    return msg if msg is not None else decode_data_checked(payload, earliest_ms=EARLIEST_MS)


def decode(payload: bytes) -> DataMessage | None:
    """The data message in `payload` by msgspec, or None when it is not the common well-formed case (samples
    stamped before EARLIEST_MS are not)."""
    try:
        m = _decoder.decode(payload)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
    samples = m.samples
    if not _clean(payload) and any(_BAD_NAME_CHARS.search(s.tag) for s in samples):
        return None  # a control character, NUL or a lone surrogate in a tag: the careful path says which
    if m.units:
        try:
            _check_units(m.units)
        except WireError:
            return None  # the careful path says why
    return DataMessage(
        m.gw,
        m.dev,
        m.seq,
        m.hist,
        tuple([_new(Sample, (s.tag, s.v, s.ts, s.q)) for s in samples]),  # Sample(...) without its __new__
        m.units,
        None if m.ent is UNSET else m.ent,
        None if m.prev is None else bytes.fromhex(m.prev),
    )
