"""`IngestMetrics.store_totals`: the seconds each store's attempts took, as the bench reports them — the sums
of the `edgegw_ingest_store_seconds` histogram, failed attempts included."""

from __future__ import annotations

import time

import pytest

from cloud_bridge.cloud.ingest.metrics import IngestMetrics


def _failing_attempt() -> None:
    time.sleep(0.01)
    raise RuntimeError("down")


def test_store_totals_are_the_histogram_sums() -> None:
    m = IngestMetrics()
    assert m.store_totals() == {}
    m.timed("tsdb", lambda: time.sleep(0.02))
    m.timed("tsdb", lambda: time.sleep(0.01))
    with pytest.raises(RuntimeError):
        m.timed("ledger", _failing_attempt)
    totals = m.store_totals()
    assert set(totals) == {"tsdb", "ledger"}
    assert totals["tsdb"] >= 0.03 and totals["ledger"] >= 0.01
    sums = {s.labels["store"]: s.value for metric in m.store_seconds.collect() for s in metric.samples
            if s.name.endswith("_sum")}  # fmt: skip
    assert totals == sums
