"""The edge agent: buffer → publisher, devices → runtime, and the edge API, wired together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path
from typing import Any

from cloud_bridge.uplink.buffer import Buffer, Chain, Depth
from cloud_bridge.uplink.identity import load_or_create_identity
from cloud_bridge.uplink.publisher import Publisher
from cloud_bridge.wire.codec import Topics
from drivers import make_driver
from edge_config.models import GatewayConfig
from edge_config.timing import backoff_delay, clock_problem, now_ms
from edge_config.version import __version__
from gateway import notify
from gateway.compact import CompactConfig
from gateway.heap import settle_heap, trim_heap
from gateway.listen import bind, serve_when_asked
from gateway.poller import sleep_or_stop
from gateway.reload import ReloadPlan, file_sha256
from gateway.runtime import Runtime
from gateway.users import UserStore, users_path

log = logging.getLogger(__name__)


class Agent:
    """One gateway process: everything `edgegw run` starts."""

    def __init__(self, config: GatewayConfig | CompactConfig, config_path: str | Path | None = None) -> None:
        compact = config if isinstance(config, CompactConfig) else CompactConfig(config)
        config = compact.light  # the config's models without the tag lists (gateway.compact)
        self.config_path = Path(config_path) if config_path is not None else None
        # the file as loaded: the console's editor writes over it only while it still holds these bytes
        self.config_sha256 = file_sha256(self.config_path) if self.config_path is not None else ""
        self.users = UserStore(users_path(config))
        self.started_ms = now_ms()
        gw = config.gateway
        data_dir = Path(gw.data_dir)
        buf = config.buffer
        self.topics = Topics(config.mqtt.topic_prefix, gw.enterprise_id, gw.id)
        self.identity = load_or_create_identity(data_dir)  # made on first start (README "Trust model")
        chain = Chain(gw.enterprise_id, gw.id, self.identity.key, self.topics.checkpoint)
        self.buffer = Buffer(
            data_dir / "buffer.db",
            synchronous=buf.synchronous,
            max_bytes=buf.max_bytes,
            compress=buf.compress,
            chain=chain,
        )
        self.publisher = Publisher(
            config.mqtt, self.topics, self.buffer, version=__version__, status_interval=buf.status_interval
        )
        self.backlog_at_stop: Depth | None = None
        self.runtime = Runtime(compact, self.buffer, self.publisher, make_driver)

    @property
    def config(self) -> GatewayConfig:
        """The config in force (the file's, with the devices, time zone and shifts of the last reload), its
        devices without their tag lists: `full_config()` has them (see `gateway.compact`)."""
        return self.runtime.config

    def full_config(self) -> GatewayConfig:
        """The config in force with every tag (validated again from its compact form: for the editor)."""
        return self.runtime.full_config()

    async def reload(self, new: GatewayConfig) -> ReloadPlan:
        """Hot reload (see `gateway.reload`): devices restart as needed, the buffer and seq are untouched."""
        return await self.runtime.reload(new)

    async def run(self, stop: asyncio.Event, *, serve_api: bool = True) -> None:
        """Start the publisher first and the devices last; stop in the other order so queues drain."""
        # the publisher stops after the devices, so what they buffer on the way out (last counter snapshots)
        # still goes out in its drain
        # bound before anything starts: a port in use stops the agent at once, with the address in the error
        api_sock = bind(self.config.api.host, self.config.api.port) if serve_api else None
        devices_done = asyncio.Event()
        publisher = asyncio.create_task(self._supervise_publisher(devices_done), name="publisher")
        runtime = asyncio.create_task(self.runtime.run(stop), name="runtime")
        api = asyncio.create_task(self._serve_api(api_sock, stop), name="edge-api") if api_sock else None
        settle = asyncio.create_task(self._settle_heap_when_steady(stop), name="settle-heap")
        clock = asyncio.create_task(self._warn_while_clock_unset(stop), name="clock-check")
        watchdog = asyncio.create_task(notify.serve(stop), name="sd-notify")
        try:
            try:
                await runtime
            finally:
                devices_done.set()
            await publisher
        finally:
            for t in (runtime, publisher, api, settle, clock, watchdog):
                if t is not None and not t.done():
                    t.cancel()
            if api is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await api
            self.backlog_at_stop = self.buffer.depth()
            self.buffer.close()
            self.runtime.history.close()

    async def _supervise_publisher(self, done: asyncio.Event) -> None:
        """Run the publisher until `done`; if its loop fails, log it, count it (health shows it) and start
        it again after a backoff: what it had not sent is still in the buffer."""
        attempt = 0
        while True:
            try:
                await self.publisher.run(done)
                return
            except Exception as e:
                attempt += 1
                self.publisher.stats.crashes += 1
                self.publisher.stats.last_crash = f"{type(e).__name__}: {e}"
                log.exception("the MQTT publisher failed (%s); starting it again", e)
            await sleep_or_stop(done, backoff_delay(attempt, base=1.0, cap=30.0))
            if done.is_set():
                return

    async def _warn_while_clock_unset(self, stop: asyncio.Event, every: float = 600.0) -> None:
        """Say so in the log, at start and every `every` seconds, while the system clock reads before 2000
        (`/api/v1/health` says it too): what is read then carries a time the cloud refuses."""
        while not stop.is_set():
            problem = clock_problem(now_ms())
            if problem is not None:
                log.error("%s", problem)
            await sleep_or_stop(stop, every)

    async def _settle_heap_when_steady(self, stop: asyncio.Event, after: float = 10.0) -> None:
        """Once the devices are connected and scanning, freeze the long-lived heap (see gateway.heap)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=after)
        if not stop.is_set():
            settle_heap()
            trim_heap(collect=False)

    async def _serve_api(self, sock: socket.socket, stop: asyncio.Event) -> None:
        """The edge API on `sock`, its web stack imported at the first connection (`gateway.listen`)."""

        def make_app() -> Any:
            from gateway.api.app import create_app

            return create_app(self)

        await serve_when_asked(sock, make_app, stop)
