"""fastpublish against asyncua's decoder: the same Publish responses, encoded by asyncua, read both ways
give the same Readings; a response of another shape is left to asyncua (None), never misread."""

from __future__ import annotations

import math
import random
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from drivers.base import Reading
from drivers.opcua.fastpublish import DataChanges, epoch_ms_of_ticks, read_publish
from drivers.opcua.values import epoch_ms, reading_from, reading_of

NOW = 1_800_000_000_000
VT = ua.VariantType
RANGES = {VT.SByte: 7, VT.Byte: 8, VT.Int16: 15, VT.UInt16: 16, VT.Int32: 31, VT.UInt32: 32, VT.Int64: 63,
          VT.UInt64: 64}  # fmt: skip


def _code(value: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(value))


def _value(rng: random.Random, vt: ua.VariantType) -> Any:
    if vt == VT.Boolean:
        return rng.random() < 0.5
    if vt in RANGES:
        bits = RANGES[vt]
        return rng.randrange(-(2**bits), 2**bits) if bits in (7, 15, 31, 63) else rng.randrange(2**bits)
    if vt == VT.Float:
        special = [math.nan, math.inf, -math.inf, 0.0, -0.0]
        f = rng.choice(special) if rng.random() < 0.1 else rng.uniform(-1e6, 1e6)
        return struct.unpack("<f", struct.pack("<f", f))[0]
    if vt == VT.Double:
        return rng.choice([math.nan, math.inf, 0.0]) if rng.random() < 0.1 else rng.uniform(-1e12, 1e12)
    if vt == VT.String:
        return rng.choice(["", "运行 / running", "a" * 5000, "x\u00e9\u4e2d\U0001f600", None])
    return None


def _time(rng: random.Random) -> ua.DateTime | None:
    choice = rng.random()
    if choice < 0.15:
        return None
    if choice < 0.2:
        return ua.DateTime(1601, 1, 1, tzinfo=UTC)  # OPC UA's "no timestamp"
    base = datetime(2026, 12, 4, tzinfo=UTC) + timedelta(microseconds=rng.randrange(-(10**14), 10**14))
    return ua.DateTime.fromtimestamp(base.timestamp(), UTC)


def _item(rng: random.Random, handle: int) -> ua.MonitoredItemNotification:
    vt = rng.choice([VT.Null, VT.Boolean, *RANGES, VT.Float, VT.Double, VT.Double, VT.String])
    dv = ua.DataValue(
        ua.Variant(_value(rng, vt), vt) if rng.random() < 0.95 else None,
        StatusCode=rng.choice([None, _code(0), _code(0x40940000), _code(0x80340000)]),
        SourceTimestamp=_time(rng),
        ServerTimestamp=_time(rng),
    )
    return ua.MonitoredItemNotification(ClientHandle=handle, Value=dv)


def _response(notifications: list[Any], *, seq: int = 9, available: list[int] | None = None) -> bytes:
    resp = ua.PublishResponse()
    resp.Parameters.SubscriptionId = 42
    resp.Parameters.AvailableSequenceNumbers = available or []
    resp.Parameters.Results = [_code(0)] * len(available or [])
    resp.Parameters.NotificationMessage = ua.NotificationMessage(
        SequenceNumber=seq, PublishTime=ua.DateTime.now(UTC), NotificationData=notifications
    )
    return struct_to_binary(resp)


def _reference(raw: bytes) -> tuple[int, int, list[Reading]]:
    res = struct_from_binary(ua.PublishResponse, Buffer(raw)).Parameters
    readings = [
        reading_from(f"t{item.ClientHandle}", item.Value, NOW)
        for notif in res.NotificationMessage.NotificationData
        for item in notif.MonitoredItems
    ]
    return res.SubscriptionId, res.NotificationMessage.SequenceNumber, readings


def _fast(raw: bytes) -> tuple[int, int, list[Reading]]:
    fast = read_publish(raw)
    assert fast is not None, "the common shape must be read by fastpublish"
    res = fast.Parameters
    readings = [
        reading_of(f"t{handle}", value, vtype, code, ts or NOW)
        for notif in res.NotificationMessage.NotificationData
        for handle, value, vtype, code, ts in notif.changes
    ]
    return res.SubscriptionId, res.NotificationMessage.SequenceNumber, readings


def _same(a: Reading, b: Reading) -> bool:
    """Readings equal, NaN included (a bad reading's value is None either way)."""
    return a == b or (
        (a.tag, a.ts, a.quality, a.error) == (b.tag, b.ts, b.quality, b.error)
        and (isinstance(a.value, float) and isinstance(b.value, float) and math.isnan(a.value) and math.isnan(b.value))
    )


