"""Authentication pieces both web applications use (the edge console and API, the cloud portal and API).

- Passwords: argon2id through argon2-cffi (`hash_password`, `check_password`): memory-hard, the first
  choice of OWASP's password storage guidance, a maintained library with wheels for every platform
  we install on; no parameters of ours to get wrong.
- API tokens: 32 random bytes shown once as `egw_<id>_<secret>`; only the SHA-256 of the whole token is
  kept (a token is random, so a fast hash is enough and a lookup by hash is possible); compared with
  `hmac.compare_digest`.
- Sessions: a cookie signed with a per-installation key (itsdangerous, HMAC-SHA256, timestamped), HttpOnly,
  SameSite=Strict, holding the user name, the user's session epoch (a new one when a password changes or
  the user is added again, which ends every session of theirs) and a random nonce; logging out revokes
  the nonce until the cookie would have expired (`SessionRevocations`).
- Logins (`LoginGuard`): at most `LOGIN_SLOTS` password checks at once (each argon2 check holds 64 MiB), and
  after `MAX_FAILURES` failed logins within `FAILURE_WINDOW_S` from one address or for one user name, that
  address or name is refused (429) until the window has passed; the table is bounded.
- CSRF: every state-changing request that authenticates with the session cookie carries
  `X-CSRF-Token` (or the form field `csrf`), an HMAC of the session value under the same key; bearer-token
  requests carry no ambient authority and need none.

Nothing here logs a secret. It imports nothing of the cloud service or the uplink: the edge uses it too,
and FastAPI only when a request is refused, so `edgegw run` can use the pure parts (`is_loopback`, the
password and token hashes) before its web stack is loaded (`gateway.listen`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Protocol

from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "edgegw_session"
LANG_COOKIE = "edgegw_lang"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
TOKEN_PREFIX = "egw_"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_PASSWORD = 1024  # characters: bound the work a login can cause
LOGIN_SLOTS = 2  # password checks at once: argon2 holds 64 MiB for each
LOGIN_WAIT_S = 3.0  # how long a login waits for a free slot before it is answered 503
MAX_FAILURES = 5  # failed logins from one address, or for one user name, within FAILURE_WINDOW_S ...
FAILURE_WINDOW_S = 60.0  # ... and the next login of that address or name is refused until the window passes
MAX_TRACKED = 10_000  # addresses and names whose failures are remembered (the oldest are forgotten first)
MAX_REVOKED = 10_000  # logged-out sessions remembered in memory until they would have expired

if TYPE_CHECKING:
    from argon2 import PasswordHasher
    from fastapi import HTTPException, Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


@cache
def _argon2() -> tuple[PasswordHasher, str]:
    """argon2id with the library's current defaults (RFC 9106 low-memory profile), and a real hash to verify
    against when the user does not exist, so a login takes as long either way. Made at the first password
    hashed or checked: the edge agent does not load argon2 before its first login."""
    from argon2 import PasswordHasher

    hasher = PasswordHasher()
    return hasher, hasher.hash("no such user")


def hash_password(password: str) -> str:
    if not password or len(password) > MAX_PASSWORD:
        raise ValueError(f"a password has 1 to {MAX_PASSWORD} characters")
    return _argon2()[0].hash(password)


def check_password(stored: str | None, password: str) -> bool:
    """True when `password` matches the stored argon2 hash; as slow for an unknown user (stored None)."""
    if len(password) > MAX_PASSWORD:
        return False
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher, dummy = _argon2()
    try:
        return hasher.verify(stored or dummy, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class NewToken:
    """A token as created: `secret` is shown once and never stored; `token_id` and `sha256` are kept."""

    token_id: str
    secret: str
    sha256: str


def new_token() -> NewToken:
    token_id = secrets.token_hex(4)
    secret = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    return NewToken(token_id, secret, token_hash(secret))


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_id_of(secret: str) -> str | None:
    """The id part of a token as presented (`egw_<id>_<secret>`), or None when it is not one of ours."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    token_id, sep, rest = secret[len(TOKEN_PREFIX) :].partition("_")
    return token_id if sep and rest and len(token_id) == 8 else None


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class SessionData:
    user: str
    epoch: int
    nonce: str = ""
    expires_s: float = 0.0  # wall-clock time at which the cookie's signature stops being accepted


