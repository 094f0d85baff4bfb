"""The systemd notification protocol (sd_notify): READY once the agent runs, WATCHDOG while its event loop
turns, STOPPING on the way out. A few lines on a Unix datagram socket, so no library is needed (the
`systemd` Python bindings need the C library and headers; `sdnotify` on PyPI is these same lines).
Outside systemd (no NOTIFY_SOCKET) every call does nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(message: str) -> bool:
    """Send `message` (e.g. "READY=1") to the service manager; False when not run by one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.sendall(message.encode())
    except OSError as e:
        log.warning("could not notify the service manager (%s): %s", message, e)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings: half of what the service manager asked for (WatchdogSec=)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


async def serve(stop: asyncio.Event) -> None:
    """READY=1 now, WATCHDOG=1 every half watchdog period while the event loop runs, STOPPING=1 at `stop`.
    If the loop hangs (a blocked call, a deadlock) the pings stop and the service manager restarts us."""
    notify("READY=1")
    interval = watchdog_interval()
    while not stop.is_set():
        if interval is not None:
            notify("WATCHDOG=1")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval or 3600)
    notify("STOPPING=1")
