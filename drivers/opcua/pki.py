"""The gateway's OPC UA certificates: its own application certificate and the trust list of servers.

Layout under `data_dir/pki` (the usual OPC UA PKI folders, as UaExpert and open62541 keep them):

    own/cert.der   own/key.pem     created on first start (RSA 2048, self-signed, 5 years)
    trusted/                       server certificates (or their CA certificates) we trust: DER or PEM
    rejected/                      server certificates we refused; move one to trusted/ to trust it

A server certificate is trusted when the same certificate, or the CA that signed it, is in
`trusted/`. With `trust_on_first_use` an unknown certificate is stored in `trusted/` the first time
an endpoint is seen; a different certificate for that endpoint later is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_DAYS = 5 * 365
RENEW_BEFORE = dt.timedelta(days=30)
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class CertificateNotTrusted(Exception):
    """The server's certificate is not in the trust list; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Pki:
    root: Path
    trusted: Path
    rejected: Path

    @property
    def own_cert(self) -> Path:
        return self.root / "own" / "cert.der"

    @property
    def own_key(self) -> Path:
        return self.root / "own" / "key.pem"


def pki_for(data_dir: str | Path, trusted_dir: str | Path | None = None) -> Pki:
    root = Path(data_dir) / "pki"
    return Pki(root, Path(trusted_dir) if trusted_dir else root / "trusted", root / "rejected")


def application_uri(hostname: str | None = None) -> str:
    """The gateway's ApplicationUri; it must match the URI in its certificate."""
    return f"urn:{hostname or socket.gethostname()}:edgegw"


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _cert_ok(cert: x509.Certificate, app_uri: str, now: dt.datetime) -> bool:
    if cert.not_valid_after_utc - RENEW_BEFORE < now or cert.not_valid_before_utc > now:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return app_uri in san.get_values_for_type(x509.UniformResourceIdentifier)


def ensure_app_certificate(pki: Pki, app_uri: str, hostname: str | None = None) -> tuple[Path, Path]:
    """Create the gateway's key and self-signed certificate when missing, expiring or for another URI.

    Returns (certificate, private key) paths. The key is kept across renewals, so a server that
    trusts the key pair's CA-less certificate must be told again only when the certificate changes.
    """
    host = hostname or socket.gethostname()
    now = dt.datetime.now(dt.timezone.utc)
    key: rsa.RSAPrivateKey
    if pki.own_key.is_file():
        loaded = serialization.load_pem_private_key(pki.own_key.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError(f"{pki.own_key}: not an RSA private key")
        key = loaded
        fresh_key = False
    else:
        key = cert_gen.generate_private_key()
        _write_atomic(pki.own_key, cert_gen.dump_private_key_as_pem(key), 0o600)
        fresh_key = True
    if not fresh_key and pki.own_cert.is_file():
        cert = x509.load_der_x509_certificate(pki.own_cert.read_bytes())
        same_key = cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
        if same_key and _cert_ok(cert, app_uri, now):
            return pki.own_cert, pki.own_key
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        f"edgegw@{host}",
        {"organizationName": "edgegw"},
        [x509.UniformResourceIdentifier(app_uri), x509.DNSName(host)],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH],
        days=CERT_DAYS,
    )
    _write_atomic(pki.own_cert, cert.public_bytes(serialization.Encoding.DER))
    for d in (pki.trusted, pki.rejected):
        d.mkdir(parents=True, exist_ok=True)
    return pki.own_cert, pki.own_key


def load_certificates(folder: Path) -> list[x509.Certificate]:
    """Every certificate in a folder (.der, .cer, .crt, .pem); unreadable files are skipped."""
    out: list[x509.Certificate] = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".der", ".cer", ".crt", ".pem") or not path.is_file():
            continue
        data = path.read_bytes()
        try:
            if b"-----BEGIN CERTIFICATE-----" in data:
                out.extend(x509.load_pem_x509_certificates(data))
            else:
                out.append(x509.load_der_x509_certificate(data))
        except ValueError:
            continue
    return out


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):
        return False
    return True


def is_trusted(cert: x509.Certificate, trusted: list[x509.Certificate]) -> bool:
    der = cert.public_bytes(serialization.Encoding.DER)
    for t in trusted:
        if t.public_bytes(serialization.Encoding.DER) == der:
            return True
        if t.subject != cert.subject and _issued_by(cert, t):
            return True
    return False


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else "server"


def _endpoint_key(endpoint: str) -> str:
    return _SAFE.sub("_", endpoint.removeprefix("opc.tcp://")).strip("_")[:80]


class TrustList:
    """Checks server certificates against `trusted/`; refused ones are copied to `rejected/`."""

    def __init__(self, pki: Pki, endpoint: str, trust_on_first_use: bool = False) -> None:
        self.pki = pki
        self.endpoint = endpoint
        self.trust_on_first_use = trust_on_first_use
        self.last_refusal = ""

    def check(self, cert: x509.Certificate, now: dt.datetime | None = None) -> str:
        """Return how the certificate is trusted, or raise CertificateNotTrusted with what to do."""
        now = now or dt.datetime.now(dt.timezone.utc)
        fp = fingerprint(cert)
        short = ":".join(fp[i : i + 2] for i in range(0, 16, 2))
        if cert.not_valid_after_utc < now or cert.not_valid_before_utc > now:
            until = cert.not_valid_after_utc.date()
            self._refuse(cert, fp, f"服务器证书已过期或未生效 / server certificate not valid now (valid until {until})")
        if is_trusted(cert, load_certificates(self.pki.trusted)):
            return "trusted"
        if self.trust_on_first_use:
            pinned = self.pki.trusted / f"tofu_{_endpoint_key(self.endpoint)}.der"
            if not pinned.exists():
                _write_atomic(pinned, cert.public_bytes(serialization.Encoding.DER))
                return f"trusted on first use, saved to {pinned}"
            self._refuse(
                cert,
                fp,
                f"服务器证书与首次使用时不同 / server certificate changed since first use (SHA-256 {short}…); "
                f"if the server was re-keyed on purpose, delete {pinned}",
            )
        self._refuse(
            cert,
            fp,
            f"服务器证书不受信任 / server certificate not trusted (SHA-256 {short}…, {_common_name(cert)}): "
            f"move it from {self.pki.rejected} to {self.pki.trusted} to trust it",
        )
        raise AssertionError("unreachable")

    def _refuse(self, cert: x509.Certificate, fp: str, message: str) -> None:
        name = _SAFE.sub("_", _common_name(cert))[:40]
        _write_atomic(self.pki.rejected / f"{name}_{fp[:16]}.der", cert.public_bytes(serialization.Encoding.DER))
        self.last_refusal = message
        raise CertificateNotTrusted(message)
