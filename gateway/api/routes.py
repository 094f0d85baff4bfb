"""Edge API routes: health (open) and devices (viewer). Read-only; nothing here writes to a PLC."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from cloud_bridge.webapp import problems
from edge_config.timing import clock_problem, now_ms
from edge_config.version import __version__
from gateway.api.view import AgentView


def _device_view(agent: AgentView, dev_id: str) -> dict[str, Any]:
    s = agent.runtime.devices[dev_id]
    return {
        "id": s.id,
        "name": s.name,
        "driver": s.driver,
        "online": s.online,
        "reason": s.reason,
        "last_seen": s.last_seen_ms,
        "scans": s.scans,
        "overruns": s.overruns,
        "samples_read": s.samples_read,
        "samples_buffered": s.samples_buffered,
        "samples_lost": s.samples_lost,
        "samples_published": agent.publisher.stats.samples_acked.get(dev_id, 0),
        "bad_readings": s.bad_readings,
    }


def _clock() -> dict[str, Any]:
    """The gateway's clock as evidence sees it: `ok` false (with the reason) while it reads before 2000."""
    now = now_ms()
    problem = clock_problem(now)
    return {"ok": problem is None, "now_ms": now, **({"problem": problem} if problem else {})}


def build_health_router(agent: AgentView) -> APIRouter:
    """`GET /api/v1/health`: the one route open without a login (for probes and the fresh-clone check)."""
    router = APIRouter(prefix="/api/v1", tags=["edge"])

    @router.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "gateway": agent.config.gateway.id,
            "enterprise": agent.config.gateway.enterprise_id,
            "mqtt": agent.publisher.health(),
            "buffer": {
                **agent.publisher.backlog(),
                "events_held": agent.runtime.events_held,
                "events_lost": agent.runtime.events_lost,
            },
            "devices_online": sum(1 for s in agent.runtime.devices.values() if s.online),
            "devices": len(agent.runtime.devices),
            "clock": _clock(),
        }

    return router


def build_router(agent: AgentView) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["edge"], responses=problems(401, 403, 404, 422))

    @router.get("/devices")
    def devices() -> list[dict[str, Any]]:
        return [_device_view(agent, d) for d in agent.runtime.devices]

    @router.get("/devices/{device_id}")
    def device(device_id: str) -> dict[str, Any]:
        if device_id not in agent.runtime.devices:
            raise HTTPException(status_code=404, detail=f"no device {device_id!r} in this gateway's config")
        return _device_view(agent, device_id)

    return router
