"""Pure parts of the publisher: reconnect backoff with jitter, the status payload with the backlog."""

from __future__ import annotations

import random

from cloud_bridge.publisher import reconnect_delay
from cloud_bridge.wire import Status, decode_status, encode_status


def test_reconnect_delay_grows_caps_and_spreads() -> None:
    random.seed(3)
    first = [reconnect_delay(1) for _ in range(200)]
    assert min(first) >= 1 and max(first) <= 2
    tenth = [reconnect_delay(10) for _ in range(200)]
    assert all(42 <= d <= 78 for d in tenth), "capped at 60 s ± 30 %"
    assert len(set(tenth)) > 10, "jitter spreads gateways apart"
    assert sorted(reconnect_delay(a, jitter=0) for a in range(1, 8)) == [1, 2, 4, 8, 16, 32, 60]


def test_gateway_status_carries_the_backlog() -> None:
    backlog = {"messages": 3, "bytes": 700, "samples": 300, "behind_ms": 5000, "dropped_messages": 0}
    payload = encode_status(Status(True, 1, version="0.1.0", backlog=backlog))
    back = decode_status(payload)
    assert back.backlog == backlog and back.version == "0.1.0" and back.online
