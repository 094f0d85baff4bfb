"""The platform's signature on evidence packs: Ed25519 over the exact bytes of `manifest.json`.

The platform operator makes a key pair once (`edgegw cloud keygen -o FILE`: FILE is the private key, PEM
PKCS#8, mode 0600; FILE.pub the public key, PEM) and names the private key in cloud.yaml
(`evidence.signing_key`). Every pack exported with it holds `signature.json` (the algorithm, the public key's
fingerprint, the signature); the evaluator receives the public key (or its fingerprint) from the platform
once, out of band, and checks every pack against it (`edgegw evidence verify DIR --public-key FILE`). A key
inside a pack is never trusted: the verifier brings its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_bridge.wire.signing import forgeable

SIGNATURE = "signature.json"
SIGNATURE_SCHEMA = "edgegw-evidence-signature/1"
ALGORITHM = "Ed25519"


class SigningError(Exception):
    """A key that cannot be used, with the reason (meant for the user)."""


def fingerprint(key: Ed25519PublicKey) -> str:
    """`sha256:` and the hex SHA-256 of the raw 32-byte public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def generate(path: str | Path) -> tuple[Path, Path, str]:
    """A new key pair: the private key at `path` (0600, refused if the file exists) and the public key at
    `path`.pub; (private path, public path, fingerprint)."""
    priv = Path(path)
    pub = priv.with_name(priv.name + ".pub")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    for p in (priv, pub):
        if p.exists() or p.is_symlink():
            raise SigningError(f"{p}: already exists (a signing key is never overwritten)")
    try:
        fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        pub.write_bytes(public_pem(key.public_key()))
    except OSError as e:
        raise SigningError(f"cannot write the key: {e.strerror or e} ({e.filename or priv})") from None
    return priv, pub, fingerprint(key.public_key())


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The signing key named in cloud.yaml: a PEM Ed25519 private key that only its owner may read."""
    p = Path(path)
    try:
        st = p.stat()
        data = p.read_bytes()
    except OSError as e:
        raise SigningError(f"evidence.signing_key: cannot read {p}: {e.strerror or e}") from None
    if os.name == "posix" and stat.S_IMODE(st.st_mode) & 0o077:
        raise SigningError(
            f"evidence.signing_key: {p} can be read by others (mode {stat.S_IMODE(st.st_mode):o}): chmod 600 it"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise SigningError(f"evidence.signing_key: {p} is not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"evidence.signing_key: {p} is not an Ed25519 key (make one with edgegw cloud keygen)")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """A trusted public key: PEM (as `edgegw cloud keygen` writes FILE.pub)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise SigningError(f"--public-key: cannot read {p}: {e.strerror or e}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise SigningError(f"--public-key: {p} is not a PEM public key ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"--public-key: {p} is not an Ed25519 public key")
    if forgeable(key):  # OpenSSL would take signatures nobody made under it
        raise SigningError(f"--public-key: {p} is a small-order or non-canonical Ed25519 key: it proves no signature")
    return key


def signature_document(key: Ed25519PrivateKey, manifest: bytes) -> bytes:
    """`signature.json` for these manifest bytes."""
    doc = {
        "schema": SIGNATURE_SCHEMA,
        "algorithm": ALGORITHM,
        "public_key_fingerprint": fingerprint(key.public_key()),
        "signed_file": "manifest.json",
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "signature": base64.b64encode(key.sign(manifest)).decode(),
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    valid: bool
    problem: str  # why not, when not valid
    fingerprint: str  # the fingerprint the document names (informative: the check uses the trusted key)


def check_signature(trusted: Ed25519PublicKey, manifest: bytes, document: bytes) -> SignatureCheck:
    """Is `document` (signature.json) a valid signature of these manifest bytes by the trusted key?"""
    try:
        doc: Any = json.loads(document)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep to parse
        doc = None
    if not isinstance(doc, dict) or doc.get("schema") != SIGNATURE_SCHEMA:
        return SignatureCheck(False, f"{SIGNATURE}: not an edgegw signature", "")
    named = str(doc.get("public_key_fingerprint", ""))
    if doc.get("algorithm") != ALGORITHM:
        return SignatureCheck(False, f"{SIGNATURE}: algorithm {doc.get('algorithm')!r}, not {ALGORITHM}", named)
    try:
        sig = base64.b64decode(str(doc.get("signature", "")), validate=True)
    except (binascii.Error, ValueError):
        return SignatureCheck(False, f"{SIGNATURE}: the signature is not base64", named)
    try:
        trusted.verify(sig, manifest)
    except InvalidSignature:
        mine = fingerprint(trusted)
        why = "signed by another key" if named and named != mine else "the manifest was changed after signing"
        return SignatureCheck(
            False, f"{SIGNATURE}: the signature does not match manifest.json with the trusted key {mine} ({why})", named
        )
    return SignatureCheck(True, "", named)
