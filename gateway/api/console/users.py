"""The users page (admin): the console's users with their roles and token counts; add one, remove one, make
an API token (shown once, on the answer to that request only). Every change is a form with the CSRF token;
the users file is the one `edgegw user` edits (`gateway.users`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from cloud_bridge.webapp import Site
from gateway.api.auth import Admin
from gateway.api.view import AgentView
from gateway.users import ROLES, UserError


def build_users(agent: AgentView, site: Site) -> APIRouter:
    router = APIRouter(prefix="/users", include_in_schema=False)

    def page(request: Request, status: int = 200, **extra: Any) -> HTMLResponse:
        extra.setdefault("flashes", [])
        return site.render(
            request, "users.html.j2", title="users", status=status, users=agent.users.users(), roles=ROLES, **extra
        )

    @router.get("", response_class=HTMLResponse)
    def users(request: Request, _user: Admin) -> HTMLResponse:
        return page(request)

    @router.post("", response_class=HTMLResponse)
    def add(
        request: Request,
        _user: Admin,
        name: Annotated[str, Form(max_length=64)],
        role: Annotated[str, Form(max_length=16)],
        password: Annotated[str, Form(min_length=1, max_length=1024)],
    ) -> HTMLResponse:
        try:
            agent.users.add(name, role, password)
        except (UserError, ValueError) as e:
            return page(request, status=422, flashes=[("error", str(e))])
        return page(request, flashes=[("ok", site.text(request, "ui.user_added", name=name, role=role))])

    @router.post("/{name}/remove", response_class=HTMLResponse)
    def remove(request: Request, name: str, user: Admin) -> HTMLResponse:
        if name == user.name:
            return page(request, status=409, flashes=[("error", site.text(request, "ui.not_yourself"))])
        try:
            agent.users.remove(name)
        except UserError as e:
            return page(request, status=404, flashes=[("error", str(e))])
        return page(request, flashes=[("ok", site.text(request, "ui.user_removed", name=name))])

    @router.post("/{name}/token", response_class=HTMLResponse)
    def token(request: Request, name: str, _user: Admin) -> HTMLResponse:
        try:
            secret = agent.users.add_token(name, label="console")
        except UserError as e:
            return page(request, status=404, flashes=[("error", str(e))])
        return page(request, new_token=(name, secret))

    return router