@pytest.mark.parametrize("seed", range(8))
def test_random_responses_read_the_same_as_asyncua(seed: int) -> None:
    rng = random.Random(seed)
    notifications = [
        ua.DataChangeNotification(
            MonitoredItems=[_item(rng, rng.randrange(1, 2**32)) for _ in range(rng.randrange(0, 300))]
        )
        for _ in range(rng.randrange(1, 4))
    ]
    raw = _response(notifications, seq=rng.randrange(2**32), available=[rng.randrange(2**32) for _ in range(seed)])
    ref, fast = _reference(raw), _fast(raw)
    assert ref[:2] == fast[:2]
    assert len(ref[2]) == len(fast[2]) == sum(len(n.MonitoredItems) for n in notifications)
    assert all(_same(a, b) for a, b in zip(ref[2], fast[2], strict=True)), [
        (a, b) for a, b in zip(ref[2], fast[2], strict=True) if not _same(a, b)
    ][:3]


def test_a_keep_alive_reads_as_no_notification() -> None:
    fast = read_publish(_response([], seq=17))
    assert fast is not None
    assert fast.Parameters.NotificationMessage.NotificationData == []
    assert fast.Parameters.NotificationMessage.SequenceNumber == 17


def test_a_response_of_another_shape_is_left_to_asyncua() -> None:
    now = ua.DateTime.now(UTC)
    plain = ua.MonitoredItemNotification(ClientHandle=1, Value=ua.DataValue(ua.Variant(1.5, VT.Double)))
    others: dict[str, list[Any]] = {
        "status change": [ua.StatusChangeNotification(Status=_code(0x80290000))],
        "array": [ua.DataChangeNotification(MonitoredItems=[
            ua.MonitoredItemNotification(ClientHandle=1, Value=ua.DataValue(ua.Variant([1.0, 2.0], VT.Double)))])],
        "picoseconds": [ua.DataChangeNotification(MonitoredItems=[
            ua.MonitoredItemNotification(ClientHandle=1, Value=ua.DataValue(
                ua.Variant(1.0, VT.Double), SourceTimestamp=now, SourcePicoseconds=ua.UInt16(5)))])],
        "a DateTime value": [ua.DataChangeNotification(MonitoredItems=[
            ua.MonitoredItemNotification(ClientHandle=1, Value=ua.DataValue(ua.Variant(now, VT.DateTime)))])],
        "events": [ua.EventNotificationList(Events=[])],
        "data then a status change": [ua.DataChangeNotification(MonitoredItems=[plain]),
                                      ua.StatusChangeNotification(Status=_code(0))],
    }  # fmt: skip
    for what, notifications in others.items():
        raw = _response(notifications)
        assert read_publish(raw) is None, what
        struct_from_binary(ua.PublishResponse, Buffer(raw))  # asyncua reads it
    raw = _response([ua.DataChangeNotification(MonitoredItems=[plain])])
    assert read_publish(raw) is not None
    for cut in (1, 10, len(raw) // 2, len(raw) - 1):  # a truncated message: None, never an exception
        assert read_publish(raw[:cut]) is None
    assert read_publish(raw + b"\x00") is None  # nor bytes past its end
    other_type = ua.ReadResponse()
    assert read_publish(struct_to_binary(other_type)) is None


def test_a_failed_service_result_is_left_to_asyncua() -> None:
    resp = ua.PublishResponse()
    resp.ResponseHeader.ServiceResult = _code(ua.StatusCodes.BadTooManyPublishRequests)
    assert read_publish(struct_to_binary(resp)) is None


def test_ticks_to_epoch_ms_as_asyncua_and_epoch_ms() -> None:
    rng = random.Random(3)
    max_ticks = ua.uatypes.MAX_OPC_FILETIME
    samples = [0, 1, 10, 863_999_999_999, 864_000_000_000, 116_444_736_000_000_000, max_ticks - 1]
    samples += [rng.randrange(0, max_ticks) for _ in range(20_000)]
    samples += [116_444_736_000_000_000 + rng.randrange(-(10**15), 10**15) for _ in range(20_000)]
    for ticks in samples:
        assert epoch_ms_of_ticks(ticks) == epoch_ms(ua.win_epoch_to_datetime(ticks)), ticks
    y1994, y2000 = (757_382_400 + 11_644_473_600) * 10**7, (946_684_800 + 11_644_473_600) * 10**7
    assert epoch_ms_of_ticks(y1994) is None and epoch_ms_of_ticks(y2000 - 10_000) is None  # a clock never set
    assert epoch_ms_of_ticks(y2000) == 946_684_800_000


def test_data_changes_hold_their_items() -> None:
    value = ua.DataValue(ua.Variant(2.5, VT.Double), StatusCode=None)
    raw = _response(
        [ua.DataChangeNotification(MonitoredItems=[ua.MonitoredItemNotification(ClientHandle=7, Value=value)])]
    )
    fast = read_publish(raw)
    assert fast is not None
    (notif,) = fast.Parameters.NotificationMessage.NotificationData
    assert isinstance(notif, DataChanges) and notif.changes == [(7, 2.5, int(VT.Double), 0, None)]
