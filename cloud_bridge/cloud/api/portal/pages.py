"""Portal pages: the pilot overview (each enterprise's indicators for a period) and one enterprise
(equipment against networked devices, per-device online timeline and OEE, business areas)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from cloud_bridge.cloud.api.auth import Caller, Users, may_read
from cloud_bridge.cloud.api.routes import Config, Store, _enterprise, _period, pilot_overview
from cloud_bridge.cloud.evidence.build import build_evidence
from cloud_bridge.cloud.evidence.models import Evidence
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.cloud.ledger.users import CloudUser
from cloud_bridge.metrics.period import Period
from cloud_bridge.metrics.timeline import Segment
from cloud_bridge.webapp import Site
from edge_config.models import CloudConfig


def enterprise_evidence(
    request: Request, store: EvidenceStore, config: CloudConfig, user: CloudUser, ent: str, start: str, end: str
) -> tuple[Period, Evidence]:
    """The evidence of an enterprise the user may read, for the period of the page's picker (default today)."""
    may_read(user, ent)
    _enterprise(store, config, ent, user)
    period = _period(request, config, ent, start or None, end or None)
    return period, build_evidence(store, config, ent, period, now_ms=request.app.state.clock())


def build_portal(site: Site) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    def overview(
        request: Request, store: Store, config: Config, user: Caller, users: Users, start: str = "", end: str = ""
    ) -> HTMLResponse:
        ov = pilot_overview(request, store, config, user, start or None, end or None)
        for r in ov.enterprises:
            users.audit(user.name, "read", r.enterprise.id, f"portal overview {r.period.from_ms}..{r.period.to_ms}")
        return site.render(request, "overview.html.j2", title="overview", rows=ov.enterprises, start=start, end=end)

    @router.get("/enterprises/{ent}", response_class=HTMLResponse)
    def enterprise(
        request: Request,
        ent: str,
        store: Store,
        config: Config,
        user: Caller,
        users: Users,
        start: str = "",
        end: str = "",
    ) -> HTMLResponse:
        period, ev = enterprise_evidence(request, store, config, user, ent, start, end)
        users.audit(user.name, "read", ent, f"portal enterprise {period.start}..{period.end}")
        timelines = {
            d.id: [Segment(a, b, "running") for a, b in d.online_intervals] for d in ev.devices
        }  # online stretches drawn green
        if ev is None:
            raise HTTPException(404)
        return site.render(
            request,
            "enterprise.html.j2",
            title=ent,
            ev=ev,
            ent=ent,
            timelines=timelines,
            lo=period.start,
            hi=period.end,
            start=start,
            end=end,
            tz=period.timezone,
        )

    return router
