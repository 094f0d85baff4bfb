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

This module imports only PyYAML: a child process loads it by path, without the config models.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML was built with it

STR = "tag:yaml.org,2002:str"
MAP = "tag:yaml.org,2002:map"
SEQ = "tag:yaml.org,2002:seq"
MERGE = "tag:yaml.org,2002:merge"
VALUE = "tag:yaml.org,2002:value"  # a plain `=` key, which PyYAML's mapping reads as the string "="
RESOLVED_KEPT = 8192  # distinct scalar texts whose resolved tag is remembered (a few hundred KB at most)


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