class SessionRevocations(Protocol):
    """Where logged-out sessions are remembered (by their nonce) until they would have expired anyway."""

    def revoked(self, nonce: str) -> bool: ...

    def revoke(self, nonce: str, until_s: float) -> None: ...


class MemoryRevocations:
    """Revoked session nonces in this process's memory: at most `cap`, the expired dropped first, then the
    ones closest to expiring."""

    def __init__(self, cap: int = MAX_REVOKED, clock: Callable[[], float] = time.time) -> None:
        self.cap = cap
        self.clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def revoked(self, nonce: str) -> bool:
        with self._lock:
            until = self._until.get(nonce)
        return until is not None and until > self.clock()

    def revoke(self, nonce: str, until_s: float) -> None:
        with self._lock:
            self._until[nonce] = until_s
            if len(self._until) > self.cap:
                now = self.clock()
                self._until = {n: u for n, u in self._until.items() if u > now}
                while len(self._until) > self.cap:
                    del self._until[min(self._until, key=self._until.__getitem__)]

    def __len__(self) -> int:
        return len(self._until)


@dataclass
class Sessions:
    """Signs and reads session cookies and derives their CSRF tokens from one secret key; a cookie whose
    nonce was revoked (logged out) is refused."""

    key: bytes
    max_age_s: float = 12 * 3600
    revocations: SessionRevocations = field(default_factory=MemoryRevocations)
    _serializer: URLSafeTimedSerializer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._serializer = URLSafeTimedSerializer(self.key, salt="edgegw-session")

    def issue(self, user: str, epoch: int) -> str:
        return self._serializer.dumps({"u": user, "e": epoch, "n": secrets.token_hex(8)})

    def _load(self, cookie: str | None) -> SessionData | None:
        if not cookie or len(cookie) > 4096:
            return None
        try:
            data, signed = self._serializer.loads(cookie, max_age=int(self.max_age_s), return_timestamp=True)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("u"), str) or not isinstance(data.get("e"), int):
            return None
        nonce = data.get("n")
        if not isinstance(nonce, str) or not nonce:
            return None
        return SessionData(data["u"], data["e"], nonce, signed.timestamp() + self.max_age_s)

    def read(self, cookie: str | None) -> SessionData | None:
        data = self._load(cookie)
        if data is None or self.revocations.revoked(data.nonce):
            return None
        return data

    def revoke(self, cookie: str | None) -> None:
        """Logging out: the cookie is refused from now on, by every reader sharing `revocations`."""
        data = self._load(cookie)
        if data is not None:
            self.revocations.revoke(data.nonce, data.expires_s)

    def csrf(self, cookie: str) -> str:
        return hmac.new(self.key, b"csrf:" + cookie.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, cookie: str, presented: str | None) -> bool:
        return presented is not None and same_secret(self.csrf(cookie), presented)


