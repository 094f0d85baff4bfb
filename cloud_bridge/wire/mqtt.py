"""MQTT helpers shared by the edge publisher and the cloud ingester (paho-mqtt 2.x)."""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties

from edge_config.models import TlsSettings

log = logging.getLogger(__name__)

TLS_SCHEMES = frozenset(("mqtts", "ssl"))
PLAIN_SCHEMES = frozenset(("mqtt", "tcp"))


def host_port(url: str) -> tuple[str, int]:
    """`mqtt://host[:port]` → (host, port); port defaults to 1883, or 8883 for mqtts:// and ssl://."""
    u = urlparse(url)
    if u.scheme not in TLS_SCHEMES | PLAIN_SCHEMES or not u.hostname:
        raise ValueError(f"{url!r} is not an MQTT URL (use mqtt://host:1883 or mqtts://host:8883)")
    return u.hostname, u.port or (8883 if u.scheme in TLS_SCHEMES else 1883)


def uses_tls(url: str) -> bool:
    return urlparse(url).scheme in TLS_SCHEMES


def protocol_version(protocol: str) -> MQTTProtocolVersion:
    """ "5" → MQTTv5, "3.1.1" → MQTTv311."""
    if protocol == "5":
        return MQTTProtocolVersion.MQTTv5
    if protocol == "3.1.1":
        return MQTTProtocolVersion.MQTTv311
    raise ValueError(f"unsupported MQTT protocol {protocol!r} (use '5' or '3.1.1')")


def make_client(
    url: str,
    protocol: str,
    client_id: str | None,
    username: str | None,
    password: str | None,
    tls: TlsSettings | None,
    *,
    manual_ack: bool = False,
    clean_session: bool = True,
    userdata: Any = None,
    reconnect_delay: tuple[int, int] = (1, 30),
) -> mqtt.Client:
    """A configured, not yet connected paho client (callback API version 2).

    `clean_session` applies to MQTT 3.1.1 only; with MQTT 5 pass `clean_start` (and a
    SessionExpiryInterval property) to `connect()` instead. TLS is used for mqtts:// and ssl://
    URLs, with the CA, certificate and key from `tls` (system CAs when `tls` is None).
    """
    host_port(url)  # validate early
    version = protocol_version(protocol)
    client = ReadBufferedClient(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or "",
        clean_session=None if version == MQTTProtocolVersion.MQTTv5 else clean_session,
        userdata=userdata,
        protocol=version,
        manual_ack=manual_ack,
    )
    if username is not None:
        client.username_pw_set(username, password)
    if uses_tls(url):
        if tls is None:
            client.tls_set()  # the system's CAs
        else:
            client.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file)
        if tls is not None and tls.insecure:
            client.tls_insecure_set(True)
    elif tls is not None:
        log.warning("TLS settings are ignored for %s (use mqtts:// to enable TLS)", url)
    client.reconnect_delay_set(min_delay=reconnect_delay[0], max_delay=reconnect_delay[1])
    return client


READ_SIZE = 65_536  # bytes asked of the socket at once (TLS gives one record, ≤ 16 KB, per call)


class ReadBuffered:
    """A connected socket whose `recv` takes what the kernel has, up to `READ_SIZE`, and hands it out as
    asked: paho reads each packet with three or four `recv` calls (its type byte, each byte of its length,
    its body), each a system call. `pending()` counts what is held here (and in a TLS socket's own buffer),
    which paho's loop reads before it waits in `select` again, as it does for TLS. Everything else is the
    socket's."""

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            buf = self._sock.recv(max(size, READ_SIZE))  # BlockingIOError, EOF (b""): as the socket says
            if not buf:
                return buf
            pos = 0
        end = min(pos + size, len(buf))
        self._buf, self._pos = buf, end
        return buf[pos:end]

    def pending(self) -> int:
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._buf) - self._pos + int(inner)

    def send(self, data: bytes | bytearray) -> int:
        return int(self._sock.send(data))

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ReadBufferedClient(mqtt.Client):
    """paho's client on a `ReadBuffered` socket, reading every packet already received before it waits
    again (paho reads one per pass of its loop, each pass a `select`); at most `MAX_READ` a pass, so its
    writes and keep-alive are not held back long."""

    MAX_READ = 100

    def _create_socket(self) -> Any:
        return ReadBuffered(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        for _ in range(self.MAX_READ):
            sock = self._sock
            if rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, ReadBuffered) or not sock.pending():
                break
            rc = super().loop_read(1)
        return rc


_PUBACK = struct.Struct("!BBH")  # PUBACK (0x40), remaining length 2, packet id: success (MQTT 3.1.1 and 5)


def send_pubacks(client: mqtt.Client, mids: Sequence[int]) -> None:
    """Acknowledge QoS 1 messages (manual ack) by packet id, in this order, as ONE queued write.

    `client.ack` queues one packet per message, and each wakes paho's network thread (a byte through its
    socket pair) for a `send` of 4 bytes; a batch of 500 acknowledgements is then 500 wake-ups and 500
    system calls. Here the same PUBACK packets, byte for byte (paho's `_send_command_with_mid`), go as
    one: one wake-up, one `send`. Falls back to `client.ack` where paho has no `_packet_queue`."""
    if not mids:
        return
    queue = getattr(client, "_packet_queue", None)
    if queue is None:
        for mid in mids:
            client.ack(mid, 1)
        return
    queue(0x40, b"".join([_PUBACK.pack(0x40, 2, mid) for mid in mids]), 0, 0)


class SharedTableProperties(Properties):
    """paho's MQTT 5 `Properties` with its lookup tables built once, not for each packet.

    paho builds three tables (property names, identifiers, types and the packets each applies to: some
    60 entries, through its own checking `__setattr__`) in every `Properties` it makes, i.e. for every
    PUBLISH received: ≈ 60 µs of the ingester's ≈ 130 µs of MQTT receive per message. The tables are
    the same in every instance and paho never changes them, so these share one copy (taken from a
    Properties of paho's own making); `clear`, run before every decode, looks only at the properties
    set. Everything else (decoding, the checks of each property) is paho's."""

    _tables: tuple[Any, Any, Any] | None = None
    _names: tuple[str, ...] = ()

    def __init__(self, packetType: int) -> None:
        tables = SharedTableProperties._tables
        if tables is None:
            ref = Properties(packetType)
            tables = SharedTableProperties._tables = (ref.types, ref.names, ref.properties)
            SharedTableProperties._names = tuple(n.replace(" ", "") for n in ref.names)
        object.__setattr__(self, "packetType", packetType)
        object.__setattr__(self, "types", tables[0])
        object.__setattr__(self, "names", tables[1])
        object.__setattr__(self, "properties", tables[2])

    def clear(self) -> None:
        for name in self._names:
            if name in self.__dict__:
                delattr(self, name)


def share_property_tables() -> None:
    """Have paho decode received packets' properties into `SharedTableProperties` (process-wide; the
    same values, the same errors). Nothing changes where paho's decoder is not laid out as expected."""
    if getattr(_packet, "Properties", None) is Properties:
        setattr(_packet, "Properties", SharedTableProperties)  # noqa: B010 (a module global of paho's)
