"""Builds the edge API application: the JSON API, `/metrics`, and the console's pages, all behind the
login but `GET /api/v1/health` (see `gateway.api.auth`). No `/docs`, `/redoc` or `/openapi.json`: they
would be open without a login, and the docs pages load scripts from a CDN (refused by the console's CSP,
and offline anyway); `app.openapi()` still builds the document in-process."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from cloud_bridge.webapp import Site, install
from cloud_bridge.webauth import wants_html
from edge_config.version import __version__
from gateway.api.auth import EdgeAuth, get_auth, requires
from gateway.api.console.editor import build_editor
from gateway.api.console.pages import build_pages
from gateway.api.console.users import build_users
from gateway.api.metrics_routes import build_metrics_router
from gateway.api.routes import build_health_router, build_router
from gateway.api.view import AgentView
from gateway.users import UserError, role_at_least

log = logging.getLogger(__name__)

MAX_BODY = 8 << 20  # the largest request body: a tag sheet (5 MB) and its form around it
NAV = [("/", "ui.devices"), ("/editor", "ui.editor"), ("/users", "ui.users")]


def create_app(agent: AgentView) -> FastAPI:
    auth = EdgeAuth(agent.users, agent.config.auth.session_ttl, agent.config.auth.secure_cookies)

    def check_login(name: str, password: str) -> int | None:
        user = auth.users.login(name, password)
        return None if user is None else user.epoch

    site = Site(
        templates="gateway.api.console",
        title_key="ui.console",
        nav=NAV,
        sessions=lambda r: get_auth(r).sessions,
        check_login=check_login,
        secure_cookies=lambda r: get_auth(r).secure_cookies,
        nav_visible=lambda user, href: href != "/users" or role_at_least(user.role, "admin"),
    )
    app = FastAPI(title="edgegw edge API", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.auth = auth
    install(app, site, max_body=MAX_BODY)
    logged: list[str] = []  # the users-file problem last logged: each one once, not at every request

    @app.exception_handler(UserError)
    async def users_file_broken(request: Request, exc: UserError) -> Response:
        """The users file cannot be read: fail closed (nobody is let in) with 503 and the reason."""
        reason = str(exc)
        if logged != [reason]:
            logged[:] = [reason]
            log.error("%s: every login and authenticated request is refused until it is fixed", reason)
        if not wants_html(request):
            return JSONResponse({"detail": reason}, status_code=503)
        zh = "无法读取用户文件" + reason.removeprefix("cannot read the users file")
        return site.render(
            request,
            "login.html.j2",
            title="login",
            status=503,
            next="/",
            failed=False,
            flashes=[("error", reason if site.lang(request) == "en" else zh)],
        )

    viewer = [Depends(requires("viewer"))]
    app.include_router(build_health_router(agent))
    app.include_router(build_router(agent), dependencies=viewer)
    app.include_router(build_metrics_router(agent), dependencies=viewer)
    registry: list[Any] = []  # made at the first scrape: prometheus-client is not loaded before

    @app.get("/metrics", dependencies=viewer, include_in_schema=False)
    def metrics(_request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from gateway.api.prom import registry_for

        if not registry:
            registry.append(registry_for(agent))
        return Response(generate_latest(registry[0]), media_type=CONTENT_TYPE_LATEST)

    app.include_router(build_pages(agent, site))
    app.include_router(build_editor(agent, site))
    app.include_router(build_users(agent, site))
    return app
