"""What the edge console and the cloud portal share as web applications (FastAPI): the static files, the
language switch, the login and logout routes, security headers, the answers for "log in first" and "not
allowed", and rendering a page in the shared layout (`cloud_bridge.web`).

Each application passes what differs: its templates, its navigation, how a user name and password are
checked (`check_login`), and how the session key is found. It imports nothing of the cloud service.

Logins are throttled (`cloud_bridge.webauth.LoginGuard`, kept as `app.state.login_guard`): at most two
password checks at once, the rest wait up to 3 s and are then answered 503; five failures within a minute
from one address or for one user name are answered 429 until the minute has passed. Logging out revokes
the session on the server (`Sessions.revoke`), not only in the browser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Protocol
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from cloud_bridge.metrics.labels import label
from cloud_bridge.web import STATIC_DIR, environment, pick_lang

if TYPE_CHECKING:
    import jinja2

from cloud_bridge.webauth import (
    LANG_COOKIE,
    SESSION_COOKIE,
    BodyLimit,
    Forbidden,
    LoginGuard,
    LoginRequired,
    Sessions,
    cookie_settings,
    enforce_csrf,
    wants_html,
)

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


class Problem(BaseModel):
    """Every 4xx answer of the JSON APIs: `detail` says why (a text, or for some 422s a list or an object)."""

    detail: Any


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a router or route whose answers may be these 4xx codes (documented in OpenAPI)."""
    return {code: {"model": Problem, "description": PROBLEMS[code]} for code in codes}


PROBLEMS = {
    401: "no credential, or a wrong one: log in or send a bearer token",
    403: "the user's role or enterprise does not allow it, or a session request without its CSRF token",
    404: "no such thing (the reason says what)",
    413: "the request body is too large",
    422: "a parameter or body is not acceptable (the reason says which and why)",
}


class Principal(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...


@dataclass
class Site:
    """One application's pages. `templates` names the package whose `templates/` folder holds them; the
    Jinja2 environment is made at the first page rendered (the edge agent does not load Jinja2 before)."""

    templates: str
    title_key: str  # e.g. "ui.console"
    nav: Sequence[tuple[str, str]]  # (href, label key)
    sessions: Callable[[Request], Sessions]
    # (user name, password) -> the user's session epoch, or None when wrong
    check_login: Callable[[str, str], int | None]
    secure_cookies: Callable[[Request], bool] = field(default=lambda _r: False)
    # (the user, a nav href) -> whether that user's navigation shows it (default: every entry)
    nav_visible: Callable[[Any, str], bool] = field(default=lambda _u, _h: True)

    _env: jinja2.Environment | None = field(default=None, init=False, repr=False)

    def env(self) -> jinja2.Environment:
        if self._env is None:
            self._env = environment(self.templates)
        return self._env

    def lang(self, request: Request) -> str:
        return pick_lang(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))

    def text(self, request: Request, key: str, **values: object) -> str:
        """The label `key` in the request's language, with `values` filled in."""
        zh, en = label(key).format(**values) if values else label(key)
        return en if self.lang(request) == "en" else zh

    def render(
        self,
        request: Request,
        template: str,
        *,
        title: str = "",
        status: int = 200,
        flashes: Sequence[tuple[str, str]] = (),
        **context: Any,
    ) -> HTMLResponse:
        cookie = request.cookies.get(SESSION_COOKIE)
        user = getattr(request.state, "user", None)
        here = _here(request)
        html = (
            self.env()
            .get_template(template)
            .render(
                lang=self.lang(request),
                app_title=self.title_key,
                page_title=title,
                nav=[(h, k) for h, k in self.nav if self.nav_visible(user, h)] if user is not None else [],
                active="/" + request.url.path.strip("/").split("/")[0] if request.url.path != "/" else "/",
                here=here,
                user=user,
                csrf=self.sessions(request).csrf(cookie) if cookie and user is not None else "",
                flashes=list(flashes),
                **context,
            )
        )
        return HTMLResponse(html, status_code=status)