class LoginGuard:
    """Throttles logins. `refused(address, name)` is the seconds to wait when that client address or user
    name has failed `max_failures` times within `window_s` (0 when it may try); `failed` and `succeeded`
    record the outcome; `slot()` waits (at most `wait_s`) for one of `slots` password checks, so at most
    that many argon2 hashes are in memory at once. Failures are kept for at most `max_tracked` keys."""

    def __init__(
        self,
        *,
        slots: int = LOGIN_SLOTS,
        wait_s: float = LOGIN_WAIT_S,
        max_failures: int = MAX_FAILURES,
        window_s: float = FAILURE_WINDOW_S,
        max_tracked: int = MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots, self.wait_s = slots, wait_s
        self.max_failures, self.window_s, self.max_tracked = max_failures, window_s, max_tracked
        self.clock = clock
        self._busy = 0
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _keys(address: str, name: str) -> tuple[str, str]:
        return f"a:{address}", f"u:{name}"

    def refused(self, address: str, name: str) -> int:
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in self._keys(address, name):
                times = self._failures.get(key)
                if times is not None and len(times) >= self.max_failures:
                    wait = max(wait, times[0] + self.window_s - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, address: str, name: str) -> None:
        now = self.clock()
        with self._lock:
            for key in self._keys(address, name):
                times = self._failures.pop(key, None)
                if times is None:
                    times = deque(maxlen=self.max_failures)
                times.append(now)
                self._failures[key] = times  # the most recent at the end
            while len(self._failures) > self.max_tracked:
                self._failures.popitem(last=False)

    def succeeded(self, address: str, name: str) -> None:
        with self._lock:
            for key in self._keys(address, name):
                self._failures.pop(key, None)

    def tracked(self) -> int:
        return len(self._failures)

    def try_acquire(self) -> bool:
        with self._lock:
            if self._busy >= self.slots:
                return False
            self._busy += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._busy = max(0, self._busy - 1)

    async def slot(self) -> bool:
        """True once a password-check slot is held (give it back with `release`); False after `wait_s`."""
        deadline = time.monotonic() + self.wait_s
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True


def cookie_settings(secure: bool = False) -> dict[str, object]:
    """Keyword arguments of `Response.set_cookie` for the session cookie."""
    return {"httponly": True, "samesite": "strict", "secure": secure, "path": "/"}


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------- the web layer (FastAPI / Starlette)


class LoginRequired(Exception):
    """Raised by page routes with no valid session: the app answers with a redirect to its login page."""


class Forbidden(Exception):
    """Raised by page routes for a user whose role does not allow the page: the app answers 403 with a page."""


async def enforce_csrf(request: Request, sessions: Sessions) -> None:
    """403 unless a state-changing request made with the session cookie carries its CSRF token (header
    `X-CSRF-Token`, or the form field `csrf`)."""
    if request.method in SAFE_METHODS:
        return
    cookie = request.cookies.get(SESSION_COOKIE) or ""
    presented = request.headers.get(CSRF_HEADER)
    kind = request.headers.get("content-type", "")
    if presented is None and kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if not cookie or not sessions.csrf_ok(cookie, presented):
        from fastapi import HTTPException

        raise HTTPException(403, detail="CSRF token missing or wrong: reload the page and try again")


def wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and request.url.path != "/metrics"


@cache
def _too_large_type() -> type[HTTPException]:
    """An HTTPException of its own (made at first use: this module loads before the web stack), so that
    FastAPI answers it where an endpoint reads the body and `BodyLimit` knows it when it escapes elsewhere."""
    from fastapi import HTTPException as Base

    class BodyTooLarge(Base):
        pass

    return BodyTooLarge


def _holds_too_large(e: BaseException) -> bool:
    group = getattr(e, "exceptions", None)  # an exception group (built in from Python 3.11, anyio's before)
    if isinstance(group, (list, tuple)):
        return any(_holds_too_large(x) for x in group)
    return isinstance(e, _too_large_type())


class BodyLimit:
    """ASGI middleware: a request body larger than `limit` bytes is refused with 413 before it is read
    whole (by its Content-Length, or as it streams in)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # FastAPI answers it where the body is read
                    raise _too_large_type()(413, detail=f"request body larger than {self.limit >> 20} MB")
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, watched)
        except Exception as e:  # read outside an endpoint (a middleware's task): it arrives here, maybe in a group
            if not _holds_too_large(e):
                raise
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = f'{{"detail":"request body larger than {self.limit >> 20} MB"}}'.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
