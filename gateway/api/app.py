"""Builds the edge API application."""

from __future__ import annotations

from fastapi import FastAPI

from edge_config.version import __version__
from gateway.api.metrics_routes import build_metrics_router
from gateway.api.routes import build_router
from gateway.api.view import AgentView


def create_app(agent: AgentView) -> FastAPI:
    app = FastAPI(title="edgegw edge API", version=__version__)
    app.include_router(build_router(agent))
    app.include_router(build_metrics_router(agent))
    return app
