"""Opening an asyncua client the way a connection config says: security policy and mode, the
gateway's application certificate, the server trust list, and the user identity.

Every failure comes back as `DriverError` with a message a plant engineer can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import security_policies

from drivers.base import DriverError
from drivers.opcua.pki import CertificateNotTrusted, Pki, TrustList, application_uri, ensure_app_certificate
from drivers.opcua.values import status_name
from edge_config.models import OpcUaConnection

log = logging.getLogger(__name__)

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}

# what a refusal by the server means, in the words of the one who has to fix it
_ADVICE = {
    ua.StatusCodes.BadUserAccessDenied: "用户名或密码被拒绝 / user name or password refused",
    ua.StatusCodes.BadIdentityTokenRejected: "用户身份被拒绝 / user identity refused",
    ua.StatusCodes.BadIdentityTokenInvalid: "用户身份无效 / user identity not accepted by this endpoint",
    ua.StatusCodes.BadSecurityChecksFailed: (
        "服务器不信任网关证书 / the server does not trust the gateway's certificate: trust {cert} on the server"
    ),
    ua.StatusCodes.BadCertificateUntrusted: (
        "服务器不信任网关证书 / the server does not trust the gateway's certificate: trust {cert} on the server"
    ),
    ua.StatusCodes.BadSecurityPolicyRejected: "服务器不支持该安全策略 / security policy refused by the server",
    ua.StatusCodes.BadTooManySessions: "服务器会话数已满 / the server has no free session",
}


def describe_error(exc: BaseException, conn: OpcUaConnection, pki: Pki | None = None) -> str:
    """One line saying why connecting failed."""
    cert = str(pki.own_cert) if pki else "data/pki/own/cert.der"
    if isinstance(exc, CertificateNotTrusted):
        return str(exc)
    if isinstance(exc, ua.UaStatusCodeError) and exc.code is not None:
        advice = _ADVICE.get(exc.code & 0xFFFF0000)
        text = status_name(exc.code)
        return f"{advice.format(cert=cert)}: {text}" if advice else f"服务器拒绝 / server refused: {text}"
    if isinstance(exc, ConnectionRefusedError):
        return f"连接被拒绝 / connection refused by {conn.endpoint} (server down?)"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"无应答 / no answer from {conn.endpoint} within {conn.timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"主机名无法解析 / cannot resolve the host of {conn.endpoint}"
    if isinstance(exc, OSError | ConnectionError):
        return f"网络错误 / network error talking to {conn.endpoint}: {exc.strerror or exc}"
    if isinstance(exc, ua.UaError) and "No matching endpoints" in str(exc):
        return (
            f"服务器没有 {conn.security_policy}/{conn.security_mode} 端点 / the server offers no "
            f"{conn.security_policy}/{conn.security_mode} endpoint"
        )
    return f"{type(exc).__name__}: {exc}"


def make_client(conn: OpcUaConnection, *, session_timeout_s: float = 60.0) -> Client:
    """An unconnected client with our identity and timing (no auto-reconnect: the gateway restarts us)."""
    client = Client(conn.endpoint, timeout=conn.timeout, watchdog_intervall=conn.keepalive)
    client.name = client.description = "edgegw"
    client.application_uri = application_uri()
    client.product_uri = "urn:edgegw"
    client.session_timeout = int(session_timeout_s * 1000)
    client.secure_channel_timeout = 3_600_000
    if conn.username is not None:
        client.set_user(conn.username)
        client.set_password(conn.password or "")
    return client


async def open_client(conn: OpcUaConnection, pki: Pki | None) -> tuple[Client, str]:
    """Connect and activate a session; returns the client and a short description of the security in use."""
    client = make_client(conn)
    trust: TrustList | None = None
    try:
        if conn.security_policy != "None":
            if pki is None:
                raise DriverError("a secure endpoint needs a data_dir for the gateway's certificate")
            cert, key = ensure_app_certificate(pki, client.application_uri)
            trust = TrustList(pki, conn.endpoint, conn.trust_on_first_use)
            await asyncio.wait_for(
                client.set_security(
                    POLICIES[conn.security_policy], str(cert), str(key), mode=MODES[conn.security_mode]
                ),
                conn.timeout * 2,
            )
            client.certificate_validator = _validator(trust)
        if conn.user_certificate is not None and conn.user_private_key is not None:
            await client.load_client_certificate(conn.user_certificate, _format(conn.user_certificate))
            await client.load_private_key(Path(conn.user_private_key), None, _format(conn.user_private_key))
        await asyncio.wait_for(client.connect(), conn.timeout * 2)
    except DriverError:
        await close_client(client)
        raise
    except (asyncio.CancelledError, KeyboardInterrupt):
        await close_client(client)
        raise
    except Exception as exc:
        await close_client(client)
        if trust is not None and trust.last_refusal:
            raise DriverError(trust.last_refusal) from None
        raise DriverError(describe_error(exc, conn, pki)) from None
    security = "None" if conn.security_policy == "None" else f"{conn.security_policy}/{conn.security_mode}"
    who = conn.username or ("certificate" if conn.user_certificate else "anonymous")
    return client, f"security {security}, user {who}"


def _format(path: str) -> str:
    """'pem' or 'der' by content, whatever the file is called (.key, .crt, .cer ...)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise DriverError(f"无法读取 / cannot read {path}: {e.strerror or e}") from None
    return "pem" if b"-----BEGIN" in head else "der"


def _validator(trust: TrustList) -> Any:
    async def validate(cert: Any, app: ua.ApplicationDescription) -> None:
        try:
            how = trust.check(cert)
        except CertificateNotTrusted:
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted) from None
        if how != "trusted":
            log.warning("OPC UA %s: server certificate %s", trust.endpoint, how)

    return validate


async def close_client(client: Client, timeout: float = 2.0) -> None:
    """Close the session if the server still answers; always drop the socket and asyncua's tasks."""
    quiet = logging.getLogger("asyncua")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # a dead server makes asyncua log tracebacks for every close step
    try:
        with contextlib.suppress(Exception, asyncio.TimeoutError):
            await asyncio.wait_for(client.disconnect(), timeout)
        with contextlib.suppress(Exception):
            client.disconnect_socket()
    finally:
        quiet.setLevel(level)
