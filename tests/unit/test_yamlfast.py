"""`FastSafeLoader` against the PyYAML loader it is built on (the reference: libyaml's `CSafeLoader`, else
`SafeLoader`): the same data of the same types, the same errors with the same messages."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_config import yamlfast
from edge_config.yamlfast import FastSafeLoader

REFERENCE = yamlfast._Base


def same(a: Any, b: Any) -> bool:
    """Equal data of equal types (1 == 1.0 == True in Python; YAML tells them apart), NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(k, kb) and same(a[k], b[kb]) for k, kb in zip(a, b, strict=True))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, set):
        return a == b
    return bool(a == b)


def outcome(text: str, loader: Any) -> tuple[str, Any]:
    try:
        return ("ok", yaml.load(text, Loader=loader))
    except yaml.YAMLError as e:
        return ("error", (type(e).__name__, str(e)))
    except RecursionError:
        return ("error", "recursion")


def assert_same(text: str) -> None:
    got, want = outcome(text, FastSafeLoader), outcome(text, REFERENCE)
    assert got[0] == want[0], (text, got, want)
    if got[0] == "ok":
        assert same(got[1], want[1]), (text, got[1], want[1])
    else:
        assert got[1] == want[1]


# Plain scalars that the YAML 1.1 resolver reads as numbers, booleans, null, timestamps... and the strings
# that only look like them: the resolved tag is remembered per text, so every kind must come out right.
TRICKY = [
    "yes", "No", "ON", "off", "y", "n", "true", "False", "~", "null", "Null", "", "0", "-0", "+12", "012", "0o12",
    "0x1F", "0b101", "1_000", "1:20", "190:20:30", "1.5", "-.5", "1e3", "1.0e+3", ".inf", "-.Inf", ".NaN", ".nan",
    "2001-12-14", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10", "=", "<<", "hr:40001", "r00001",
    "uint16", "60s", "1h", "模拟量", "-", "0.", "._", "+.inf", "1__0", "0x", "12e", "3:25:45", "1,000",
]  # fmt: skip


@pytest.mark.parametrize("text", TRICKY)
def test_each_tricky_scalar_resolves_as_pyyaml_does_as_value_key_and_item(text: str) -> None:
    for doc in (f"a: {text}\n", f"{text}: a\n", f"- {text}\n- [{text}, {text}]\n", f"{text}\n", f"a: '{text}'\n"):
        assert_same(doc)
        assert_same(doc)  # a second time: now from what the resolver remembered


scalar_text = st.text(alphabet="0123456789.+-_:eExXoObB~yYnNtTfFaAlLsS ", max_size=8)


@settings(max_examples=400, deadline=None)
@given(st.lists(scalar_text, min_size=1, max_size=6))
def test_random_plain_scalars_load_as_pyyaml_loads_them(texts: list[str]) -> None:
    assert_same("".join(f"k{i}: {t}\n" for i, t in enumerate(texts)))
    assert_same("".join(f"- {t}\n" for t in texts))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(TRICKY),
    st.dates(),
)
keys = st.one_of(st.text(max_size=8), st.integers(-5, 5), st.booleans(), st.none(), st.sampled_from(TRICKY))
data = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(data, st.sampled_from([False, True, None]), st.booleans())
def test_random_documents_load_as_pyyaml_loads_them(value: Any, flow: bool | None, canonical: bool) -> None:
    assert_same(yaml.safe_dump(value, default_flow_style=flow, canonical=canonical, allow_unicode=True))


ANCHORS = """
base: &b {unit: kWh, type: float32}
tags:
  - &t1 {name: a, <<: *b}
  - {name: b, <<: [*b, {scale: 2}]}
  - *t1
list: &l [1, 2]
again: *l
self: &s [*l]
"""


def test_anchors_aliases_and_merge_keys_as_pyyaml() -> None:
    assert_same(ANCHORS)
    doc = yaml.load(ANCHORS, Loader=FastSafeLoader)
    assert doc["list"] is doc["again"]  # an alias is the same object, as in PyYAML
    assert doc["tags"][0] is doc["tags"][2]
    assert doc["tags"][1] == {"name": "b", "unit": "kWh", "type": "float32", "scale": 2}


