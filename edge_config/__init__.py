"""Config models, loading with precise errors, and JSON Schema export. Imports nothing of ours."""

from edge_config.loader import (
    ConfigError,
    ConfigIssue,
    json_schema,
    load_cloud_config,
    load_gateway_config,
    load_text,
)
from edge_config.models import CloudConfig, GatewayConfig

__all__ = [
    "CloudConfig",
    "ConfigError",
    "ConfigIssue",
    "GatewayConfig",
    "json_schema",
    "load_cloud_config",
    "load_gateway_config",
    "load_text",
]
