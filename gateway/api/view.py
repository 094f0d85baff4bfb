"""What the edge API reads of the running agent (the agent satisfies it; the API never imports the agent)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from cloud_bridge.uplink.publisher import Publisher
from edge_config.models import GatewayConfig
from gateway.reload import ReloadPlan
from gateway.runtime import Runtime
from gateway.users import UserStore


class AgentView(Protocol):
    @property
    def config(self) -> GatewayConfig: ...

    @property
    def runtime(self) -> Runtime: ...

    @property
    def publisher(self) -> Publisher: ...

    @property
    def users(self) -> UserStore: ...

    @property
    def config_path(self) -> Path | None:
        """The file the console's editor writes (None: the config has no file; editing is off)."""

    @property
    def started_ms(self) -> int: ...

    @property
    def config_sha256(self) -> str:
        """SHA-256 of the config file's bytes when the agent loaded it ("": no file)."""

    def full_config(self) -> GatewayConfig:
        """`config` with every device's tags (validated again on each call: for the editor, not per request)."""

    async def reload(self, new: GatewayConfig) -> ReloadPlan: ...
