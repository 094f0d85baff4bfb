"""The ingester's MQTT receive path: one write of PUBACK packets per batch, byte for byte what paho's own
`ack` queues one message at a time, in the same order; and PUBLISH properties decoded into paho's
Properties with shared tables, with the same values and the same refusals as paho's own."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_bridge.wire.mqtt import SharedTableProperties, make_client, send_pubacks, share_property_tables


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_one_write_holds_the_pubacks_paho_would_send(protocol: str) -> None:
    client = make_client("mqtt://127.0.0.1:1", protocol, "acks", None, None, None, manual_ack=True)  # never connected
    mids = [1, 2, 255, 256, 65535, 7]
    for mid in mids:
        client.ack(mid, 1)
    one_by_one = [p["packet"] for p in client._out_packet]
    client._out_packet.clear()

    send_pubacks(client, mids)
    [batch] = client._out_packet
    assert batch["packet"] == b"".join(one_by_one)
    assert len(one_by_one) == len(mids) and batch["command"] & 0xF0 == 0x40  # queued as a PUBACK


def test_nothing_queued_for_no_messages() -> None:
    client = make_client("mqtt://127.0.0.1:1", "5", "acks", None, None, None, manual_ack=True)
    send_pubacks(client, [])
    assert not client._out_packet


# ---------------------------------------------------------------- PUBLISH properties, paho's tables shared


def _publish(props: Properties | None, extra: bytes = b"") -> tuple[int, bytes]:
    """(fixed header byte, rest) of a QoS 1 PUBLISH on `sf/v1/e/g/d/data`, packet id 7."""
    topic = b"sf/v1/e/g/d/data"
    packed = props.pack() if props is not None else b"\x00"
    if extra:  # append raw property bytes, fixing the properties length (one VBI byte: short lists only)
        packed = bytes([packed[0] + len(extra)]) + packed[1:] + extra
    return 0x32, struct.pack("!H", len(topic)) + topic + struct.pack("!H", 7) + packed + b'{"v":1}'


def _decoded(header: int, packet: bytes) -> Any:
    try:
        result = _packet.decode_publish(header, packet, MQTTProtocolVersion.MQTTv5)
    except Exception as e:
        return (type(e).__name__, str(e))
    props = result.properties
    values = {k: v for k, v in vars(props).items() if k not in ("packetType", "types", "names", "properties")}
    return (result.topic, result.mid, result.payload, values, str(props), props.json())


def _publish_props() -> list[Properties | None]:
    full = Properties(PacketTypes.PUBLISH)
    full.PayloadFormatIndicator = 1
    full.MessageExpiryInterval = 60
    full.ContentType = "application/json"
    full.ResponseTopic = "r/1"
    full.CorrelationData = b"\x00\x01"
    full.SubscriptionIdentifier = 3
    full.UserProperty = [("a", "b"), ("c", "温度")]
    one = Properties(PacketTypes.PUBLISH)
    one.SubscriptionIdentifier = 1
    return [None, Properties(PacketTypes.PUBLISH), one, full]


def test_shared_property_tables_decode_as_paho_does(monkeypatch: pytest.MonkeyPatch) -> None:
    packets = [_publish(p) for p in _publish_props()]
    packets += [
        _publish(None, b"\x03\x00\x01x\x03\x00\x01y"),  # ContentType twice: refused
        _publish(None, b"\x21\x00\x05"),  # ReceiveMaximum does not apply to PUBLISH: refused
        _publish(None, b"\x7f"),  # no such property: refused
        _publish(None, b"\x0b\x05\x0b\x06"),  # SubscriptionIdentifier twice: allowed, a list
    ]
    monkeypatch.setattr(_packet, "Properties", Properties)
    by_paho = [_decoded(h, p) for h, p in packets]
    share_property_tables()
    assert _packet.Properties is SharedTableProperties
    shared = [_decoded(h, p) for h, p in packets]
    assert shared == by_paho
    assert shared[3][3]["SubscriptionIdentifier"] == [3] and shared[-1][3]["SubscriptionIdentifier"] == [5, 6]
    assert [type(x) for x in by_paho[4:7]] == [tuple] * 3 and by_paho[4][0] == "MalformedPacket"
    # the shared tables are not changed by decoding: a packet without properties still has none afterwards
    assert _decoded(*_publish(None))[3] == {}
