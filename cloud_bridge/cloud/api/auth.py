"""Who is asking the cloud API: a bearer token, or the portal's session cookie (CSRF-checked on writes).
Users, tokens and the audit log: `cloud_bridge.cloud.ledger.users`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from cloud_bridge.cloud.ledger.users import CloudUser, CloudUsers
from cloud_bridge.webauth import SESSION_COOKIE, LoginRequired, Sessions, bearer, enforce_csrf, wants_html


def get_users(request: Request) -> CloudUsers:
    users: CloudUsers = request.app.state.users
    return users


def get_sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


async def caller(request: Request) -> CloudUser:
    users = get_users(request)
    token = bearer(request.headers.get("authorization"))
    if token is not None:
        user = users.by_token(token)
        by_cookie = False
    else:
        data = get_sessions(request).read(request.cookies.get(SESSION_COOKIE))
        found = users.user(data.user) if data is not None else None
        user = found if found is not None and data is not None and found.epoch == data.epoch else None
        by_cookie = True
    if user is None:
        if wants_html(request):
            raise LoginRequired()
        raise HTTPException(401, detail="log in or send a bearer token", headers={"WWW-Authenticate": "Bearer"})
    if by_cookie:
        await enforce_csrf(request, get_sessions(request))
    request.state.user = user
    return user


Caller = Annotated[CloudUser, Depends(caller)]
Users = Annotated[CloudUsers, Depends(get_users)]


def may_read(user: CloudUser, ent: str) -> None:
    if not user.may_read(ent):
        raise HTTPException(403, detail=f"{user.name} ({user.role}) may not read enterprise {ent!r}")
