"""PyYAML's safe loader, building the common nodes of a large tag map at half the cost.

A 40,000-tag config (2.9 MB of YAML) took 1.05 s to load with libyaml's parser and PyYAML's safe constructor,
the largest part of the agent's start-up: per scalar, the implicit-tag resolver ran its regular expressions
and the constructor dispatched through several Python calls and a memo of every node. `FastSafeLoader` is
the same loader with two shortcuts, each falling back to PyYAML's own code wherever it does not apply:

- `resolve`: a plain scalar's tag depends only on its text, so the safe resolver's answer is remembered for
  the texts a tag map repeats (field names, types, units), up to `RESOLVED_KEPT` of them, for one document;
- `construct_document`: strings, plain mappings (scalar keys, no merge key `<<` nor `=`) and plain
  sequences are built directly; any other node (numbers, booleans, null, timestamps, `!!set`, merge keys, a
  non-scalar key) is built by PyYAML's constructor, so it gives the same values and raises the same errors.

The data is equal to `yaml.load(text, Loader=CSafeLoader)` (`tests/unit/test_yamlfast.py` holds it against
that on random documents); an anchored node used twice is one object, as there. 40,000 tags: 0.52–0.60 s.

`BoundedLoader` is what the product loads configs with: `FastSafeLoader` refusing, before anything is built,
a document whose aliases would repeat more than it could hold once written out (an "alias bomb": ten levels of
ten aliases each are 10¹⁰ nodes from a few hundred bytes, which the validation or the JSON of a large config
would write out) or that holds itself through an alias (a cycle, which no config means and which the
validation would follow until the stack ran out). Documents without `*` skip the check (no alias without it).

This module imports only PyYAML: a child process loads it by path, without the config models.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML was built with it

STR = "tag:yaml.org,2002:str"
MAP = "tag:yaml.org,2002:map"
SEQ = "tag:yaml.org,2002:seq"
MERGE = "tag:yaml.org,2002:merge"
VALUE = "tag:yaml.org,2002:value"  # a plain `=` key, which PyYAML's mapping reads as the string "="
RESOLVED_KEPT = 8192  # distinct scalar texts whose resolved tag is remembered (a few hundred KB at most)
# the nodes a document may stand for with its aliases written out: this many, or 4 × the nodes it has
EXPANDED_NODES = 1_000_000


class FastSafeLoader(_Base):
    """`yaml.CSafeLoader` (or `SafeLoader`) with the shortcuts of the module's doc."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        # this document's remembered tags: let go with the loader (kept across documents, the unique texts
        # of a large tag map stayed in the agent's heap: +2.5 MB at 10,000 OPC UA nodes)
        self._resolved: dict[tuple[str, Any], str] = {}

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> Any:
        if kind is not ScalarNode or self.yaml_path_resolvers:
            return super().resolve(kind, value, implicit)
        key = (value, implicit)
        tag = self._resolved.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(self._resolved) < RESOLVED_KEPT:
                self._resolved[key] = tag
        return tag

    def construct_document(self, node: Node) -> Any:
        built: dict[int, Any] = {}  # id(node) -> its object: an alias is the same object, a cycle ends
        slow = self.construct_object

        def build(n: Node) -> Any:
            cls = n.__class__
            if cls is ScalarNode:
                return n.value if n.tag == STR else slow(n, deep=True)
            done = built.get(id(n))
            if done is not None:
                return done
            if cls is MappingNode and n.tag == MAP:
                pairs = n.value
                if all(k.__class__ is ScalarNode and k.tag not in (MERGE, VALUE) for k, _ in pairs):
                    mapping: dict[Any, Any] = {}
                    built[id(n)] = mapping
                    for k, v in pairs:
                        mapping[build(k)] = build(v)  # a scalar key: str, number, bool, None, date (hashable)
                    return mapping
            elif cls is SequenceNode and n.tag == SEQ:
                items: list[Any] = []
                built[id(n)] = items
                items.extend(build(v) for v in n.value)
                return items
            # PyYAML builds it (and remembers it: a merge rewrites the node, an alias must not build it again)
            done = built[id(n)] = slow(n, deep=True)
            return done

        try:
            return build(node)
        finally:
            self.constructed_objects: dict[Node, Any] = {}  # as PyYAML's construct_document leaves them
            self.recursive_objects: dict[Node, None] = {}
            self.state_generators: list[Any] = []


class AliasError(ConstructorError):
    """A document whose aliases repeat more than `EXPANDED_NODES`, or that holds itself through one."""


def _children(n: Node) -> list[Node]:
    if n.__class__ is MappingNode:
        return [x for pair in n.value for x in pair]
    if n.__class__ is SequenceNode:
        return list(n.value)
    return []


def check_aliases(root: Node) -> None:
    """Raise AliasError if the node graph under `root` has a cycle or, with every alias written out, more than
    max(EXPANDED_NODES, 4 × its distinct nodes) nodes; pointing at the repeated node that weighs most."""
    size: dict[int, int] = {}  # id(node) → the nodes it stands for, aliases written out
    uses: dict[int, int] = {}  # id(node) → times it is held (more than once: an anchor used by aliases)
    nodes: dict[int, Node] = {}
    path: set[int] = set()  # the nodes entered and not yet left: the current node's ancestors
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        n, leaving = stack.pop()
        i = id(n)
        if leaving:
            path.discard(i)
            size[i] = 1 + sum(size[id(c)] for c in _children(n))
            continue
        if i in size:
            continue
        if i in path:
            raise AliasError(None, None, "an alias refers to a node it is inside of (a cycle)", n.start_mark)
        path.add(i)
        nodes[i] = n
        stack.append((n, True))
        for c in _children(n):
            uses[id(c)] = uses.get(id(c), 0) + 1
            if id(c) not in size:
                stack.append((c, False))
    total, distinct = size[id(root)], len(size)
    limit = max(EXPANDED_NODES, 4 * distinct)
    if total > limit:
        heaviest = max((k for k, n in uses.items() if n > 1), key=lambda k: (uses[k] - 1) * size[k])
        raise AliasError(
            None,
            None,
            f"its aliases repeat nodes to {total:,} in all from the {distinct:,} written (at most {limit:,}): "
            "the node here is repeated most; write the values out, or nest fewer aliases",
            nodes[heaviest].start_mark,
        )


class BoundedLoader(FastSafeLoader):
    """`FastSafeLoader` that refuses alias bombs and cycles (`check_aliases`) before building anything."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._may_alias = "*" in stream if isinstance(stream, str) else True

    def construct_document(self, node: Node) -> Any:
        if self._may_alias:
            check_aliases(node)
        return super().construct_document(node)
