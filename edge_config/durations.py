"""Durations written the way engineers write them: `500ms`, `1s`, `2m`, `1h`, or a bare number of seconds."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

MAX_SECONDS = 87_600 * 3600.0  # ten years: longer is a mistake, and past what timers take
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)?\s*$")


def parse_duration(value: Any) -> float:
    """Return seconds as a float; raise ValueError on anything else."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use 500ms, 1s, 2m)")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds):  # YAML's .nan and .inf
            raise ValueError(f"{value!r} is not a duration (use 500ms, 1s, 2m)")
    else:
        m = _PATTERN.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a duration (use 500ms, 1s, 2m)")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds < 0:
        raise ValueError(f"{value!r}: a duration cannot be negative")
    if not seconds <= MAX_SECONDS:  # NaN and infinity too
        raise ValueError(f"{value!r}: a duration of at most 10 years (87600h)")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 1 and seconds * 1000 == int(seconds * 1000):
        return f"{int(seconds * 1000)}ms"
    return f"{seconds:.15g}s"  # every digit: 2592000s, not 2.592e+06s (which would not parse back)


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|min|m|h)?$"},
                {"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
            ],
            "description": "duration: 500ms, 1s, 2m, 1h, or seconds as a number",
        }
    ),
]
