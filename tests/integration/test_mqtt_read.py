"""paho on a `ReadBuffered` socket against a real Mosquitto: a burst of QoS 1 messages of every size (one
larger than a read) arrives whole, once each, in order, with a fraction of the system calls paho makes
on its own; MQTT 5 and 3.1.1."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from cloud_bridge.wire.mqtt import READ_SIZE, ReadBuffered, ReadBufferedClient, make_client
from gateway.bench.servers import MosquittoServer


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_burst_arrives_whole_once_and_in_order(mosquitto: MosquittoServer, protocol: str) -> None:
    rng = random.Random(7)
    sizes = [rng.choice([0, 1, 10, 127, 128, 600, 16_383, 16_384, 70_000]) for _ in range(1500)]
    sizes[700] = READ_SIZE * 2 + 3  # a message longer than two reads
    sent = [i.to_bytes(4, "big") + rng.randbytes(n) for i, n in enumerate(sizes)]

    got: list[bytes] = []
    done = threading.Event()
    sub = make_client(mosquitto.url, protocol, f"read-sub-{protocol}", None, None, None)
    assert isinstance(sub, ReadBufferedClient)
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_connect = lambda c, *a: c.subscribe("burst/#", qos=1)

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        got.append(msg.payload)
        if len(got) == len(sent):
            done.set()

    sub.on_message = on_message
    sub.connect("127.0.0.1", mosquitto.port)
    sub.loop_start()
    recvs = [0]
    try:
        assert subscribed.wait(10)
        sock = sub._sock
        assert isinstance(sock, ReadBuffered)
        inner = sock._sock
        real_recv = inner.recv

        class Counting:  # counts the system calls under the buffer
            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

            def recv(self, n: int) -> bytes:
                recvs[0] += 1
                return bytes(real_recv(n))

        sock._sock = Counting()
        pub = make_client(mosquitto.url, protocol, f"read-pub-{protocol}", None, None, None)
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        try:
            for i, payload in enumerate(sent):
                pub.publish(f"burst/{i % 7}", payload, qos=1)
            assert done.wait(60), f"{len(got)} of {len(sent)} arrived"
        finally:
            pub.disconnect()
            pub.loop_stop()
        time.sleep(0.3)  # a duplicate would show now
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert got == sent  # each whole, once, in order
    small = sum(1 for n in sizes if n < 16_000)
    print(f"{len(sent)} messages ({small} small), {recvs[0]} recv calls (paho alone: ≥ {3 * len(sent)})")
    assert recvs[0] < len(sent)  # paho alone makes three or four per message
