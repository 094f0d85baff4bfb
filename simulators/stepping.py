"""Process models advanced in small steps of simulated time."""

from __future__ import annotations


class SteppedModel:
    """`step(now)` advances the model to `now` in steps of at most `MAX_DT` seconds (`_advance(dt)`);
    the first call only sets the clock."""

    MAX_DT = 1.0
    _t: float | None = None

    def step(self, now: float) -> None:
        if self._t is None:
            self._t = now
            return
        while now > self._t:
            dt = min(self.MAX_DT, now - self._t)
            self._advance(dt)
            self._t += dt

    def _advance(self, dt: float) -> None:
        raise NotImplementedError
