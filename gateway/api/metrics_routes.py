"""Edge API: OEE of a device from the gateway's own history (`GET /api/v1/metrics/oee`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from cloud_bridge.metrics.period import PeriodError
from cloud_bridge.webapp import problems
from gateway.api.view import AgentView
from gateway.oee.local import NoOee, oee_report


def build_metrics_router(agent: AgentView) -> APIRouter:
    router = APIRouter(prefix="/api/v1/metrics", tags=["metrics"], responses=problems(401, 403, 404, 422))

    @router.get("/oee")
    def oee(
        device: Annotated[str, Query(description="device id")],
        start: Annotated[str | None, Query(alias="from", description="default: start of the current shift")] = None,
        end: Annotated[str | None, Query(alias="to", description="default: now")] = None,
    ) -> dict[str, Any]:
        """Availability, performance, quality and OEE (ISO 22400-2) with the time and loss breakdown;
        by default for the current shift so far."""
        tracker = agent.runtime.trackers.get(device)
        try:
            return oee_report(
                agent.config,
                agent.runtime.history,
                device,
                start,
                end,
                live=tracker.live_point() if tracker else None,
            )
        except NoOee as e:
            raise HTTPException(404, detail=str(e)) from None
        except PeriodError as e:
            raise HTTPException(422, detail=f"bad window: {e}") from None

    return router
