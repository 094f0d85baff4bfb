"""StatusCode → quality, timestamps, and every built-in type normalized to what the wire carries."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from asyncua import ua

from drivers.base import Reading
from drivers.opcua.values import (
    MAX_TEXT,
    NotRepresentable,
    epoch_ms,
    quality_of,
    reading_from,
    status_name,
    to_raw,
)

VT = ua.VariantType
SC = ua.StatusCodes
T0 = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=timezone.utc)
T0_MS = 1714979289123
NOW_MS = 1_800_000_000_000

QUALITY = [
    (SC.Good, "good"),
    (0x000000FF, "good"),  # info bits do not change the severity
    (SC.GoodLocalOverride, "good"),
    (SC.UncertainLastUsableValue, "uncertain"),
    (SC.UncertainSensorNotAccurate, "uncertain"),
    (SC.UncertainEngineeringUnitsExceeded, "uncertain"),
    (SC.BadNodeIdUnknown, "bad"),
    (SC.BadSensorFailure, "bad"),
    (SC.BadCommunicationError, "bad"),
    (0xC0000000, "bad"),  # severity 11 is reserved: treat as bad
]


@pytest.mark.parametrize(("code", "quality"), QUALITY)
def test_quality_from_status_code(code: int, quality: str) -> None:
    assert quality_of(code) == quality


def test_status_names() -> None:
    assert status_name(SC.BadNodeIdUnknown) == "BadNodeIdUnknown (0x80340000)"
    assert status_name(SC.UncertainLastUsableValue | 0x0400) == "UncertainLastUsableValue (0x40900400)"


# (value, variant type, normalized)
VALUES: list[tuple[Any, VT | None, Any]] = [
    (True, VT.Boolean, True),
    (-8, VT.SByte, -8),
    (200, VT.Byte, 200),
    (-12345, VT.Int16, -12345),
    (54321, VT.UInt16, 54321),
    (-2_000_000_000, VT.Int32, -2_000_000_000),
    (4_000_000_000, VT.UInt32, 4_000_000_000),
    (-9_000_000_000_000_000_000, VT.Int64, -9_000_000_000_000_000_000),
    (18_000_000_000_000_000_000, VT.UInt64, 18_000_000_000_000_000_000),
    (21.299999237060547, VT.Float, 21.3),  # a float32 carries ~7 digits: don't invent more
    (3.141592653589793, VT.Double, 3.141592653589793),
    ("反应釜 ok", VT.String, "反应釜 ok"),
    (T0, VT.DateTime, "2024-05-06T07:08:09.123Z"),
    (uuid.UUID("09087e75-8e5e-499b-954f-f2a9603db28a"), VT.Guid, "09087e75-8e5e-499b-954f-f2a9603db28a"),
    (b"\x01\x02\xff", VT.ByteString, "AQL/"),
    (ua.XmlElement("<a>1</a>"), VT.XmlElement, "<a>1</a>"),  # type: ignore[arg-type]
    (ua.NodeId("Reactor1.Temperature", 2), VT.NodeId, "ns=2;s=Reactor1.Temperature"),  # type: ignore[arg-type]
    (ua.QualifiedName("Temperature", 2), VT.QualifiedName, "2:Temperature"),
    (ua.LocalizedText("温度", "zh-CN"), VT.LocalizedText, "温度"),
    (ua.StatusCode(SC.BadNodeIdUnknown), VT.StatusCode, 0x80340000),  # type: ignore[arg-type]
    (ua.NodeClass.Variable, VT.Int32, 2),  # enumerations travel as their number
    (None, VT.Null, None),
    ([1.5, -2.25, 3.0], VT.Double, "[1.5,-2.25,3.0]"),
    ([0.10000000149011612, 0.20000000298023224], VT.Float, "[0.1,0.2]"),
    ([1, -2, 3], VT.Int32, "[1,-2,3]"),
    ([[1, 2], [3, 4]], VT.Int32, "[[1,2],[3,4]]"),  # a matrix stays nested
    ([True, False], VT.Boolean, "[true,false]"),
    (["a", "乙"], VT.String, '["a","乙"]'),
    ([T0], VT.DateTime, '["2024-05-06T07:08:09.123Z"]'),
    ([], VT.Int32, "[]"),
    (ua.Range(Low=0.0, High=2.5), VT.ExtensionObject, '{"Low":0.0,"High":2.5}'),
    (ua.EUInformation(UnitId=4408652, DisplayName=ua.LocalizedText("°C")), VT.ExtensionObject,
     '{"NamespaceUri":null,"UnitId":4408652,'
     '"DisplayName":"°C","Description":""}'),
]  # fmt: skip


@pytest.mark.parametrize(("value", "vtype", "expected"), VALUES)
def test_every_builtin_type_is_normalized(value: Any, vtype: VT | None, expected: Any) -> None:
    got = to_raw(value, vtype)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [1.0, float("-inf")], "x" * (MAX_TEXT + 1)])
def test_values_the_wire_cannot_carry_are_refused(value: Any) -> None:
    with pytest.raises(NotRepresentable):
        to_raw(value, VT.Double)


def test_epoch_ms() -> None:
    assert epoch_ms(T0) == T0_MS
    assert epoch_ms(T0.replace(tzinfo=None)) == T0_MS  # naive means UTC
    assert epoch_ms(None) is None
    assert epoch_ms(datetime(1601, 1, 1, tzinfo=timezone.utc)) is None  # OPC UA's "no timestamp"
    # a clock never set (the cloud refuses a message stamped before 2000 whole)
    assert epoch_ms(datetime(1994, 1, 1, tzinfo=timezone.utc)) is None
    assert epoch_ms(datetime(1999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc)) is None
    assert epoch_ms(datetime(2000, 1, 1, tzinfo=timezone.utc)) == 946_684_800_000


def dv(
    value: Any, vtype: VT, code: int = SC.Good, source: datetime | None = T0, server: datetime | None = None
) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value, vtype), StatusCode=ua.StatusCode(code), SourceTimestamp=source,  # type: ignore[arg-type]
                        ServerTimestamp=server)  # fmt: skip


READINGS = [
    ("source timestamp kept", dv(1.5, VT.Double, server=T0 + timedelta(seconds=3)), Reading("t", 1.5, T0_MS)),
    ("server timestamp as fallback", dv(1.5, VT.Double, source=None, server=T0), Reading("t", 1.5, T0_MS)),
    ("receipt time when neither", dv(1.5, VT.Double, source=None), Reading("t", 1.5, NOW_MS)),
    ("a PLC's clock never set: the server's", dv(1.5, VT.Double, source=datetime(1994, 1, 1), server=T0),
     Reading("t", 1.5, T0_MS)),
    ("neither clock set: receipt time", dv(1.5, VT.Double, source=datetime(1970, 1, 2), server=datetime(1984, 1, 1)),
     Reading("t", 1.5, NOW_MS)),
    ("uncertain keeps the value", dv(7.5, VT.Double, SC.UncertainLastUsableValue),
     Reading("t", 7.5, T0_MS, "uncertain", "UncertainLastUsableValue (0x40900000)")),
    ("bad drops the value", dv(7.5, VT.Double, SC.BadSensorFailure),
     Reading("t", None, T0_MS, "bad", "BadSensorFailure (0x808C0000)")),
    ("NaN is bad", dv(float("nan"), VT.Double), Reading("t", None, T0_MS, "bad", "not a finite number")),
    ("array as JSON", dv([1, 2], VT.Int32), Reading("t", "[1,2]", T0_MS)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "value", "expected"), READINGS, ids=[c for c, _, _ in READINGS])
def test_reading_from_a_data_value(case: str, value: ua.DataValue, expected: Reading) -> None:
    assert reading_from("t", value, NOW_MS) == expected


def test_a_browsed_unit_becomes_one_a_config_takes() -> None:
    from drivers.opcua.browse import unit_text
    from edge_config.models import TagBase

    for raw, want in [("°C", "°C"), ("m³/h\n", "m³/h"), ("kW\th", "kW h"), ("", None), (None, None), ("\x01", None)]:
        assert unit_text(raw) == want
    long = unit_text("x" * 500)
    assert long is not None and len(long) == 128
    TagBase(name="t", unit=long)  # validates (a longer or a control character would not: test_config)
