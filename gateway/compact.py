"""The config in force, kept small: per-tag models are dropped once the run-time state is built.

A validated tag model weighs about 1 KB, so 100,000 tags kept as pydantic objects would be most of the
agent's memory. `CompactConfig` keeps the config's models without the devices' tag lists (but the tags the
OEE tracking reads), each device's tags as compressed canonical JSON, and the hashes that metadata and hot
reload need; `device()` and `full()` validate the tags again on demand (a driver started again, the
tag-map editor, a reload).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter

from drivers.base import without_tags
from edge_config.models import GatewayConfig


def canonical_json(data: Any) -> bytes:
    """JSON with sorted keys and no spaces: the same bytes for the same data."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def device_digest(device: Any) -> str:
    """SHA-256 (hex) of a validated device's canonical JSON: equal digests, equal devices (hot reload)."""
    return hashlib.sha256(canonical_json(device.model_dump(mode="json"))).hexdigest()


def oee_tag_names(device: Any) -> tuple[str, ...]:
    """The tags a device's OEE settings name (the runtime keeps these as models: the trackers read them)."""
    oee = device.oee
    if oee is None:
        return ()
    names = (oee.state_tag, oee.total_count_tag, oee.good_count_tag, oee.reject_count_tag)
    return tuple(n for n in names if n)


@cache
def _tags_adapter(device_class: type[BaseModel]) -> TypeAdapter[list[Any]]:
    annotation: Any = device_class.model_fields["tags"].annotation  # e.g. list[ModbusTag]
    return TypeAdapter(annotation)


class CompactConfig:
    """A validated `GatewayConfig` with its tag lists packed (see the module's doc)."""

    def __init__(self, config: GatewayConfig) -> None:
        self.light = config.model_copy(
            update={"devices": [without_tags(d, keep=oee_tag_names(d)) for d in config.devices]}
        )
        self._tags: dict[str, bytes] = {}
        self.digests: dict[str, str] = {}  # device id -> device_digest of the full device
        for d in config.devices:
            self._tags[d.id] = zlib.compress(canonical_json([t.model_dump(mode="json") for t in d.tags]), 6)
            self.digests[d.id] = device_digest(d)

    def tag_count(self, dev_id: str) -> int:
        return len(json.loads(zlib.decompress(self._tags[dev_id])))

    def device(self, dev_id: str) -> Any:
        """The device's full model, tags validated again from their packed JSON."""
        light = next(d for d in self.light.devices if d.id == dev_id)
        tags = _tags_adapter(type(light)).validate_json(zlib.decompress(self._tags[dev_id]))
        return light.model_copy(update={"tags": tags})

    def devices(self) -> Sequence[Any]:
        return [self.device(d.id) for d in self.light.devices]

    def full(self) -> GatewayConfig:
        """The whole config in force as validated models (equal to the one this was made from)."""
        return self.light.model_copy(update={"devices": list(self.devices())})
