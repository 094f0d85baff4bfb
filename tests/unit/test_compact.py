"""The compact config the agent runs on (`gateway.compact`): no tag models kept, the same digests and config
hash as the full config, the same models when asked for again, and a large file loaded through the child
process giving exactly what loading it here gives."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import platform
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud_bridge.uplink.buffer import Buffer
from cloud_bridge.uplink.publisher import Publisher
from cloud_bridge.wire.codec import Topics
from drivers import make_driver
from drivers.base import without_tags
from edge_config import ConfigError, load_gateway_config
from edge_config.loader import PARSE_ELSEWHERE_BYTES
from edge_config.models import GatewayConfig
from gateway.compact import CompactConfig, device_digest, load_compact
from gateway.heap import trim_heap
from gateway.oee.tracker import config_hash
from gateway.reload import plan_reload
from gateway.runtime import Runtime


@contextlib.asynccontextmanager
async def running(config: GatewayConfig | CompactConfig, tmp_path: Path, factory: Any = make_driver
                  ) -> AsyncIterator[Runtime]:  # fmt: skip
    """A Runtime of `config` running on a buffer in `tmp_path`, stopped and closed after the block; `config`
    itself is not held here (the tests count the tag models still alive)."""
    buf = Buffer(tmp_path / "buffer.db")
    mqtt = config.light.mqtt if isinstance(config, CompactConfig) else config.mqtt
    rt = Runtime(config, buf, Publisher(mqtt, Topics("sf/v1", "ent", "gw"), buf, version="t"), factory)
    del config
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    try:
        yield rt
    finally:
        stop.set()
        await task
        buf.close()
        rt.history.close()


async def until(condition: Any, tries: int) -> None:
    """Wait up to `tries` × 20 ms for `condition()`."""
    for _ in range(tries):
        await asyncio.sleep(0.02)
        if condition():
            return


def raw_config(tags: int = 3, *, secret_file: Path | None = None) -> dict[str, Any]:
    loom_tags = [{"name": "state", "address": "hr:0", "type": "uint16"},
                 {"name": "picks", "address": "hr:1", "type": "uint32", "scale": 0.5}]  # fmt: skip
    loom_tags += [
        {"name": f"t{i:05d}", "address": f"hr:{10 + i}", "type": "uint16", "unit": "rpm"} for i in range(tags)
    ]
    mqtt: dict[str, Any] = {"url": "mqtt://127.0.0.1:1883", "username": "gw"}
    if secret_file is not None:
        mqtt["password_file"] = str(secret_file)
    return {
        "gateway": {"id": "gw", "enterprise_id": "ent", "data_dir": "/tmp/gw-data"},
        "mqtt": mqtt,
        "devices": [
            {"id": "loom-01", "driver": "modbus_tcp", "connection": {"host": "127.0.0.1", "port": 5020},
             "tags": loom_tags,
             "oee": {"state_tag": "state", "states": {"running": [1], "idle": [0]}, "total_count_tag": "picks"}},
            {"id": "reactor-01", "driver": "opcua", "connection": {"endpoint": "opc.tcp://127.0.0.1:4840"},
             "tags": [{"name": "temp", "node": "ns=2;s=R1.T", "type": "float64"},
                      {"name": "press", "node": "ns=2;s=R1.P", "type": "float64", "mode": "poll"}]},
        ],
    }  # fmt: skip


def canonical_sha(data: Any) -> str:
    return hashlib.sha256(
        json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def test_device_digest_is_the_sha256_of_the_canonical_device() -> None:
    cfg = GatewayConfig.model_validate(raw_config())
    for d in cfg.devices:
        assert device_digest(d) == canonical_sha(d.model_dump(mode="json"))
    assert device_digest(cfg.devices[0]) != device_digest(cfg.devices[1])


def test_compact_keeps_no_tag_list_but_gives_the_same_models_and_hashes() -> None:
    cfg = GatewayConfig.model_validate(raw_config(tags=50))
    compact = CompactConfig(cfg)
    loom, reactor = compact.light.devices
    assert [t.name for t in loom.tags] == ["state", "picks"]  # what the OEE tracking reads
    assert [t.name for t in reactor.tags] == ["temp"]  # no OEE: the first tag only
    assert compact.device("loom-01") == cfg.devices[0] and compact.device("reactor-01") == cfg.devices[1]
    assert compact.full() == cfg
    assert compact.sha == config_hash(cfg)
    assert compact.digests == {d.id: canonical_sha(d.model_dump(mode="json")) for d in cfg.devices}
    assert compact.tag_count("loom-01") == 52


def test_without_tags_keeps_only_the_named_tags() -> None:
    loom = GatewayConfig.model_validate(raw_config()).devices[0]
    assert without_tags(loom).tags == [] and [t.name for t in without_tags(loom, keep={"picks"}).tags] == ["picks"]
    assert without_tags(loom).connection == loom.connection


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_a_large_file_loads_through_the_child_as_it_loads_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fork: bool
) -> None:
    import gateway.compact as compact_module

    made: list[str] = []
    for how in ("_forked", "_spawned"):
        real = getattr(compact_module, how)
        monkeypatch.setattr(compact_module, how, lambda p, real=real, how=how: made.append(how) or real(p))
    monkeypatch.setattr(compact_module, "_can_fork", lambda: fork)
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret\n")
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(raw_config(tags=12_000, secret_file=secret)))
    assert path.stat().st_size > PARSE_ELSEWHERE_BYTES  # the child's path
    full = load_gateway_config(path)
    compact = load_compact(path)
    assert compact.light.mqtt.password == "s3cret" and compact.light.mqtt.password_file == str(secret)
    assert compact.full() == full
    assert compact.sha == config_hash(full) and compact.digests == CompactConfig(full).digests
    assert made == ["_forked" if fork else "_spawned"]


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_a_large_file_with_a_mistake_says_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fork: bool) -> None:
    import gateway.compact as compact_module

    monkeypatch.setattr(compact_module, "_can_fork", lambda: fork)
    raw = raw_config(tags=12_000)
    raw["devices"][0]["tags"][7000]["address"] = "4x0001"
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as e:
        load_compact(path)
    assert "devices[0].tags[7000].address" in str(e.value)


def test_reload_compares_the_running_digests(tmp_path: Path) -> None:
    cfg = GatewayConfig.model_validate(raw_config(tags=5))
    buf = Buffer(tmp_path / "buffer.db")
    topics = Topics("sf/v1", "ent", "gw")
    rt = Runtime(cfg, buf, Publisher(cfg.mqtt, topics, buf, version="t"), make_driver)
    try:
        assert all(len(d.tags) <= 2 for d in rt.config.devices)  # the runtime holds no tag list
        assert rt.full_config() == cfg and rt.config_sha == config_hash(cfg)
        assert plan_reload(rt.config, cfg, old_devices=rt.device_digests).changed == []
        raw = raw_config(tags=5)
        raw["devices"][0]["tags"][4]["unit"] = "m/min"
        plan = plan_reload(rt.config, GatewayConfig.model_validate(raw), old_devices=rt.device_digests)
        assert (plan.changed, plan.unchanged) == (["loom-01"], ["reactor-01"])
    finally:
        buf.close()
        rt.history.close()


def test_trim_heap_works_where_the_c_library_is_glibc() -> None:
    assert trim_heap() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


def test_the_simulate_command_offers_the_simulators_choices() -> None:
    from gateway.cli import simulate
    from simulators.registry import INDUSTRIES
    from simulators.workshop import PROTOCOLS

    assert simulate.INDUSTRIES == INDUSTRIES and simulate.PROTOCOLS == PROTOCOLS


async def test_a_running_runtime_holds_no_tag_models_but_the_kept_ones(tmp_path: Path) -> None:
    import gc

    from edge_config.models import ModbusTag, OpcUaTag

    raw = raw_config(tags=40)
    raw["devices"] = raw["devices"][:1]  # the loom: Modbus, to a port nobody listens on
    raw["devices"][0]["connection"]["port"] = 1
    cfg = GatewayConfig.model_validate(raw)
    del raw
    async with running(cfg, tmp_path) as rt:
        del cfg
        await until(lambda: "loom-01" in rt.live, 100)  # the device task has built its channel and driver
        gc.collect()
        tags = [o for o in gc.get_objects() if isinstance(o, ModbusTag | OpcUaTag)]
        assert len(rt.live["loom-01"].values()) == 42  # every tag has its live row
        assert sorted(t.name for t in tags) == ["picks", "state"]  # the OEE tags of the light config only


def test_streamed_tags_are_the_device_tags_a_chunk_at_a_time() -> None:
    import gc

    from edge_config.models import ModbusTag
    from gateway.compact import CHUNK

    cfg = GatewayConfig.model_validate(raw_config(tags=2 * CHUNK + 498))  # 2,500 tags: three chunks
    compact = CompactConfig(cfg)
    full = cfg.devices[0].tags
    tags = compact.streamed("loom-01").tags
    assert len(tags) == len(full) == compact.tag_count("loom-01") == 2500
    assert tags[0] == full[0] and tags[CHUNK] == full[CHUNK] and tags[-1] == full[-1] and tags[5:8] == full[5:8]
    with pytest.raises(IndexError):
        tags[2500]
    del cfg, full
    gc.collect()
    alive = []
    for i, tag in enumerate(tags):  # as the runtime reads them: one pass, nothing kept
        assert tag.name == ("state" if i == 0 else "picks" if i == 1 else f"t{i - 2:05d}")
        if i % 400 == 399:
            gc.collect()
            alive.append(sum(isinstance(o, ModbusTag) for o in gc.get_objects()))
    del tag
    assert max(alive) <= CHUNK + 3, alive  # a chunk, and the light config's kept tags; never the 2,500
    assert compact.device("loom-01").tags == compact.full().devices[0].tags  # the full list, when asked


async def test_a_device_s_run_time_state_is_built_without_every_tag_model_alive(tmp_path: Path) -> None:
    import gc

    from drivers.base import Driver
    from edge_config.models import ModbusTag
    from gateway.compact import CHUNK

    raw = raw_config(tags=3000)
    raw["devices"] = raw["devices"][:1]
    raw["devices"][0]["connection"]["port"] = 1
    cfg = GatewayConfig.model_validate(raw)
    compact = CompactConfig(cfg)
    del cfg, raw
    alive: list[int] = []

    def factory(device: Any, **kw: Any) -> Driver:
        driver = make_driver(device, **kw)
        gc.collect()  # the metadata is sent, the channel and this driver are built: the models are garbage
        alive.append(sum(isinstance(o, ModbusTag) for o in gc.get_objects()))
        return driver

    async with running(compact, tmp_path, factory) as rt:
        await until(lambda: bool(alive), 200)
        assert alive and alive[0] <= CHUNK + 2, alive  # never the device's 3,002 models at once
        assert len(rt.live["loom-01"].values()) == 3002


def test_the_child_s_parts_hash_as_the_whole_config_does() -> None:
    from gateway.compact import compact_parts

    raw = raw_config(tags=2100)  # the loom in three chunks
    raw["devices"][1]["connection"].update(username="op", password="s3cret")  # a secret inside a device
    raw["devices"].append({**raw["devices"][1], "id": "reactor-02"})
    cfg = GatewayConfig.model_validate(raw)
    parts = compact_parts(cfg)
    assert parts["sha"] == config_hash(cfg)
    assert parts["digests"] == {d.id: device_digest(d) for d in cfg.devices}
    assert parts["counts"] == {"loom-01": 2102, "reactor-01": 2, "reactor-02": 2}
    joined = [t for chunk in parts["tags"]["loom-01"] for t in json.loads(chunk)]
    assert joined == [t.model_dump(mode="json") for t in cfg.devices[0].tags]


def test_a_config_value_that_reads_like_a_placeholder_hashes_the_same() -> None:
    from gateway.compact import compact_parts

    raw = raw_config(tags=5)
    raw["devices"][0]["name"] = "\x00tags-1\x00"  # the text of the reactor's placeholder, in the loom's name
    cfg = GatewayConfig.model_validate(raw)
    parts = compact_parts(cfg)
    assert parts["sha"] == config_hash(cfg) and parts["digests"] == {d.id: device_digest(d) for d in cfg.devices}


async def test_each_device_s_metadata_goes_first_from_tags_validated_once_and_again_on_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.compact as compact_module

    validated: list[int] = []  # one per chunk of tags validated
    adapter_of = compact_module._tags_adapter

    class Counting:
        def __init__(self, adapter: Any) -> None:
            self.adapter = adapter

        def validate_json(self, data: bytes) -> Any:
            validated.append(1)
            return self.adapter.validate_json(data)

    monkeypatch.setattr(compact_module, "_tags_adapter", lambda cls: Counting(adapter_of(cls)))
    raw = raw_config(tags=5)
    raw["gateway"]["data_dir"] = str(tmp_path / "data")
    cfg = GatewayConfig.model_validate(raw)

    def messages(rt: Runtime) -> list[Any]:
        return rt.buffer.peek(10_000)

    def metas(rt: Runtime, dev: str) -> list[dict[str, Any]]:
        return [json.loads(m.body) for m in messages(rt) if m.topic.endswith(f"/{dev}/meta")]

    async with running(CompactConfig(cfg), tmp_path, make_driver) as rt:
        devices = ("loom-01", "reactor-01")
        await until(lambda: all(len({m.kind for m in messages(rt) if m.dev == d}) > 1 for d in devices), 250)
        assert validated == [1, 1]  # each device's one chunk, for its metadata, channel and driver together
        for dev in devices:
            mine = [m for m in messages(rt) if m.dev == dev]
            assert mine[0].topic.endswith(f"/{dev}/meta") and len(mine) > 1  # then its status: offline here
            [meta] = metas(rt, dev)
            assert meta["config_hash"] == config_hash(cfg)
        assert [t["name"] for t in metas(rt, "loom-01")[0]["tags"]] == ["state", "picks"] + [
            f"t{i:05d}" for i in range(5)
        ]

        raw["devices"][0]["tags"][4]["unit"] = "m/min"  # loom-01 changes; reactor-01 does not
        new = GatewayConfig.model_validate(raw)
        before = len(messages(rt))
        plan = await rt.reload(new)
        assert (plan.changed, plan.unchanged) == (["loom-01"], ["reactor-01"])
        await until(lambda: len(metas(rt, "loom-01")) == 2, 250)
        for dev in devices:  # every device's metadata once more, with the new config's hash
            assert [m["config_hash"] for m in metas(rt, dev)] == [config_hash(cfg), config_hash(new)]
        loom_after = [m for m in messages(rt)[before:] if m.dev == "loom-01"]
        first_meta = next(i for i, m in enumerate(loom_after) if m.topic.endswith("/meta"))
        assert all(m.kind != "data" for m in loom_after[:first_meta])  # at most its offline report (halted)
        assert metas(rt, "loom-01")[1]["tags"][4]["unit"] == "m/min"


def test_a_child_that_cannot_start_or_finish_leaves_the_file_to_load_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    import gateway.compact as compact_module

    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(raw_config(tags=12_000)))
    want = load_gateway_config(path)

    def run(*args: Any, **kwargs: Any) -> Any:
        raise subprocess.TimeoutExpired(args[0], kwargs.get("timeout") or 0)

    monkeypatch.setattr(compact_module, "_can_fork", lambda: False)
    monkeypatch.setattr(compact_module.subprocess, "run", run)  # every child: this one's and the loader's
    assert load_compact(path).full() == want


def test_the_config_is_loaded_by_a_forked_copy_only_while_no_other_thread_runs() -> None:
    import threading

    from gateway.compact import _can_fork

    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert not _can_fork()  # a fork now could copy a lock that thread holds: a new interpreter instead
    finally:
        release.set()
        other.join()
    assert _can_fork() is (threading.active_count() == 1)
