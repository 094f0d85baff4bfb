"""OPC UA values → `Reading`s: StatusCode → quality, source timestamp (server timestamp as fallback),
and every built-in type normalized to what the wire carries (bool, int, float, str).

Pure functions, no I/O. Arrays and structures become compact JSON text; a value the wire cannot carry
(NaN, infinity, text over 4096 characters) becomes a bad reading that says why.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from asyncua import ua
from asyncua.ua import status_codes

from drivers.base import Quality, RawValue, Reading
from edge_config.timing import EARLIEST_MS

MAX_TEXT = 4096  # longest string the wire contract accepts
_FLOAT = ua.VariantType.Float
_EPOCH_MIN = datetime(1601, 1, 2, tzinfo=timezone.utc)  # OPC UA "no timestamp" is 1601-01-01


class NotRepresentable(ValueError):
    """A value the wire cannot carry."""


def quality_of(code: int) -> Quality:
    """StatusCode severity (top two bits): 00 good, 01 uncertain, 10/11 bad."""
    severity = (code >> 30) & 0b11
    if severity == 0:
        return "good"
    return "uncertain" if severity == 1 else "bad"


def status_name(code: int) -> str:
    """`BadNodeIdUnknown (0x80340000)`; the low 16 info bits are ignored for the name."""
    name, _doc = status_codes.get_name_and_doc(code & 0xFFFF0000)
    return f"{name} (0x{code:08X})"


def epoch_ms(dt: datetime | None) -> int | None:
    """UTC epoch milliseconds, or None for a missing or 'null' (1601) timestamp, and for one before 2000
    (`EARLIEST_MS`: a server or PLC whose clock was never set; the reading takes the next time there is)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    if dt < _EPOCH_MIN:
        return None
    ms = int(dt.timestamp() * 1000)
    return ms if ms >= EARLIEST_MS else None


def _json_safe(value: Any, is_float32: bool = False) -> Any:
    """An element of an array or a field of a structure, as JSON-able data."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotRepresentable("not a finite number")
        return float(f"{value:.7g}") if is_float32 else value
    if isinstance(value, Enum):
        return value.value if isinstance(value.value, int | str) else value.name
    if isinstance(value, int):
        return int(value)
    if isinstance(value, list | tuple):
        return [_json_safe(v, is_float32) for v in value]
    if isinstance(value, ua.Variant):
        return _json_safe(value.Value, value.VariantType == _FLOAT)
    if isinstance(value, ua.DataValue):
        return _json_safe(value.Value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime):
        return iso_time(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, ua.NodeId | ua.QualifiedName):
        return value.to_string()
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    if isinstance(value, ua.StatusCode):
        return int(value.value)
    if isinstance(value, ua.XmlElement):
        return value.Value or ""
    if isinstance(value, ua.ExtensionObject):
        body = base64.b64encode(value.Body or b"").decode("ascii")
        return {"TypeId": value.TypeId.to_string(), "Body": body}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json_safe(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "Encoding"}
    return str(value)


def iso_time(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_raw(value: Any, variant_type: ua.VariantType | int | None = None) -> RawValue:
    """Normalize a decoded Variant value to bool, int, float or str (None for a Null variant).

    Float (32-bit) keeps about 7 significant digits; arrays, matrices and structures become compact
    JSON text; DateTime becomes ISO 8601 UTC text; ByteString base64; NodeId/QualifiedName their
    standard string form; LocalizedText its text; StatusCode its numeric code.
    Raises NotRepresentable for NaN/infinity or text longer than the wire allows.
    """
    t = type(value)
    if t is float:  # the hot path: Double and Float scalars
        if not math.isfinite(value):
            raise NotRepresentable("not a finite number")
        return float(f"{value:.7g}") if variant_type == _FLOAT else value
    if t is bool or t is int or value is None:
        return value
    if t is str:
        text: str = value
    elif isinstance(value, list | tuple | dict) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        safe = _json_safe(value, variant_type == _FLOAT)
        if not isinstance(safe, list | dict):
            return _scalar(safe)
        text = json.dumps(safe, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    else:
        return _scalar(_json_safe(value, variant_type == _FLOAT))
    if len(text) > MAX_TEXT:
        raise NotRepresentable(f"value too long for the wire ({len(text)} > {MAX_TEXT} characters)")
    return text


def _scalar(safe: Any) -> RawValue:
    if isinstance(safe, dict | list):
        text = json.dumps(safe, separators=(",", ":"), ensure_ascii=False)
        if len(text) > MAX_TEXT:
            raise NotRepresentable(f"value too long for the wire ({len(text)} > {MAX_TEXT} characters)")
        return text
    if isinstance(safe, str) and len(safe) > MAX_TEXT:
        raise NotRepresentable(f"value too long for the wire ({len(safe)} > {MAX_TEXT} characters)")
    return safe


def reading_from(tag: str, dv: ua.DataValue, now_ms: int) -> Reading:
    """One Reading from a DataValue: value, quality from the StatusCode, source timestamp kept."""
    code = dv.StatusCode.value if dv.StatusCode is not None else 0
    ts = epoch_ms(dv.SourceTimestamp) or epoch_ms(dv.ServerTimestamp) or now_ms
    variant = dv.Value
    if variant is None:
        return reading_of(tag, None, None, code, ts)
    return reading_of(tag, variant.Value, variant.VariantType, code, ts)


def reading_of(tag: str, raw: Any, variant_type: ua.VariantType | int | None, code: int, ts: int) -> Reading:
    """One Reading from a decoded value, its variant type, its StatusCode and its timestamp (epoch ms)."""
    quality = quality_of(code)
    try:
        value = to_raw(raw, variant_type) if variant_type is not None else None
    except NotRepresentable as e:
        return Reading(tag, None, ts, "bad", str(e))
    if quality == "good":
        return Reading(tag, value, ts)
    if quality == "bad":
        value = None  # a bad value is to be ignored (OPC 10000-4 §7.7.1)
    return Reading(tag, value, ts, quality, status_name(code))


def bad_reading(tag: str, code: int, now_ms: int) -> Reading:
    """A reading for a node the server refused (unknown node, access denied, ...)."""
    return Reading(tag, None, now_ms, "bad", status_name(code))
