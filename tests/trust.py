"""Enrolling a test's gateway in the cloud registry, as `edgegw cloud gateway add` does."""

from __future__ import annotations

from typing import Any

from cloud_bridge.cloud.ledger.sqldb import Database
from cloud_bridge.cloud.trust.registry import Registry
from cloud_bridge.uplink.identity import Identity, load_or_create_identity
from edge_config.models import GatewayConfig


def enrol(ledger_url: str, cfg: GatewayConfig | dict[str, Any]) -> Identity:
    """Make the gateway's key (as its first start would) and register it; returns the identity."""
    gw = cfg.gateway if isinstance(cfg, GatewayConfig) else GatewayConfig.model_validate(cfg).gateway
    ident = load_or_create_identity(gw.data_dir)
    db = Database(ledger_url)
    try:
        registry = Registry(db)
        rec = registry.active(gw.enterprise_id, gw.id)
        if rec is None or rec.fingerprint != ident.fingerprint:
            registry.add(gw.enterprise_id, gw.id, ident.public_key)
    finally:
        db.close()
    return ident
