"""The gateway's identity: an Ed25519 key pair in `data_dir/identity/`, made on first start.

`gateway.key` is the private key (PKCS#8 PEM, mode 0600, created with O_EXCL so no other process
ever sees it half-written or world-readable); `gateway.pub` is the public key as one line,
`ed25519:<base64>`, the form `edgegw cloud gateway add --public-key` takes. `edgegw identity show`
prints the public key and its fingerprint. The private key is never logged or sent.

The key is read, written and used without the `cryptography` package (`cloud_bridge.wire.ed25519`: the
PKCS#8 form `cryptography` and OpenSSL write, signing through libcrypto), which the agent would otherwise
load for this alone. A key file in any other form goes to `cryptography`'s parser, imported then.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cloud_bridge.wire.ed25519 import SigningKey, key_from_pem, private_key_pem
from cloud_bridge.wire.signing import fingerprint, public_key_text

log = logging.getLogger(__name__)

KEY_FILE = "gateway.key"
PUB_FILE = "gateway.pub"


class IdentityError(Exception):
    """The key file exists but cannot be used (unreadable, not an Ed25519 key)."""


@dataclass(frozen=True)
class Identity:
    key: SigningKey
    path: Path

    @property
    def public_key(self) -> str:
        return public_key_text(self.key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)

    def __repr__(self) -> str:  # never the private key
        return f"Identity({self.path}, SHA256:{self.fingerprint[:32]})"


def identity_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "identity"


def load_identity(data_dir: str | Path) -> Identity | None:
    """The gateway's key pair, or None before the first start made it."""
    path = identity_dir(data_dir) / KEY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise IdentityError(f"{path}: cannot read the gateway key: {e.strerror}") from None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o): set to 0600", path, mode)
        os.chmod(path, 0o600)
    key = key_from_pem(data)
    return Identity(key if key is not None else _parse_other_pem(path, data), path)


def _parse_other_pem(path: Path, data: bytes) -> SigningKey:
    """A key file not in the form we write (another PEM layout, another key type, not a key): what
    `cryptography` makes of it, or IdentityError with the reason."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, load_pem_private_key

    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise IdentityError(f"{path}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{path}: not an Ed25519 key")
    return SigningKey(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def load_or_create_identity(data_dir: str | Path) -> Identity:
    """The gateway's key pair, made (0600) on first use."""
    found = load_identity(data_dir)
    if found is not None:
        return found
    folder = identity_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / KEY_FILE
    key = SigningKey.generate()
    pem = private_key_pem(key)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile: use theirs
        again = load_identity(data_dir)
        assert again is not None
        return again
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    (folder / PUB_FILE).write_text(public_key_text(key) + "\n")
    log.info("made the gateway's identity key %s (SHA256:%s)", path, fingerprint(key)[:32])
    return Identity(key, path)
