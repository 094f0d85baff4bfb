"""OpcUaDriver._on_publish: a Publish response becomes one batch of Readings, and its decoded values are
let go at once while asyncua still acknowledges the response."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from pathlib import Path

from asyncua import ua

from drivers.base import Reading
from drivers.opcua import OpcUaDriver
from drivers.opcua.fastpublish import DataChanges, Message, PublishResult
from edge_config.models import OpcUaDevice


def _driver(tmp_path: Path) -> OpcUaDriver:
    dev = OpcUaDevice.model_validate(
        {"id": "r1", "driver": "opcua", "connection": {"endpoint": "opc.tcp://127.0.0.1:4840"},
         "tags": [{"name": "a", "node": "ns=2;i=1"}, {"name": "b", "node": "ns=2;i=2"}]}
    )  # fmt: skip
    return OpcUaDriver(dev, data_dir=tmp_path)


def _item(handle: int, value: float, ts: ua.DateTime) -> ua.MonitoredItemNotification:
    dv = ua.DataValue(ua.Variant(value, ua.VariantType.Double), SourceTimestamp=ts)
    return ua.MonitoredItemNotification(ClientHandle=handle, Value=dv)


def test_a_publish_response_is_one_batch_and_its_values_are_released(tmp_path: Path) -> None:
    drv = _driver(tmp_path)
    got: list[Sequence[Reading]] = []
    drv._emit = got.append
    ts = ua.DateTime(2026, 12, 4, 8, 0, 0, tzinfo=UTC)
    notif = ua.DataChangeNotification(MonitoredItems=[_item(1, 1.5, ts), _item(2, 2.5, ts), _item(9, 0.0, ts)])
    result = ua.PublishResult(NotificationMessage=ua.NotificationMessage(SequenceNumber=7, NotificationData=[notif]))
    drv._on_publish(result)
    ms = int(ts.timestamp() * 1000)
    assert got == [[Reading("a", 1.5, ms), Reading("b", 2.5, ms)]]  # handle 9 is no tag of this device
    assert notif.MonitoredItems == []  # the decoded values are not held until the next response
    # what asyncua reads after the callback to acknowledge the response is still there
    assert result.NotificationMessage.NotificationData and result.NotificationMessage.SequenceNumber == 7
    assert drv.stats.notifications == 2 and drv.stats.publishes == 1


def test_a_keep_alive_is_counted_and_emits_nothing(tmp_path: Path) -> None:
    drv = _driver(tmp_path)
    got: list[Sequence[Reading]] = []
    drv._emit = got.append
    drv._on_publish(ua.PublishResult(NotificationMessage=ua.NotificationMessage(SequenceNumber=8)))
    assert got == [] and drv.stats.keepalives == 1


def test_a_response_read_by_fastpublish_is_one_batch_and_released(tmp_path: Path) -> None:
    drv = _driver(tmp_path)
    got: list[Sequence[Reading]] = []
    drv._emit = got.append
    notif = DataChanges([(1, 1.5, 11, 0, 1_800_000_000_000), (2, 7, 6, 0x40940000, None), (9, 0.0, 11, 0, None)])
    drv._on_publish(PublishResult(3, Message(5, [notif])))
    (batch,) = got
    assert batch[0] == Reading("a", 1.5, 1_800_000_000_000)
    assert (batch[1].tag, batch[1].value, batch[1].quality) == ("b", 7, "uncertain")  # no timestamp: now
    assert len(batch) == 2 and notif.changes == [] and drv.stats.notifications == 2
