"""Who is asking, at the edge: a bearer API token or the console's session cookie (see `gateway.users`).

Every route but `GET /api/v1/health` depends on `Viewer`, `Engineer` or `Admin`. API routes answer 401
(no or a bad credential) or 403 (role too low, or a cookie request without its CSRF token); console pages
redirect to the login page instead. A users file that cannot be read raises `UserError`: the app answers
503 (`gateway.api.app`), nobody is let in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from cloud_bridge.webauth import (
    SESSION_COOKIE,
    Forbidden,
    LoginRequired,
    Sessions,
    bearer,
    enforce_csrf,
    wants_html,
)
from gateway.users import Role, User, UserStore, role_at_least


class EdgeAuth:
    def __init__(self, users: UserStore, session_ttl: float, secure_cookies: bool = False) -> None:
        self.users = users
        self.secure_cookies = secure_cookies
        # logged-out sessions are kept in the users file: refused by every process, and after a restart
        self.sessions = Sessions(users.session_key(), max_age_s=session_ttl, revocations=users)

    def from_cookie(self, cookie: str | None) -> User | None:
        data = self.sessions.read(cookie)
        if data is None:
            return None
        user = self.users.user(data.user)
        return user if user is not None and user.epoch == data.epoch else None

    def identify(self, request: Request) -> tuple[User | None, bool]:
        """(the user, whether by session cookie)."""
        token = bearer(request.headers.get("authorization"))
        if token is not None:
            return self.users.by_token(token), False
        return self.from_cookie(request.cookies.get(SESSION_COOKIE)), True


def get_auth(request: Request) -> EdgeAuth:
    auth: EdgeAuth = request.app.state.auth
    return auth


def requires(role: Role) -> Callable[[Request], Awaitable[User]]:
    async def dependency(request: Request) -> User:
        auth = get_auth(request)
        user, by_cookie = auth.identify(request)
        html = wants_html(request)
        if user is None:
            if html:
                raise LoginRequired()
            raise HTTPException(401, detail="log in or send a bearer token", headers={"WWW-Authenticate": "Bearer"})
        if not role_at_least(user.role, role):
            if html:
                raise Forbidden(role)
            raise HTTPException(403, detail=f"needs the {role} role; {user.name} is {user.role}")
        if by_cookie:
            await enforce_csrf(request, auth.sessions)
        request.state.user = user
        return user

    return dependency


Viewer = Annotated[User, Depends(requires("viewer"))]
Engineer = Annotated[User, Depends(requires("engineer"))]
Admin = Annotated[User, Depends(requires("admin"))]
