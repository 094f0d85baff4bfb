"""The config in force, kept small: per-tag models are dropped once the run-time state is built.

A validated tag model weighs about 1 KB, so 100,000 tags kept as pydantic objects would be most of the
agent's memory. `CompactConfig` keeps the config's models without the devices' tag lists (but the tags the
OEE tracking reads), each device's tags as compressed canonical JSON, and the hashes that metadata and hot
reload need; `device()` and `full()` validate the tags again on demand (a driver started again, the
tag-map editor, a reload).

The tags are packed in chunks of `CHUNK`, and `streamed()` gives a device whose tag list is validated a
chunk at a time as it is iterated (`StreamedTags`): what the run-time state is built from (the device's
metadata, its channel, its driver), so that a device of 100,000 tags never has every tag's model alive at
once (≈ 1 KB each: the peak that set the agent's memory for a large OPC UA device).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any, overload

from pydantic import BaseModel, TypeAdapter

from drivers.base import without_tags
from edge_config import load_gateway_config
from edge_config.loader import PARSE_ELSEWHERE_BYTES, load_text
from edge_config.models import GatewayConfig
from edge_config.secrets import with_env_secrets
from edge_config.yamlfast import BoundedLoader
from gateway.oee.tracker import canonical_dump, config_hash


def canonical_json(data: Any) -> bytes:
    """JSON with sorted keys and no spaces: the same bytes for the same data."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def device_digest(device: Any) -> str:
    """SHA-256 (hex) of a validated device's canonical JSON: equal digests, equal devices (hot reload)."""
    return hashlib.sha256(canonical_json(device.model_dump(mode="json"))).hexdigest()


def kept_tag_names(device: Any) -> tuple[str, ...]:
    """The tags the light config keeps as models: those the device's OEE settings name (the trackers read
    them), else its first tag (a device has at least one: the light config validates as it is)."""
    oee = device.oee
    names = (oee.state_tag, oee.total_count_tag, oee.good_count_tag, oee.reject_count_tag) if oee else ()
    kept = tuple(n for n in names if n)
    return kept or (device.tags[0].name,)


def light_config(config: GatewayConfig) -> GatewayConfig:
    """`config` with each device's tag list cut to `kept_tag_names`."""
    return config.model_copy(update={"devices": [without_tags(d, keep=kept_tag_names(d)) for d in config.devices]})


@cache
def _tags_adapter(device_class: type[BaseModel]) -> TypeAdapter[list[Any]]:
    annotation: Any = device_class.model_fields["tags"].annotation  # e.g. list[ModbusTag]
    return TypeAdapter(annotation)


CHUNK = 1000  # tags per packed chunk: the most tag models `StreamedTags` makes alive at once


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)] or [[]]


