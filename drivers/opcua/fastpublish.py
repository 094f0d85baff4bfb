"""A Publish response's data changes read straight from its bytes (OPC 10000-6 binary encoding).

asyncua decodes each notification of a Publish response into seven Python objects (the notification, its
DataValue, Variant, StatusCode, two datetimes, the value) through generic per-field decoders; for a device
of 10,000 subscribed nodes that is most of the agent's CPU per value and, decoded all at once every
second, the peak that sets its memory (README "Performance"). This reads the common shape of a response
directly into one tuple per notification: (client handle, value, variant type, status code, timestamp in
epoch ms or None), the timestamp being the source's, else the server's.

Only the shape a server sends for subscribed scalar values is read here: data change notifications of
scalar Null, Boolean, integer, Float, Double or String variants, no picoseconds, no diagnostics, no string
table, timestamps between 1601-01-02 and 9999. Anything else (a status change, events, arrays, another
type, a diagnostic) returns None and the caller decodes the same bytes with asyncua, as before.
`tests/unit/test_opcua_fastpublish.py` holds this against asyncua's decoder.

Pure functions, no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.ua.ua_binary import get_string_encoding

from edge_config.timing import EARLIEST_MS

Change = tuple[int, Any, int, int, int | None]  # client handle, value, variant type, status code, ts ms

_PUBLISH_RESPONSE = ua.ObjectIds.PublishResponse_Encoding_DefaultBinary
_DATA_CHANGE = ua.ObjectIds.DataChangeNotification_Encoding_DefaultBinary
_U8, _U16, _I32, _U32 = struct.Struct("<B"), struct.Struct("<H"), struct.Struct("<i"), struct.Struct("<I")
_I64 = struct.Struct("<q")
_ITEM = struct.Struct("<IB")  # ClientHandle, the DataValue's encoding mask
_HEADER = struct.Struct("<qIIB")  # ResponseHeader: Timestamp, RequestHandle, ServiceResult, diagnostics mask
# scalar variant types read here: struct of the value (String separately)
_SCALARS: dict[int, struct.Struct] = {
    1: struct.Struct("<?"),  # Boolean
    2: struct.Struct("<b"),  # SByte
    3: struct.Struct("<B"),  # Byte
    4: struct.Struct("<h"),  # Int16
    5: struct.Struct("<H"),  # UInt16
    6: struct.Struct("<i"),  # Int32
    7: struct.Struct("<I"),  # UInt32
    8: struct.Struct("<q"),  # Int64
    9: struct.Struct("<Q"),  # UInt64
    10: struct.Struct("<f"),  # Float
    11: struct.Struct("<d"),  # Double
}
_STRING = 12
_TICKS_1970_US = 11_644_473_600_000_000  # 1601-01-01 → 1970-01-01 in microseconds
_DAY_US = 86_400_000_000
_MAX_TICKS = ua.uatypes.MAX_OPC_FILETIME  # asyncua clamps from here: left to it


class _NotCommon(Exception):
    """The response is not of the shape read here: asyncua decodes it."""


@dataclass(slots=True)
class DataChanges:
    """A DataChangeNotification's items, read by `read_publish` (asyncua's class is not made)."""

    changes: list[Change]


@dataclass(slots=True)
class Message:
    SequenceNumber: int
    NotificationData: list[DataChanges] = field(default_factory=list)


@dataclass(slots=True)
class PublishResult:
    """What asyncua's publish loop reads of a Publish response's parameters: the names are asyncua's."""

    SubscriptionId: int
    NotificationMessage: Message


@dataclass(slots=True)
class PublishResponse:
    Parameters: PublishResult


def epoch_ms_of_ticks(ticks: int) -> int | None:
    """A DateTime's 100 ns ticks since 1601 as epoch ms, the same as `values.epoch_ms` of asyncua's datetime:
    None before 1601-01-02 (OPC UA's 'no timestamp') and before 2000 (a clock never set: `EARLIEST_MS`). Ticks
    asyncua clamps (negative, year 9999 on) raise."""
    if ticks < 0 or ticks >= _MAX_TICKS:
        raise _NotCommon
    us = ticks // 10
    if us < _DAY_US:
        return None
    ms = int((us - _TICKS_1970_US) / 10**6 * 1000)  # datetime.timestamp()'s arithmetic, to the same float
    return ms if ms >= EARLIEST_MS else None


