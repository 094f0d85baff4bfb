"""Time helpers every layer shares: the wall clock in epoch milliseconds, one backoff rule, and the
check for timestamps from the future.

`now_ms()` never goes back within a process: it follows the wall clock, forward steps included, but when
the wall clock steps back (an NTP correction, an operator, a dead RTC battery at boot followed by a sync)
it runs on from a monotonic anchor at half speed until the wall clock catches up (a slew, as NTP does it).
So the gateway's events and seqs keep their order, and its timestamps meet the true time again after
twice the step.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

# 2000-01-01 UTC: no reading's, message's or period's time is earlier (a PLC or a PC whose clock was never set
# says 1970, 1984 or 1994; VictoriaMetrics takes a line-protocol timestamp of 0 for "now")
EARLIEST_MS = 946_684_800_000
DEFAULT_MAX_FUTURE_SKEW_MS = 300_000  # a timestamp further ahead of the receiver's clock is from the future


class Clock:
    """Epoch milliseconds that never decrease (see the module docstring); clocks injectable for tests."""

    def __init__(
        self, wall_ns: Callable[[], int] = time.time_ns, monotonic_ns: Callable[[], int] = time.monotonic_ns
    ) -> None:
        self._wall_ns = wall_ns
        self._mono_ns = monotonic_ns
        self._lock = threading.Lock()
        self._last = wall_ns() / 1e6
        self._mono = monotonic_ns()
        self.stepped_back = 0  # times the wall clock stepped back behind this clock
        self._slewing = False

    def now_ms(self) -> int:
        with self._lock:
            wall = self._wall_ns() / 1e6
            mono = self._mono_ns()
            elapsed = (mono - self._mono) / 1e6
            self._mono = mono
            if wall >= self._last:
                self._last, self._slewing = wall, False
            else:
                if not self._slewing and wall < self._last - 1:  # a step, not the rounding of two reads
                    self.stepped_back += 1
                    self._slewing = True
                self._last += elapsed / 2
            return int(self._last)


_CLOCK = Clock()


def now_ms() -> int:
    """The wall clock as UTC epoch milliseconds (the wire's timestamps); never decreasing in a process."""
    return _CLOCK.now_ms()


def clock_problem(now: int) -> str | None:
    """Why a wall clock reading `now` (epoch ms) cannot stamp evidence, or None: before 2000 it was never set
    (a PC whose RTC battery is dead reads 1970 until NTP sets it), and the cloud refuses such timestamps."""
    if now >= EARLIEST_MS:
        return None
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(max(now, 0) / 1000))
    return (
        f"the system clock reads {when}: set the time (NTP, or timedatectl set-time); the cloud refuses "
        "readings stamped before 2000"
    )


def is_future(ts_ms: int, now: int, max_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS) -> bool:
    """A timestamp more than `max_skew_ms` ahead of the receiver's clock (`now`)."""
    return ts_ms > now + max_skew_ms


def backoff_delay(attempt: int, *, base: float = 1.0, cap: float = 30.0, jitter: float = 0.0) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, …): `base` doubling up to `cap`, spread by
    ± `jitter` (a fraction) so many gateways or ingesters do not retry in step."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    if jitter:
        delay *= 1 + random.uniform(-jitter, jitter)
    return float(delay)