def install(app: FastAPI, site: Site, *, max_body: int) -> None:
    """Static files, language switch, login/logout, security headers, body limit, the auth answers."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    class Headers(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
            response = await call_next(request)
            for k, v in SECURITY_HEADERS.items():
                response.headers.setdefault(k, v)
            return response

    app.add_middleware(Headers)
    app.add_middleware(BodyLimit, limit=max_body)

    @app.exception_handler(LoginRequired)
    async def login_first(request: Request, _exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.headers.get("hx-request"):  # an htmx fragment: send the whole page to the login
            return Response(status_code=401, headers={"HX-Redirect": "/login?next=" + quote(target)})
        return RedirectResponse("/login?next=" + quote(target), status_code=303)

    @app.exception_handler(Forbidden)
    async def not_allowed(request: Request, exc: Forbidden) -> Response:
        return site.render(request, "forbidden.html.j2", title="403", status=403, role=str(exc.args[0]))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not wants_html(request) or request.headers.get("hx-request"):  # the API, an htmx fragment: JSON
            return await http_exception_handler(request, exc)
        return error_page(request, exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if not wants_html(request) or request.headers.get("hx-request"):
            return await request_validation_exception_handler(request, exc)
        parts = []
        for e in exc.errors()[:5]:
            where = ".".join(str(p) for p in e.get("loc", ())[1:])
            parts.append(f"{where}: {e.get('msg', '')}" if where else str(e.get("msg", "")))
        message = "; ".join(parts)
        return error_page(request, 422, message[:500])

    def error_page(request: Request, status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
        """A page's error as a page in the user's language (the API's stay JSON): what went wrong, and a way back."""
        key = f"error_{status}" if status in (403, 404, 413, 422, 429) else "error"
        r = site.render(
            request, "error.html.j2", title=str(status), status=status, heading=f"ui.{key}", message=message
        )
        r.headers.update(headers or {})
        return r

    @app.get("/lang/{code}", include_in_schema=False)
    def switch_language(code: str, next: str = "/") -> Response:
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        r = RedirectResponse(target, status_code=303)
        if code in ("zh", "en"):
            r.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="strict", httponly=True)
        return r

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return site.render(request, "login.html.j2", title="login", next=_local(next), failed=False)

    guard = LoginGuard()
    app.state.login_guard = guard

    def refuse_login(request: Request, next: str, status: int, wait: int, zh: str, en: str) -> Response:
        text = en if site.lang(request) == "en" else zh
        r = site.render(
            request,
            "login.html.j2",
            title="login",
            status=status,
            next=_local(next),
            failed=False,
            flashes=[("error", text)],
        )
        r.headers["retry-after"] = str(max(1, wait))
        return r

    @app.post("/login", include_in_schema=False)
    async def login(
        request: Request,
        username: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=1024)],
        next: Annotated[str, Form(max_length=2000)] = "/",
    ) -> Response:
        address = request.client.host if request.client is not None else ""

        def too_many(wait: int) -> Response:
            return refuse_login(
                request,
                next,
                429,
                wait,
                f"登录失败次数过多，请 {wait} 秒后再试",
                f"too many failed logins, try again in {wait} s",
            )

        wait = guard.refused(address, username)
        if wait:
            return too_many(wait)
        if not await guard.slot():  # every slot busy for LOGIN_WAIT_S: no hash queued without bound
            return refuse_login(
                request,
                next,
                503,
                1,
                "同时登录的请求过多，请稍后再试",
                "too many logins at once, try again in a moment",
            )
        try:
            wait = guard.refused(address, username)  # failures recorded while this one waited
            if wait:
                return too_many(wait)
            epoch = await run_in_threadpool(site.check_login, username, password)
            # recorded before the slot is given back: a login waiting for it sees this failure
            (guard.failed if epoch is None else guard.succeeded)(address, username)
        finally:
            guard.release()
        if epoch is None:
            return site.render(request, "login.html.j2", title="login", status=401, next=_local(next), failed=True)
        sessions = site.sessions(request)
        r = RedirectResponse(_local(next), status_code=303)
        r.set_cookie(
            SESSION_COOKIE,
            sessions.issue(username, epoch),
            max_age=int(sessions.max_age_s),
            **cookie_settings(site.secure_cookies(request)),  # type: ignore[arg-type]
        )
        return r

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        sessions = site.sessions(request)
        await enforce_csrf(request, sessions)
        await run_in_threadpool(sessions.revoke, request.cookies.get(SESSION_COOKIE))  # the edge writes a file
        r = RedirectResponse("/login", status_code=303)
        r.delete_cookie(SESSION_COOKIE, path="/")
        return r

    @app.exception_handler(413)
    async def too_large(_request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": getattr(exc, "detail", "request body too large")}, status_code=413)


def _here(request: Request) -> str:
    """Where the language switch comes back to: this page, or for the answer to a form (a POST, which a GET
    cannot repeat) the page the form was on (its same-origin Referer), else the start page."""
    if request.method in ("GET", "HEAD"):
        return request.url.path + (f"?{request.url.query}" if request.url.query else "")
    ref = urlsplit(request.headers.get("referer", ""))
    if ref.netloc == request.url.netloc and ref.path:
        return _local(ref.path + (f"?{ref.query}" if ref.query else ""))
    return "/"


def _local(target: str) -> str:
    """Only a path on this site (no open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
