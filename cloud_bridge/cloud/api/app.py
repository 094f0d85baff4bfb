"""Builds the cloud evidence API application."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cloud_bridge.cloud.api.auth import caller
from cloud_bridge.cloud.api.portal.packs import build_packs
from cloud_bridge.cloud.api.portal.pages import build_portal
from cloud_bridge.cloud.api.prom import ApiMetrics, RequestMetrics
from cloud_bridge.cloud.api.routes import MAX_UPLOAD, router
from cloud_bridge.cloud.evidence.fill import DayFiller
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.cloud.ledger.users import CloudUsers
from cloud_bridge.webapp import Site, install
from cloud_bridge.webauth import Sessions
from edge_config.models import CloudConfig
from edge_config.version import __version__

MAX_BODY = MAX_UPLOAD + (1 << 20)


def now_ms() -> int:
    return int(time.time() * 1000)


def create_cloud_app(
    config: CloudConfig,
    store: EvidenceStore | None = None,
    *,
    clock: Callable[[], int] = now_ms,
    fill: bool | None = None,
) -> FastAPI:
    """The app; with no `store`, one is opened on the config's ledger when the app starts (and closed
    when it stops). `clock` gives "now" in epoch ms (tests pin it). `fill`: compute the overview's day
    summaries in the background (`DayFiller`, if `evidence.fill_days`); by default when the app opens its store."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = store is None
        app.state.store = store if store is not None else EvidenceStore(config.ledger.url)
        app.state.users = CloudUsers(app.state.store.db)
        app.state.sessions = Sessions(app.state.users.session_key(), max_age_s=config.auth.session_ttl)
        filler = None
        if (own if fill is None else fill) and config.evidence.fill_days > 0:
            filler = DayFiller(app.state.store, config, clock)
            filler.start()
        app.state.filler = filler
        try:
            yield
        finally:
            if filler is not None:
                filler.stop()
            if own:
                app.state.store.close()

    # the OpenAPI document is the API's published contract (README "APIs"); the docs pages are not served:
    # they load their scripts from a CDN, which the pages' CSP refuses and a plant's network may not reach
    app = FastAPI(title="edgegw evidence API", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.config = config
    app.state.clock = clock
    app.state.store = store
    app.include_router(router)

    def check_login(name: str, password: str) -> int | None:
        user = app.state.users.login(name, password)
        return None if user is None else int(user.epoch)

    site = Site(
        templates="cloud_bridge.cloud.api.portal",
        title_key="ui.portal",
        nav=[("/", "ui.overview"), ("/verify", "ui.verify_pack")],
        sessions=lambda r: r.app.state.sessions,
        check_login=check_login,
        secure_cookies=lambda _r: config.auth.secure_cookies,
    )
    install(app, site, max_body=MAX_BODY)
    metrics = ApiMetrics()
    app.add_middleware(RequestMetrics, metrics=metrics)

    @app.get("/metrics", dependencies=[Depends(caller)], include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(build_portal(site))
    app.include_router(build_packs(site))
    return app
