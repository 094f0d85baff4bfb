"""`GET /metrics` of the evidence API and portal (`edgegw serve`), Prometheus text format (prometheus-client).

`edgegw_api_requests_total` (labels `method`, `route` — the route's template, `/api/v1/enterprises/{ent}/…`,
never the raw path — and `status`), the histogram `edgegw_api_request_seconds` (`method`, `route`),
`edgegw_api_info` and the process's RSS and CPU (`process_*`). One registry per app (tests build many).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_config.version import __version__

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "edgegw_api_requests", "requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.seconds = Histogram(
            "edgegw_api_request_seconds",
            "time to answer a request",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        info = Gauge("edgegw_api_info", "the evidence API and its version", ["version"], registry=self.registry)
        info.labels(__version__).set(1)
        ProcessCollector(registry=self.registry)


class RequestMetrics:
    """ASGI middleware counting and timing every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        t0 = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            method = method if method in METHODS else "other"
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.seconds.labels(method, route).observe(time.perf_counter() - t0)
