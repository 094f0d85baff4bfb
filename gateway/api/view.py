"""What the edge API reads of the running agent (the agent satisfies it; the API never imports the agent)."""

from __future__ import annotations

from typing import Protocol

from cloud_bridge.uplink.publisher import Publisher
from edge_config.models import GatewayConfig
from gateway.runtime import Runtime


class AgentView(Protocol):
    @property
    def config(self) -> GatewayConfig: ...

    @property
    def runtime(self) -> Runtime: ...

    @property
    def publisher(self) -> Publisher: ...
