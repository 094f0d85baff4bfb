"""Time helpers every layer shares: the wall clock in epoch milliseconds and one backoff rule."""

from __future__ import annotations

import random
import time


def now_ms() -> int:
    """The wall clock as UTC epoch milliseconds (the wire's timestamps)."""
    return time.time_ns() // 1_000_000


def backoff_delay(attempt: int, *, base: float = 1.0, cap: float = 30.0, jitter: float = 0.0) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, …): `base` doubling up to `cap`, spread by
    ± `jitter` (a fraction) so many gateways or ingesters do not retry in step."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    if jitter:
        delay *= 1 + random.uniform(-jitter, jitter)
    return float(delay)
