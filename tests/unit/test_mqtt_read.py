"""`ReadBuffered`: paho's many small `recv` calls served from one read of what the kernel has; every byte
once, in order, whatever the sizes written and asked; the socket's own end of stream and "nothing yet"."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_bridge.wire.mqtt import READ_SIZE, ReadBuffered


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=40),
    st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=50),
)
def test_every_byte_once_in_order_whatever_the_sizes(writes: list[bytes], asks: list[int]) -> None:
    a, b = socket.socketpair()
    try:
        for w in writes:
            a.sendall(w)
        a.shutdown(socket.SHUT_WR)
        reader = ReadBuffered(b)
        got = bytearray()
        i = 0
        while True:
            ask = asks[i % len(asks)]
            i += 1
            chunk = reader.recv(ask)
            assert len(chunk) <= ask
            if not chunk:
                break  # the peer's end of stream, as the socket gives it
            got += chunk
        assert bytes(got) == b"".join(writes)
        assert reader.pending() == 0
    finally:
        a.close()
        b.close()


def test_what_it_holds_is_pending_and_nothing_yet_is_the_socket_s_own_error() -> None:
    a, b = socket.socketpair()
    try:
        b.setblocking(False)
        reader = ReadBuffered(b)
        with pytest.raises(BlockingIOError):  # paho's "try again later"
            reader.recv(1)
        a.sendall(b"\x30\x05hello" * 3)
        assert reader.recv(1) == b"\x30"  # one system call took all 21 bytes
        assert reader.pending() == 20
        assert reader.recv(1) == b"\x05" and reader.recv(5) == b"hello"
        assert reader.recv(100) == b"\x30\x05hello\x30\x05hello"  # never more than it holds
        assert reader.pending() == 0
        with pytest.raises(BlockingIOError):
            reader.recv(1)
        assert reader.fileno() == b.fileno() and reader.getsockname() == b.getsockname()  # the rest: the socket's
    finally:
        a.close()
        b.close()


def test_one_read_takes_up_to_read_size() -> None:
    a, b = socket.socketpair()
    calls: list[int] = []

    class Counting:
        def recv(self, n: int) -> bytes:
            calls.append(n)
            return b.recv(n)

    try:
        a.sendall(bytes(range(256)) * 40)  # 10,240 bytes: 2,560 four-byte asks
        reader = ReadBuffered(Counting())
        got = b"".join(reader.recv(4) for _ in range(2560))
        assert got == bytes(range(256)) * 40
        assert calls[0] == READ_SIZE and len(calls) < 10
    finally:
        a.close()
        b.close()
