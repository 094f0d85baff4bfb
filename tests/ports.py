"""Free TCP ports on loopback for servers the tests start (shared with the benchmarks)."""

from __future__ import annotations

from gateway.bench.servers import free_port, free_port_block, port_free

__all__ = ["free_port", "free_port_block", "port_free"]