class StreamedTags(Sequence[Any]):
    """A device's tag list, validated from its packed chunks as it is iterated: a chunk's models are garbage
    once the iteration has moved past them. The last chunk validated is kept for the next pass, so a
    device of one chunk (most: ≤ 1,000 tags) is validated once however often its state reads the list."""

    def __init__(self, adapter: TypeAdapter[list[Any]], chunks: tuple[bytes, ...], count: int) -> None:
        self._adapter, self._chunks, self._count = adapter, chunks, count
        self._last: tuple[int, list[Any]] = (-1, [])

    def _chunk(self, i: int) -> list[Any]:
        if self._last[0] != i:
            self._last = (-1, [])  # the previous chunk's models go before the next are made
            self._last = (i, self._adapter.validate_json(zlib.decompress(self._chunks[i])))
        return self._last[1]

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self._chunks)):
            yield from self._chunk(i)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        return self._chunk(index // CHUNK)[index % CHUNK]


class CompactConfig:
    """A validated `GatewayConfig` with its tag lists packed (see the module's doc)."""

    def __init__(self, config: GatewayConfig, parts: _Parts | None = None) -> None:
        """From the full `config`, or (`parts`) from its light form and what the child process packed."""
        self.light = config if parts is not None else light_config(config)
        self._tags: dict[str, tuple[bytes, ...]] = {}  # device id -> its tags' packed chunks
        self._counts: dict[str, int] = {}
        self.digests: dict[str, str] = {}  # device id -> device_digest of the full device
        packed = _packed(config) if parts is None else vars(parts)
        self.sha = packed["sha"]  # of the whole config (the devices' metadata carry it): `config_hash`
        for d in config.devices:
            self._tags[d.id] = tuple(zlib.compress(c.encode(), 6) for c in packed["tags"][d.id])
            self._counts[d.id] = packed["counts"][d.id]
            self.digests[d.id] = packed["digests"][d.id]  # `device_digest`

    def tag_count(self, dev_id: str) -> int:
        return self._counts[dev_id]

    def device(self, dev_id: str) -> Any:
        """The device's full model, tags validated again from their packed JSON."""
        light, tags = self._streamed(dev_id)
        return light.model_copy(update={"tags": list(tags)})

    def streamed(self, dev_id: str) -> Any:
        """The device's model with a `StreamedTags` list: to be iterated (the run-time state is built from
        it), not kept, validated or dumped (`device()` for that)."""
        light, tags = self._streamed(dev_id)
        return light.model_copy(update={"tags": tags})

    def _streamed(self, dev_id: str) -> tuple[BaseModel, StreamedTags]:
        light: BaseModel = next(d for d in self.light.devices if d.id == dev_id)
        return light, StreamedTags(_tags_adapter(type(light)), self._tags[dev_id], self._counts[dev_id])

    def devices(self) -> Sequence[Any]:
        return [self.device(d.id) for d in self.light.devices]

    def full(self) -> GatewayConfig:
        """The whole config in force as validated models (equal to the one this was made from)."""
        return self.light.model_copy(update={"devices": list(self.devices())})


# ---------------------------------------------------------------- loading a large file in a child process


class _Parts:
    def __init__(self, data: dict[str, Any]) -> None:
        self.light: dict[str, Any] = data["light"]
        self.tags: dict[str, list[str]] = data["tags"]  # device id -> its tags' canonical JSON, per chunk
        self.counts: dict[str, int] = data["counts"]
        self.digests: dict[str, str] = data["digests"]
        self.sha: str = data["sha"]


def without_read_secrets(obj: Any) -> Any:
    """`obj` without a secret that a `{name}_file` beside it gave (validation reads the file again), so the
    light config validates as the file did and nothing of a secret file travels through a pipe."""
    if isinstance(obj, dict):
        read = {k[: -len("_file")] for k, v in obj.items() if k.endswith("_file") and v is not None}
        return {k: without_read_secrets(v) for k, v in obj.items() if k not in read}
    if isinstance(obj, list):
        return [without_read_secrets(v) for v in obj]
    return obj


def compact_parts(config: GatewayConfig) -> dict[str, Any]:
    """What the child hands back: the config without tag lists (but the OEE tags), as JSON data, and
    `_packed`."""
    return {"light": without_read_secrets(light_config(config).model_dump(mode="json")), **_packed(config)}


def _packed(config: GatewayConfig) -> dict[str, Any]:
    """Each device's tags as canonical JSON, per chunk, and their count; the per-device digests
    (`device_digest`) and the config hash (`config_hash`).

    The tags are nearly all of a large config, so they are encoded once: each device and the whole config
    are encoded with a placeholder for each tag list, which the tag lists' JSON (the chunks' joined) then
    replaces: the same bytes as encoding the whole (the tests compare both) at a third of the cost."""
    whole = config.model_dump(mode="json", exclude={"devices"})
    whole["devices"] = dumps = [d.model_dump(mode="json") for d in config.devices]
    chunks = {d["id"]: [canonical_json(list(c)).decode() for c in _chunks(d["tags"])] for d in dumps}
    lists = {dev: "[" + ",".join(c[1:-1] for c in cs if c != "[]") + "]" for dev, cs in chunks.items()}
    by_index = []
    for i, d in enumerate(dumps):
        by_index.append(lists[d["id"]])
        d["tags"] = f"\x00tags-{i}\x00"  # a string no config holds (control characters), encoded once below
    try:
        digests = {d["id"]: hashlib.sha256(_spliced(canonical_json(d), by_index, 1)).hexdigest() for d in dumps}
        sha = hashlib.sha256(_spliced(canonical_dump(whole), by_index, len(dumps))).hexdigest()
    except _Ambiguous:  # a value of the config reads like a placeholder: encode the whole, as before
        digests = {d.id: device_digest(d) for d in config.devices}
        sha = config_hash(config)
    return {"tags": chunks, "counts": {d.id: len(d.tags) for d in config.devices}, "digests": digests, "sha": sha}


_MARK = re.compile(rb'"\\u0000tags-(\d+)\\u0000"')


class _Ambiguous(Exception):
    """A placeholder's text found more often than it was put (a config value holding it)."""


def _spliced(text: bytes, lists: list[str], expected: int) -> bytes:
    """Canonical JSON `text` with each tag list's placeholder (`expected` of them) replaced by its JSON."""
    out, found = _MARK.subn(lambda m: lists[int(m.group(1))].encode(), text)
    if found != expected:
        raise _Ambiguous
    return out


def load_compact(path: str | Path) -> CompactConfig:
    """The gateway config at `path`, compact. A large file is loaded by a child process (see the module's
    doc); a small one, or any failure of the child, loads here (a ConfigError says what is wrong)."""
    p = Path(path)
    with contextlib.suppress(OSError):
        if p.stat().st_size > PARSE_ELSEWHERE_BYTES:
            out = _forked(p) if _can_fork() else _spawned(p)
            if out is not None:
                parts = _Parts(json.loads(out))
                light = load_text(json.dumps(parts.light), GatewayConfig, str(path))
                return CompactConfig(with_env_secrets(light), parts)
    return CompactConfig(load_gateway_config(p))


def _can_fork() -> bool:
    """A copy of this process can do the child's work when this process runs no other thread (at start):
    it has the config models imported already (a new interpreter takes ≈ 0.25 s to import them)."""
    return hasattr(os, "fork") and threading.active_count() == 1


def _forked(path: Path) -> bytes | None:
    """`compact_parts` of the file as JSON, made by a forked copy of this process; None if it failed."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the copy: never returns
        code = 1
        try:
            os.close(read)
            with os.fdopen(write, "wb") as out:
                out.write(_parts_json(path))
            code = 0
        finally:
            os._exit(code)  # the copy ends here: none of the parent's clean-up (atexit, buffered files) runs twice
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    return data if os.waitstatus_to_exitcode(status) == 0 else None


def _spawned(path: Path) -> bytes | None:
    """The same made by a new interpreter (`python -m gateway.compact FILE`); None if it failed or took over
    10 minutes (the file is then loaded here, which says what is wrong)."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "gateway.compact", str(path)], capture_output=True, timeout=600, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _parts_json(path: Path) -> bytes:
    """Parse and validate (in a throwaway process: no need to parse in yet another one); the parent adds the
    environment's secrets. Any mistake raises: the parent then loads the file itself and says where."""
    import yaml

    gc.disable()
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=BoundedLoader)
    config = GatewayConfig.model_validate(data)
    del data
    return json.dumps(compact_parts(config), ensure_ascii=False).encode()


def _child_main(path: str) -> int:
    sys.stdout.buffer.write(_parts_json(Path(path)))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
