"""The ledger's size (#14): received seqs as ranges, activity per device-hour with a minute mask."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_bridge.cloud.ledger import ranges as rg
from cloud_bridge.cloud.ledger.activity import HOUR_MS, MINUTE_MS, HourRow, minute_bit, within
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.cloud.ledger.writer import Ledger
from cloud_bridge.wire.codec import DataMessage, Sample

seq_lists = st.lists(st.integers(min_value=0, max_value=200), max_size=120)


@given(st.lists(seq_lists, max_size=8))
def test_claiming_batches_gives_the_set_and_each_seq_once(batches: list[list[int]]) -> None:
    held: list[rg.Range] = []
    seen: set[int] = set()
    for batch in batches:
        new, held = rg.claim(held, batch)
        assert set(new) == set(batch) - seen, "new: exactly those not claimed before"
        seen |= set(batch)
        assert held == rg.to_ranges(seen), "the fewest sorted ranges of the set"
        assert rg.size(held) == len(seen)
    assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(held)), "disjoint and not adjacent"
    for s in range(-1, 202):
        assert rg.contains(held, s) == (s in seen)


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 20))))
def test_merge_keeps_the_set(spans: list[tuple[int, int]]) -> None:
    ranges = [(a, a + n) for a, n in spans]
    expected = {s for a, b in ranges for s in range(a, b + 1)}
    assert rg.merge(ranges) == rg.to_ranges(expected)


def _data(seq: int, gw: str = "gw-1") -> DataMessage:
    return DataMessage(gw, "dev-1", seq, False, (Sample("t", float(seq), 1_000 + seq),), {})


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["gw-1", "gw-2"]), st.integers(1, 60)), max_size=150), st.randoms())
def test_the_ledger_records_each_message_once_in_any_arrival_order(
    keys: list[tuple[str, int]], rnd: random.Random
) -> None:
    """Random arrival orders, redeliveries and gaps: the ledger holds the set a plain set would."""
    ledger = Ledger("sqlite:///:memory:")
    try:
        won: list[tuple[str, int]] = []
        i = 0
        while i < len(keys):
            n = rnd.randint(1, 20)
            batch = keys[i : i + n]
            results = ledger.record_batch([("e", _data(s, g)) for g, s in batch])
            won += [k for k, new in zip(batch, results, strict=True) if new]
            i += n
        assert sorted(won) == sorted(set(keys)), "each distinct message new exactly once"
        assert ledger.received_count() == len(set(keys))
        probe = [("e", g, s) for g in ("gw-1", "gw-2") for s in range(62)]
        assert ledger.recorded(probe) == {("e", g, s) for g, s in keys}
        assert all(ledger.is_duplicate("e", g, s) for g, s in keys)
    finally:
        ledger.close()


# ---------------------------------------------------------------- activity hours


_MINUTES = (HOUR_MS + 65_000, HOUR_MS + 10 * MINUTE_MS, HOUR_MS + 30 * MINUTE_MS)  # minutes 1, 10 and 30
ROW = HourRow(
    hour=HOUR_MS,
    samples=7,
    good_samples=6,
    first_ts=HOUR_MS + 65_000,
    last_ts=HOUR_MS + 30 * MINUTE_MS + 5,
    minutes=minute_bit(_MINUTES[0]) | minute_bit(_MINUTES[1]) | minute_bit(_MINUTES[2]),
)


def test_a_period_of_whole_hours_reads_the_row_as_it_is() -> None:
    assert within(ROW, 0, 3 * HOUR_MS) == ROW
    assert within(ROW, HOUR_MS, 2 * HOUR_MS) == ROW
    assert within(ROW, 2 * HOUR_MS, 3 * HOUR_MS) is None


@pytest.mark.parametrize(
    ("start", "end", "first", "last"),
    [
        (HOUR_MS + 5 * MINUTE_MS, 2 * HOUR_MS, HOUR_MS + 10 * MINUTE_MS, HOUR_MS + 30 * MINUTE_MS + 5),  # own last
        (0, HOUR_MS + 20 * MINUTE_MS, HOUR_MS + 65_000, HOUR_MS + 11 * MINUTE_MS - 1),  # own first, minute's end
        (HOUR_MS + 70_000, HOUR_MS + 90_000, HOUR_MS + 70_000, HOUR_MS + 89_999),  # inside minute 1: clipped
    ],
)
def test_an_edge_inside_the_hour_reads_minutes(start: int, end: int, first: int, last: int) -> None:
    got = within(ROW, start, end)
    assert got is not None and (got.samples, got.good_samples, got.first_ts, got.last_ts) == (7, 6, first, last)


def test_an_edge_inside_the_hour_without_samples_inside_reads_nothing() -> None:
    assert within(ROW, HOUR_MS + 31 * MINUTE_MS, 3 * HOUR_MS) is None
    assert within(ROW, HOUR_MS + 2 * MINUTE_MS, HOUR_MS + 10 * MINUTE_MS) is None


def test_the_store_reads_hours_written_by_the_ledger(tmp_path: object) -> None:
    url = "sqlite:///:memory:"
    ledger = Ledger(url)
    try:
        base = 5 * HOUR_MS
        samples = (
            Sample("a", 1, base + 1_000),
            Sample("b", 2, base + 1_000, "bad"),
            Sample("a", 3, base + HOUR_MS + 2),
        )
        assert ledger.record_batch([("e", DataMessage("gw-1", "dev-1", 1, False, samples, {}))]) == [True]
        store = EvidenceStore.__new__(EvidenceStore)
        store.url, store.db = url, ledger.db  # the same in-memory database
        assert store.activity_hours("e", base, base + 2 * HOUR_MS) == [
            {"gw": "gw-1", "dev": "dev-1", "hour": base, "samples": 2, "good_samples": 1,
             "first_ts": base + 1_000, "last_ts": base + 1_000},
            {"gw": "gw-1", "dev": "dev-1", "hour": base + HOUR_MS, "samples": 1, "good_samples": 1,
             "first_ts": base + HOUR_MS + 2, "last_ts": base + HOUR_MS + 2},
        ]  # fmt: skip
        act = store.activity("e", base, base + 2 * HOUR_MS)[("gw-1", "dev-1")]
        assert (act.samples, act.good_samples, act.first_ts, act.last_ts) == (3, 2, base + 1_000, base + HOUR_MS + 2)
        assert store.gateway_last_seen("e") == {"gw-1": base + HOUR_MS + 2}
    finally:
        ledger.close()
