"""Listen addresses (`HOST:PORT`): one check for the config files and the command line."""

from __future__ import annotations


def split_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` → (host, port), the port 1…65535; ValueError naming the value otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port (a port 1…65535)")
    return host, int(port)
