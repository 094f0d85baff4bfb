"""The pilot city's seed: the shipped CSV is what the generator makes, every count in range, the totals."""

from __future__ import annotations

import pytest

from gateway.bench.city_seed import DEVICES, INDUSTRIES, RBE, TAGS, generate, load, parse, to_csv


def test_the_shipped_seed_is_the_generators() -> None:
    assert load() == parse(to_csv(generate()))


def test_counts_in_range_and_totals() -> None:
    seed = load()
    assert len(seed) == 408 and len({e.id for e in seed}) == 408
    assert all(DEVICES[0] <= e.devices <= DEVICES[1] for e in seed)
    assert all(TAGS[0] <= e.tags_per_device <= TAGS[1] for e in seed)
    assert all(RBE[0] <= e.rbe_per_min <= RBE[1] for e in seed)
    assert {e.industry for e in seed} == {k for k, *_ in INDUSTRIES}
    assert sum(e.devices for e in seed) == 10_456
    assert sum(e.tags for e in seed) == 979_074


def test_a_seed_with_other_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="columns must be"):
        parse("id,devices\nent-1,3\n")
