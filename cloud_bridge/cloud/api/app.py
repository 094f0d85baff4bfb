"""Builds the cloud evidence API application."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cloud_bridge.cloud.api.routes import router
from cloud_bridge.cloud.ledger.store import EvidenceStore
from edge_config.models import CloudConfig
from edge_config.version import __version__


def now_ms() -> int:
    return int(time.time() * 1000)


def create_cloud_app(
    config: CloudConfig,
    store: EvidenceStore | None = None,
    *,
    clock: Callable[[], int] = now_ms,
) -> FastAPI:
    """The app; with no `store`, one is opened on the config's ledger when the app starts (and closed
    when it stops). `clock` gives "now" in epoch ms (tests pin it)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = store is None
        app.state.store = store if store is not None else EvidenceStore(config.ledger.url)
        try:
            yield
        finally:
            if own:
                app.state.store.close()

    app = FastAPI(title="edgegw evidence API", version=__version__, lifespan=lifespan)
    app.state.config = config
    app.state.clock = clock
    app.state.store = store
    app.include_router(router)
    return app
