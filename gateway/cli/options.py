"""Option types for the command line: every number bounded before a command runs (argparse then names
the option and says why, exit 2), never a traceback later in the command."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from edge_config.listen import split_listen


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number in low…high (argparse says which option and why otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bound = f"at least {low:,}" if high is None else f"{low:,}…{high:,}"
            raise argparse.ArgumentTypeError(f"{value:,} is out of range: {bound}")
        return value

    return parse


def positive(*, zero: bool = False) -> Callable[[str], float]:
    """A finite number above 0 (or 0 too when `zero`: "none"), such as seconds or a rate."""

    def parse(text: str) -> float:
        value = _finite(text)
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"{text} must be {'0 or more' if zero else 'more than 0'}")
        return value

    return parse


def share(text: str) -> float:
    """A share of tags or a chance: 0…1."""
    value = _finite(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share: 0…1")
    return value


def shares(text: str) -> str:
    """A comma-separated list of shares (0…1), kept as written."""
    _items(text, share)
    return text


def counts(text: str) -> str:
    """A comma-separated list of counts (at least 1), kept as written."""
    _items(text, whole(1))
    return text


def _items(text: str, parse: Callable[[str], object]) -> None:
    items = text.split(",")
    if len(items) > 100:
        raise argparse.ArgumentTypeError("at most 100 values")
    for item in items:
        parse(item.strip())


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def listen(text: str) -> str:
    """A listen address, HOST:PORT (port 1…65535), kept as written."""
    try:
        split_listen(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text
