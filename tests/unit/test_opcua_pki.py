"""The gateway's application certificate and the server trust list (files only, no network)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from drivers.opcua.pki import CertificateNotTrusted, TrustList, ensure_app_certificate, fingerprint, pki_for

APP_URI = "urn:test-host:edgegw"


def server_cert(name: str = "PLC-1", days: int = 365) -> x509.Certificate:
    key = cert_gen.generate_private_key()
    return cert_gen.generate_self_signed_app_certificate(
        key, name, {}, [x509.UniformResourceIdentifier(f"urn:{name}")], [ExtendedKeyUsageOID.SERVER_AUTH], days
    )


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_app_certificate_is_created_once_and_kept(tmp_path: Path) -> None:
    pki = pki_for(tmp_path / "data")
    cert_file, key_file = ensure_app_certificate(pki, APP_URI, "test-host")
    assert cert_file == tmp_path / "data/pki/own/cert.der" and key_file == tmp_path / "data/pki/own/key.pem"
    assert (key_file.stat().st_mode & 0o777) == 0o600
    cert = x509.load_der_x509_certificate(cert_file.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert APP_URI in san.get_values_for_type(x509.UniformResourceIdentifier)
    assert "test-host" in san.get_values_for_type(x509.DNSName)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > dt.timedelta(days=4 * 365)
    assert (tmp_path / "data/pki/trusted").is_dir() and (tmp_path / "data/pki/rejected").is_dir()
    before = cert_file.read_bytes(), key_file.read_bytes()
    ensure_app_certificate(pki, APP_URI, "test-host")
    assert (cert_file.read_bytes(), key_file.read_bytes()) == before  # second start: nothing new


def test_new_application_uri_renews_the_certificate_but_keeps_the_key(tmp_path: Path) -> None:
    pki = pki_for(tmp_path)
    cert_file, key_file = ensure_app_certificate(pki, APP_URI, "test-host")
    old_cert, old_key = cert_file.read_bytes(), key_file.read_bytes()
    ensure_app_certificate(pki, "urn:other-host:edgegw", "other-host")
    assert cert_file.read_bytes() != old_cert
    assert key_file.read_bytes() == old_key


def test_unknown_server_certificate_is_refused_and_kept_for_review(tmp_path: Path) -> None:
    pki = pki_for(tmp_path)
    cert = server_cert()
    trust = TrustList(pki, "opc.tcp://10.0.0.5:4840")
    with pytest.raises(CertificateNotTrusted, match="server certificate not trusted") as err:
        trust.check(cert)
    assert str(pki.rejected) in str(err.value) and str(pki.trusted) in str(err.value)
    (rejected,) = list(pki.rejected.iterdir())
    assert rejected.read_bytes() == der(cert) and fingerprint(cert)[:16] in rejected.name
    # the engineer moves it to trusted/: now it is trusted
    pki.trusted.mkdir(parents=True, exist_ok=True)
    rejected.rename(pki.trusted / rejected.name)
    assert trust.check(cert) == "trusted"


def test_pem_files_in_the_trust_list_count_too(tmp_path: Path) -> None:
    pki = pki_for(tmp_path)
    cert = server_cert()
    pki.trusted.mkdir(parents=True)
    (pki.trusted / "plc.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (pki.trusted / "notes.txt").write_text("not a certificate")
    (pki.trusted / "broken.der").write_bytes(b"garbage")
    assert TrustList(pki, "opc.tcp://plc:4840").check(cert) == "trusted"


def test_trust_on_first_use_pins_the_first_certificate(tmp_path: Path) -> None:
    pki = pki_for(tmp_path)
    first, second = server_cert(), server_cert()
    trust = TrustList(pki, "opc.tcp://10.0.0.5:4840", trust_on_first_use=True)
    assert trust.check(first).startswith("trusted on first use")
    assert trust.check(first) == "trusted"
    with pytest.raises(CertificateNotTrusted, match="changed since first use"):
        trust.check(second)
    # another endpoint gets its own first use
    other = TrustList(pki, "opc.tcp://10.0.0.6:4840", trust_on_first_use=True)
    assert other.check(second).startswith("trusted on first use")


def test_expired_certificate_is_refused_even_with_trust_on_first_use(tmp_path: Path) -> None:
    pki = pki_for(tmp_path)
    cert = server_cert()
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=400)
    with pytest.raises(CertificateNotTrusted, match="not valid now"):
        TrustList(pki, "opc.tcp://plc:4840", trust_on_first_use=True).check(cert, now=later)


def test_certificate_signed_by_a_trusted_ca(tmp_path: Path) -> None:
    pki = pki_for(tmp_path)
    ca_key = cert_gen.generate_private_key()
    ca = cert_gen.generate_self_signed_app_certificate(ca_key, "Plant CA", {}, [], [], 3650)
    key = cert_gen.generate_private_key()
    now = dt.datetime.now(dt.timezone.utc)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PLC-7")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(ca_key, hashes.SHA256())
    )
    pki.trusted.mkdir(parents=True)
    (pki.trusted / "plant-ca.der").write_bytes(der(ca))
    assert TrustList(pki, "opc.tcp://plc:4840").check(leaf) == "trusted"
    with pytest.raises(CertificateNotTrusted):
        TrustList(pki, "opc.tcp://plc:4840").check(server_cert("PLC-7"))  # same name, not signed by the CA