def test_a_recursive_document_ends_as_pyyaml_s_does() -> None:
    doc = yaml.load("&a [1, *a]\n", Loader=FastSafeLoader)
    assert doc[1] is doc
    doc = yaml.load("&m {k: *m}\n", Loader=FastSafeLoader)
    assert doc["k"] is doc


@pytest.mark.parametrize(
    "text",
    [
        "!!set {a, b}\n",
        "!!omap [a: 1, b: 2]\n",
        "!!pairs [a: 1, a: 2]\n",
        "!!binary aGVsbG8=\n",
        "when: 2001-12-14t21:59:43.10-05:00\n",
        "{[1, 2]: x}\n",  # an unhashable key: PyYAML's error
        "{{a: 1}: x}\n",
        "a: 1\na: 2\n",  # a duplicate key: the last one, as PyYAML
        "!!python/object:os.system x\n",  # not safe: refused as PyYAML's safe loader refuses it
        "!custom x\n",
        "a: [1, 2\n",  # a syntax error
        "a: 1\n---\nb: 2\n",  # two documents
        "",
        "# only a comment\n",
        "? complex\n: key\n",
        "a: !!str 12\nb: !!int '12'\nc: !!float 1\n",
    ],
)
def test_every_other_node_and_error_as_pyyaml(text: str) -> None:
    assert_same(text)


def test_the_values_of_a_tag_map_are_pyyaml_s() -> None:
    text = "".join(
        f"- {{name: r{i:05d}, address: 'hr:{i}', type: uint16, scale: 0.1, deadband: {i % 3}, on: yes}}\n"
        for i in range(3000)
    )
    assert_same(text)
    first = yaml.load(text, Loader=FastSafeLoader)[0]
    assert first == {"name": "r00000", "address": "hr:0", "type": "uint16", "scale": 0.1, "deadband": 0, True: True}
    assert yaml.load("d: 2024-01-02\n", Loader=FastSafeLoader) == {"d": dt.date(2024, 1, 2)}


def test_the_resolved_tags_it_remembers_are_bounded_and_let_go_with_the_document() -> None:
    loader = FastSafeLoader("".join(f"- v{i}\n" for i in range(yamlfast.RESOLVED_KEPT + 500)))
    try:
        assert len(loader.get_single_data()) == yamlfast.RESOLVED_KEPT + 500
        assert len(loader._resolved) == yamlfast.RESOLVED_KEPT
    finally:
        loader.dispose()
    assert FastSafeLoader("a: 1\n")._resolved == {}  # nothing kept from another document


def test_the_bounded_loader_loads_what_the_fast_one_does() -> None:
    for text in (ANCHORS, "a: 1\n", "".join(f"- {{n: {i}, <<: *d}}\n" for i in range(3)).join(["- &d {u: kWh}\n", ""])):
        assert same(yaml.load(text, Loader=yamlfast.BoundedLoader), yaml.load(text, Loader=FastSafeLoader))


@pytest.mark.parametrize("levels", [7, 12])
def test_the_bounded_loader_refuses_an_alias_bomb(levels: int) -> None:
    text = "l0: &l0 [a, b, c, d, e, f, g, h, i, j]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, levels)
    )
    with pytest.raises(yamlfast.AliasError) as info:
        yaml.load(text, Loader=yamlfast.BoundedLoader)
    assert info.value.problem_mark is not None and info.value.problem_mark.line == levels - 2  # the heaviest anchor
    # the root, and per level its key and its list: 1 + 10 × the level below's (11 for the ten scalars)
    assert f"to {1 + sum(1 + (10 ** (i + 2) - 1) // 9 for i in range(levels)):,} in all" in str(info.value)


def test_the_bounded_loader_allows_up_to_four_times_the_written_nodes() -> None:
    # 300 devices each merging one 5-key default (11 nodes): 1,200 nodes from 300 aliases, well within
    text = "d: &d {a: 1, b: 2, c: 3, e: 4, f: 5}\nl:\n" + "".join(f"  - {{n: {i}, <<: *d}}\n" for i in range(300))
    assert len(yaml.load(text, Loader=yamlfast.BoundedLoader)["l"]) == 300
    root = yaml.compose(text, Loader=FastSafeLoader)
    yamlfast.check_aliases(root)  # no error
    with pytest.raises(yamlfast.AliasError, match="a cycle"):
        yaml.load("&a [1, *a]\n", Loader=yamlfast.BoundedLoader)
