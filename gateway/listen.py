"""The edge API's socket, bound at start-up, with the web stack imported at its first connection.

uvicorn, Starlette, FastAPI and the console's routes take ≈ 12 MB of an agent's memory (README
"Performance"), and most gateways run for months with nobody opening their console. So the agent binds
the API's address when it starts (a port in use is an error at once, as before) and waits for the first
connection to be *pending* on the socket, without accepting it; only then does it import the web stack and
hand the same listening socket to uvicorn, which accepts that connection from the kernel's backlog. The
first request waits for the import (≈ 0.5 s); every later one is served as before. Once loaded the stack
stays: Python does not unload modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)


class ListenError(RuntimeError):
    """The API's address cannot be bound (in use, not an address of this machine, not permitted)."""


def bind(host: str, port: int) -> socket.socket:
    """A non-blocking listening TCP socket on host:port (an IPv6 host may be given in brackets)."""
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    try:
        sock = socket.create_server((bare, port), family=family, backlog=2048)
    except OSError as e:
        raise ListenError(f"cannot listen on {host}:{port} for the API: {e.strerror or e}") from None
    sock.setblocking(False)
    return sock


async def first_connection(sock: socket.socket, stop: asyncio.Event) -> bool:
    """Wait until a connection is pending on `sock` (True) or `stop` is set (False); nothing is accepted."""
    loop = asyncio.get_running_loop()
    pending = asyncio.Event()
    loop.add_reader(sock.fileno(), pending.set)
    try:
        waits = [asyncio.ensure_future(pending.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
    finally:
        loop.remove_reader(sock.fileno())
    return pending.is_set() and not stop.is_set()


async def serve_when_asked(sock: socket.socket, make_app: Callable[[], Any], stop: asyncio.Event) -> None:
    """Serve `make_app()` under uvicorn on `sock` from its first connection until `stop`; closes `sock`."""
    try:
        if not await first_connection(sock, stop):
            return
        import uvicorn

        class QuietServer(uvicorn.Server):
            """uvicorn without its own signal handlers: the agent owns SIGINT/SIGTERM and stops the API."""

            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        log.info("the API's first connection: loading the web stack")
        config = uvicorn.Config(
            make_app(),
            log_level="warning",
            lifespan="off",
            http="h11",  # not httptools, and no WebSocket protocol: neither module is loaded (memory)
            ws="none",
        )
        server = QuietServer(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        await stop.wait()
        server.should_exit = True
        await serving
    finally:
        sock.close()