def _node_id(data: bytes, pos: int) -> tuple[int, int]:
    """A numeric NodeId in namespace 0 (the encodings' type ids): (identifier, next position)."""
    kind = data[pos]
    if kind == 0:
        return data[pos + 1], pos + 2
    if kind == 1 and data[pos + 1] == 0:
        return _U16.unpack_from(data, pos + 2)[0], pos + 4
    if kind == 2 and _U16.unpack_from(data, pos + 1)[0] == 0:
        return _U32.unpack_from(data, pos + 3)[0], pos + 7
    raise _NotCommon


def _empty_array(data: bytes, pos: int) -> int:
    """An array that must be empty or null (diagnostics, string table): the next position."""
    if _I32.unpack_from(data, pos)[0] > 0:
        raise _NotCommon
    return pos + 4


def _data_changes(data: bytes, pos: int, end: int) -> list[Change]:
    count = _I32.unpack_from(data, pos)[0]
    pos += 4
    changes: list[Change] = []
    append, item, scalars, ticks_ms = changes.append, _ITEM.unpack_from, _SCALARS, epoch_ms_of_ticks
    for _ in range(max(0, count)):
        handle, mask = item(data, pos)
        pos += 5
        if mask & 0b110000:  # picoseconds: asyncua and the standard order them differently; left to asyncua
            raise _NotCommon
        value: Any = None
        vtype = 0
        if mask & 1:
            vtype = data[pos]
            pos += 1
            if vtype & 0b11000000:  # array or dimensions
                raise _NotCommon
            s = scalars.get(vtype)
            if s is not None:
                value = s.unpack_from(data, pos)[0]
                pos += s.size
            elif vtype == _STRING:
                n = _I32.unpack_from(data, pos)[0]
                pos += 4
                if n >= 0:
                    value = data[pos : pos + n].decode(get_string_encoding(), errors="surrogateescape")
                    pos += n
            elif vtype != 0:
                raise _NotCommon
        code = 0
        if mask & 2:
            code = _U32.unpack_from(data, pos)[0]
            pos += 4
        ts = None
        if mask & 4:
            ts = ticks_ms(_I64.unpack_from(data, pos)[0])
            pos += 8
        if mask & 8:
            server = ticks_ms(_I64.unpack_from(data, pos)[0])
            pos += 8
            if not ts:  # as `values.reading_from`: the source's, else the server's (0 counts as none)
                ts = server
        append((handle, value, vtype, code, ts))
    pos = _empty_array(data, pos)  # DiagnosticInfos
    if pos != end:
        raise _NotCommon
    return changes


def read_publish(data: bytes) -> PublishResponse | None:
    """A PublishResponse message's bytes (its type id first) read as `PublishResponse`, or None when it is
    not of the common shape (module docstring) and asyncua must decode it."""
    try:
        return _read(data)
    except (_NotCommon, struct.error, IndexError, UnicodeError):
        return None


def _read(data: bytes) -> PublishResponse:
    type_id, pos = _node_id(data, 0)
    if type_id != _PUBLISH_RESPONSE:
        raise _NotCommon
    _ts, _handle, service_result, diagnostics = _HEADER.unpack_from(data, pos)
    if service_result != 0 or diagnostics != 0:
        raise _NotCommon
    pos = _empty_array(data, pos + _HEADER.size)  # StringTable
    if data[pos : pos + 3] != b"\x00\x00\x00":  # AdditionalHeader: a null ExtensionObject
        raise _NotCommon
    pos += 3
    subscription_id = _U32.unpack_from(data, pos)[0]
    available = _I32.unpack_from(data, pos + 4)[0]
    pos += 8 + 4 * max(0, available) + 1  # AvailableSequenceNumbers, MoreNotifications
    sequence_number = _U32.unpack_from(data, pos)[0]
    pos += 12  # SequenceNumber, PublishTime
    count = _I32.unpack_from(data, pos)[0]
    pos += 4
    notifications: list[DataChanges] = []
    for _ in range(max(0, count)):
        type_id, pos = _node_id(data, pos)
        if type_id != _DATA_CHANGE or data[pos] != 1:
            raise _NotCommon
        length = _I32.unpack_from(data, pos + 1)[0]
        pos += 5
        notifications.append(DataChanges(_data_changes(data, pos, pos + length)))
        pos += length
    results = _I32.unpack_from(data, pos)[0]  # the acknowledgements' results
    pos += 4 + 4 * max(0, results)
    if _empty_array(data, pos) != len(data):  # DiagnosticInfos, then nothing
        raise _NotCommon
    return PublishResponse(PublishResult(subscription_id, Message(sequence_number, notifications)))
