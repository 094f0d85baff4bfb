"""MQTT helpers shared by the edge publisher and the cloud ingester (paho-mqtt 2.x)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

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
    client = mqtt.Client(
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
