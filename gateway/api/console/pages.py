"""Console pages anyone logged in may see (viewer): devices, live values, the uplink, OEE today."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from cloud_bridge.metrics.timeline import online_intervals, state_timeline
from cloud_bridge.webapp import Site
from edge_config.timing import now_ms
from gateway.api.auth import Viewer
from gateway.api.view import AgentView
from gateway.oee.local import NoOee, local_oee


def _midnight(ms: int, tz: str) -> int:
    d = datetime.fromtimestamp(ms / 1000, ZoneInfo(tz))
    return int(d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


def build_pages(agent: AgentView, site: Site) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def overview_context() -> dict[str, Any]:
        pub = agent.publisher
        rows = []
        for dev_id, s in agent.runtime.devices.items():
            rows.append({"s": s, "published": pub.stats.samples_acked.get(dev_id, 0)})
        return {"rows": rows, "mqtt": pub.health(), "backlog": pub.backlog(), "tz": agent.config.timezone}

    @router.get("/", response_class=HTMLResponse)
    def overview(request: Request, _user: Viewer) -> HTMLResponse:
        return site.render(request, "overview.html.j2", title="devices", **overview_context())

    @router.get("/console/devices", response_class=HTMLResponse)
    def overview_fragment(request: Request, _user: Viewer) -> HTMLResponse:
        return site.render(request, "overview_rows.html.j2", **overview_context())

    def device_context(dev_id: str) -> dict[str, Any]:
        state = agent.runtime.devices.get(dev_id)
        live = agent.runtime.live.get(dev_id)
        if state is None:
            raise HTTPException(404, detail=f"no device {dev_id!r} in this gateway's config")
        return {"s": state, "values": live.values() if live else [], "tz": agent.config.timezone}

    @router.get("/devices/{dev_id}", response_class=HTMLResponse)
    def device(request: Request, dev_id: str, _user: Viewer) -> HTMLResponse:
        ctx = device_context(dev_id)
        cfg = agent.config
        now = now_ms()
        lo = _midnight(now, cfg.timezone)
        oee, segments = None, []
        tracker = agent.runtime.trackers.get(dev_id)
        try:
            oee = local_oee(cfg, agent.runtime.history, dev_id, lo, now, live=tracker.live_point() if tracker else None)
            w = agent.runtime.history.window(dev_id, lo, now)
            segments = state_timeline(w.states, online_intervals(w.online, lo, now), lo, now)
        except NoOee:
            pass
        return site.render(request, "device.html.j2", title=dev_id, oee=oee, segments=segments, lo=lo, hi=now, **ctx)

    @router.get("/console/devices/{dev_id}/values", response_class=HTMLResponse)
    def values_fragment(request: Request, dev_id: str, _user: Viewer) -> HTMLResponse:
        return site.render(request, "values.html.j2", **device_context(dev_id))

    return router
