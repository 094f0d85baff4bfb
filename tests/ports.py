"""Free TCP ports on loopback for servers the tests start."""

from __future__ import annotations

import socket

from gateway.bench.servers import free_port

__all__ = ["free_port", "free_port_block", "port_free"]


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(count: int) -> int:
    """First of `count` consecutive free ports (simulators take consecutive ports)."""
    for _ in range(100):
        base = free_port()
        if base + count <= 65536 and all(port_free(base + i) for i in range(1, count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports")
