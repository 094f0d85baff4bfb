"""The overview's day summaries computed ahead of the requests: `edgegw serve` fills the closed days in the
background, so the first overview of a period sums rows instead of computing them.

`fill_days` finds, per enterprise, the closed local days of the last `evidence.fill_days` days that lack a
device's row (never computed, or dropped by the ledger writer on late data) and computes them with the
overview's own `compute_days`, a few consecutive days at a time. Rows are upserts: several `edgegw serve`
processes filling at once compute some days twice and store the same figures. `DayFiller` runs it in a thread
at start, every `evidence.fill_every_s` and just after each local midnight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select

from cloud_bridge.cloud.evidence.overview import _metas, calendar_key, compute_days, local_days
from cloud_bridge.cloud.ledger import days as dd
from cloud_bridge.cloud.ledger import schema
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.metrics.calendar import local_date, local_ms
from edge_config.models import CloudConfig

log = logging.getLogger(__name__)

CHUNK_DAYS = 31  # days computed from one read of an enterprise's ledger (bounds the memory of a fill step)
AFTER_MIDNIGHT_MS = 60_000  # the fill after a local midnight waits this long (the day's last messages)

_d = schema.device_days.c


@dataclass(frozen=True, slots=True)
class FillReport:
    enterprises: int  # enterprises looked at
    chunks: int  # runs of consecutive days computed
    rows: int  # day rows computed and stored
    seconds: float


def closed_days(now_ms: int, tz: str, back: int) -> list[tuple[int, int]]:
    """The closed local days of the last `back` days before today (pure)."""
    today = local_date(now_ms, tz)
    return local_days(local_ms(today - timedelta(days=back), 0, tz), local_ms(today, 0, tz), tz)


def runs(days: Sequence[tuple[int, int]], most: int) -> list[list[tuple[int, int]]]:
    """The days (sorted) in runs of consecutive days, at most `most` each (pure)."""
    out: list[list[tuple[int, int]]] = []
    for d in days:
        if out and out[-1][-1][1] == d[0] and len(out[-1]) < most:
            out[-1].append(d)
        else:
            out.append([d])
    return out


def next_wake(now_ms: int, every_s: int, zones: Sequence[str]) -> int:
    """When the next fill runs: after `every_s`, or just after the next local midnight if sooner (pure)."""
    midnights = [local_ms(local_date(now_ms, tz) + timedelta(days=1), 0, tz) + AFTER_MIDNIGHT_MS for tz in zones]
    return min([now_ms + every_s * 1000, *midnights])


def _counts(store: EvidenceStore, since: int) -> dict[tuple[str, str, int], int]:
    """(ent, calendar, day) → how many device rows it holds, for the days from `since` on."""
    q = select(_d.ent, _d.calendar, _d.day, func.count().label("n")).where(_d.day >= since)
    return {
        (r["ent"], r["calendar"], int(r["day"])): int(r["n"])
        for r in store.db.rows(q.group_by(_d.ent, _d.calendar, _d.day))
    }


def fill_days(
    store: EvidenceStore,
    config: CloudConfig,
    ents: Sequence[str],
    *,
    back: int,
    now_ms: int | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> FillReport:
    """Compute the missing day summaries of `ents`' closed days of the last `back` days, as the overview would
    (enterprises the overview computes in full, a completeness rule, are skipped). `stop` ends it early."""
    t0 = time.perf_counter()
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    if back <= 0 or not ents:
        return FillReport(0, 0, 0, 0.0)
    all_devices = dd.devices_by_enterprise(store.db)
    bodies = dd.meta_bodies(store.db)
    plans = {}
    for ent in ents:
        tz, shifts = config.calendar(ent)
        if config.networked_rule(ent)[0].min_completeness is None:
            plans[ent] = (tz, calendar_key(tz, shifts), closed_days(now, tz, back))
    since = min((p[2][0][0] for p in plans.values() if p[2]), default=now)
    have = _counts(store, since)
    chunks = rows = 0
    for ent, (_tz, cal, days) in plans.items():
        n = len(all_devices.get(ent, set()) | set(_metas(bodies.get(ent, []))))
        missing = [d for d in days if n and have.get((ent, cal, d[0]), 0) < n]
        for run in runs(missing, CHUNK_DAYS):
            if stop():
                return FillReport(len(plans), chunks, rows, time.perf_counter() - t0)
            computed = compute_days(store, config, ent, run, now_ms=now)
            dd.write_days(store.db, computed)
            chunks += 1
            rows += len(computed)
    return FillReport(len(plans), chunks, rows, time.perf_counter() - t0)


def enterprises(store: EvidenceStore, config: CloudConfig) -> list[str]:
    """Every enterprise the overview may show: configured or in the ledger."""
    return sorted({e.id for e in config.enterprises} | set(store.enterprises()))


class DayFiller:
    """`fill_days` in a daemon thread: at start, then every `fill_every_s` and after each local midnight."""

    def __init__(self, store: EvidenceStore, config: CloudConfig, clock: Callable[[], int]) -> None:
        self.store, self.config, self.clock = store, config, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgegw-day-fill", daemon=True)
        self.last: FillReport | None = None
        self.runs = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def run_once(self) -> FillReport:
        ev = self.config.evidence
        report = fill_days(
            self.store,
            self.config,
            enterprises(self.store, self.config),
            back=ev.fill_days,
            now_ms=self.clock(),
            stop=self._stop.is_set,
        )
        self.last, self.runs = report, self.runs + 1
        log.info(
            "day fill: %d enterprises, %d day rows computed in %d runs of days, %.1f s",
            report.enterprises, report.rows, report.chunks, report.seconds,
        )  # fmt: skip
        return report

    def _run(self) -> None:
        zones = sorted({self.config.timezone, *(e.timezone for e in self.config.enterprises if e.timezone)})
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a failed fill only leaves the work to the requests; try again later
                log.exception("day fill failed")
            now = self.clock()
            wait = next_wake(now, self.config.evidence.fill_every_s, zones) - now
            self._stop.wait(max(1.0, wait / 1000))
