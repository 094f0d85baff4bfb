"""The edge runtime: one task per device, each writing into the buffer through its `DeviceChannel`.

A device that fails is reported (status event + retained status) and retried; it never stalls
another device.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from cloud_bridge.buffer import Buffer, Outgoing
from cloud_bridge.publisher import Publisher
from cloud_bridge.wire import Topics
from drivers.base import Driver
from edge_config.models import GatewayConfig
from gateway.channel import DeviceChannel, DeviceState
from gateway.normalize import Normalizer, TagSpec
from gateway.poller import poll_loop

log = logging.getLogger(__name__)

DriverFactory = Callable[[Any], Driver]


class Runtime:
    """Owns the devices' tasks; writes everything that leaves into the buffer."""

    def __init__(
        self,
        config: GatewayConfig,
        buffer: Buffer,
        publisher: Publisher,
        driver_factory: DriverFactory,
    ) -> None:
        self.config = config
        self.buffer = buffer
        self.publisher = publisher
        self.driver_factory = driver_factory
        gw = config.gateway
        self.topics = Topics(config.mqtt.topic_prefix, gw.enterprise_id, gw.id)
        self.devices = {d.id: DeviceState(d.id, d.name, d.driver) for d in config.devices}

    def _enqueue(self, messages: list[Outgoing]) -> None:
        self.buffer.enqueue(messages)
        self.publisher.wake()

    def channel(self, device: Any) -> DeviceChannel:
        normalizer = Normalizer(TagSpec(t.name, t.type, t.scale, t.offset, t.unit, t.deadband) for t in device.tags)
        return DeviceChannel(self.devices[device.id], self.topics, normalizer, self._enqueue)

    async def _run_device(self, device: Any, stop: asyncio.Event) -> None:
        driver = self.driver_factory(device)
        await poll_loop(self.channel(device), driver, device.poll_interval, stop)

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._run_device(d, stop), name=f"device-{d.id}") for d in self.config.devices]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
