"""Ed25519 signing for the edge agent, without the `cryptography` package.

The gateway signs with one Ed25519 key (its identity, `cloud_bridge.uplink.identity`) and needs nothing
else from a crypto library: `SigningKey` signs and gives its raw public key; `private_key_pem` and
`key_from_pem` write and read the one PKCS#8 form an unencrypted Ed25519 key has. Importing
`cryptography` for that costs the agent ≈ 8.5 MB RSS; the libcrypto of OpenSSL (≥ 1.1.1) that Python's
`ssl` module has already mapped does the same through `ctypes` for ≈ 0.3 MB. Its functions are declared
one by one below, every return code is checked, and a known-answer test (RFC 8032, test 1) runs before
the library is used. Where no such libcrypto is found (or it fails the test), the same interface is
served by `cryptography`'s `Ed25519PrivateKey`, imported only then. Ed25519 signatures are deterministic:
both backends give the same bytes, which `tests/unit/test_ed25519.py` checks against `cryptography`.

Verification stays with `cryptography` on the cloud side (`cloud_bridge.wire.signing.verify_sealed`).
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import logging
import os
import weakref
from functools import cache
from pathlib import Path
from typing import Literal, Protocol

log = logging.getLogger(__name__)

Backend = Literal["auto", "libcrypto", "cryptography"]

SEED_SIZE = 32
SIGNATURE_SIZE = 64
# DER of an unencrypted Ed25519 PKCS#8 key (RFC 8410), up to the seed: SEQUENCE { INTEGER 0,
# SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32 bytes) } }
PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM_BEGIN = b"-----BEGIN PRIVATE KEY-----"
_PEM_END = b"-----END PRIVATE KEY-----"

_EVP_PKEY_ED25519 = 1087  # NID_ED25519
# RFC 8032, 7.1, TEST 1: seed, public key, signature of the empty message
_KAT_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
_KAT_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
_KAT_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


class Ed25519Error(RuntimeError):
    """The crypto library refused an operation that cannot fail with a valid key."""


class _Key(Protocol):
    def sign(self, data: bytes) -> bytes: ...

    def public_bytes(self) -> bytes: ...


# ---------------------------------------------------------------- libcrypto through ctypes


class _Libcrypto:
    """The few libcrypto functions Ed25519 signing needs, each with its C signature."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, size_t, size_p = ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)
        # EVP_PKEY *EVP_PKEY_new_raw_private_key(int type, ENGINE *e, const unsigned char *priv, size_t len)
        self.new_raw_private_key = lib.EVP_PKEY_new_raw_private_key
        self.new_raw_private_key.argtypes = [ctypes.c_int, vp, ctypes.c_char_p, size_t]
        self.new_raw_private_key.restype = vp
        # int EVP_PKEY_get_raw_public_key(const EVP_PKEY *pkey, unsigned char *pub, size_t *len)
        self.get_raw_public_key = lib.EVP_PKEY_get_raw_public_key
        self.get_raw_public_key.argtypes = [vp, vp, size_p]
        self.get_raw_public_key.restype = ctypes.c_int
        # void EVP_PKEY_free(EVP_PKEY *key)
        self.pkey_free = lib.EVP_PKEY_free
        self.pkey_free.argtypes = [vp]
        self.pkey_free.restype = None
        # EVP_MD_CTX *EVP_MD_CTX_new(void)
        self.md_ctx_new = lib.EVP_MD_CTX_new
        self.md_ctx_new.argtypes = []
        self.md_ctx_new.restype = vp
        # void EVP_MD_CTX_free(EVP_MD_CTX *ctx)
        self.md_ctx_free = lib.EVP_MD_CTX_free
        self.md_ctx_free.argtypes = [vp]
        self.md_ctx_free.restype = None
        # int EVP_DigestSignInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type, ENGINE *e, EVP_PKEY *pkey)
        self.digest_sign_init = lib.EVP_DigestSignInit
        self.digest_sign_init.argtypes = [vp, vp, vp, vp, vp]
        self.digest_sign_init.restype = ctypes.c_int
        # int EVP_DigestSign(EVP_MD_CTX *ctx, unsigned char *sig, size_t *siglen,
        #                    const unsigned char *tbs, size_t tbslen)
        self.digest_sign = lib.EVP_DigestSign
        self.digest_sign.argtypes = [vp, vp, size_p, ctypes.c_char_p, size_t]
        self.digest_sign.restype = ctypes.c_int
        # void ERR_clear_error(void): a failure leaves entries on the thread's error queue, which `ssl` reads
        self.clear_error = lib.ERR_clear_error
        self.clear_error.argtypes = []
        self.clear_error.restype = None

    def fail(self, what: str) -> Ed25519Error:
        self.clear_error()
        return Ed25519Error(f"libcrypto: {what} failed")


def _mapped_libcrypto() -> list[str]:
    """Paths of the libcrypto shared objects this process has mapped (Linux; `ssl` maps one)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split(None, 5)[5].strip() for line in f if line.count(" ") >= 5 and "libcrypto" in line}
    except (OSError, IndexError):
        return []
    return sorted(p for p in paths if Path(p).name.startswith("libcrypto"))


def _candidates() -> list[str]:
    with_ssl = True
    try:
        import _ssl  # noqa: F401  (maps Python's libcrypto; the agent has it loaded already for MQTT)
    except ImportError:
        with_ssl = False
    found = _mapped_libcrypto() if with_ssl else []
    if not found:
        import ctypes.util

        names = ["crypto", "libcrypto-3-x64", "libcrypto-3", "libcrypto-1_1-x64", "libcrypto-1_1"]
        found = [p for p in (ctypes.util.find_library(n) for n in names) if p]
    return found


@cache
def _libcrypto() -> _Libcrypto | None:
    """The process's libcrypto with Ed25519 that passes the known-answer test, or None (the reason logged)."""
    for path in _candidates():
        try:
            lib = _Libcrypto(ctypes.CDLL(path))
        except (OSError, AttributeError) as e:  # not loadable, or older than OpenSSL 1.1.1
            log.debug("Ed25519: %s not usable: %s", path, e)
            continue
        try:
            kat = _LibcryptoKey(lib, _KAT_SEED)
            ok = kat.public_bytes() == _KAT_PUBLIC and kat.sign(b"") == _KAT_SIGNATURE
        except Ed25519Error as e:
            log.debug("Ed25519: %s: %s", path, e)
            ok = False
        if ok:
            return lib
        log.debug("Ed25519: %s fails the RFC 8032 known-answer test", path)
    return None


class _LibcryptoKey:
    __slots__ = ("__weakref__", "_lib", "_pkey", "_public")

    def __init__(self, lib: _Libcrypto, seed: bytes) -> None:
        self._lib = lib
        pkey = lib.new_raw_private_key(_EVP_PKEY_ED25519, None, seed, len(seed))
        if not pkey:
            raise lib.fail("EVP_PKEY_new_raw_private_key")
        self._pkey: int = pkey
        weakref.finalize(self, lib.pkey_free, pkey)
        buf = ctypes.create_string_buffer(32)
        size = ctypes.c_size_t(len(buf))
        if lib.get_raw_public_key(pkey, buf, ctypes.byref(size)) != 1 or size.value != 32:
            raise lib.fail("EVP_PKEY_get_raw_public_key")
        self._public = buf.raw

    def public_bytes(self) -> bytes:
        return self._public

    def sign(self, data: bytes) -> bytes:
        lib = self._lib
        ctx = lib.md_ctx_new()
        if not ctx:
            raise lib.fail("EVP_MD_CTX_new")
        try:
            if lib.digest_sign_init(ctx, None, None, None, self._pkey) != 1:
                raise lib.fail("EVP_DigestSignInit")
            sig = ctypes.create_string_buffer(SIGNATURE_SIZE)
            size = ctypes.c_size_t(SIGNATURE_SIZE)
            if lib.digest_sign(ctx, sig, ctypes.byref(size), data, len(data)) != 1 or size.value != SIGNATURE_SIZE:
                raise lib.fail("EVP_DigestSign")
            return sig.raw
        finally:
            lib.md_ctx_free(ctx)


# ---------------------------------------------------------------- the fallback: cryptography


class _CryptographyKey:
    __slots__ = ("_key", "_public")

    def __init__(self, seed: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def public_bytes(self) -> bytes:
        return self._public

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


# ---------------------------------------------------------------- the interface


class SigningKey:
    """An Ed25519 private key that signs: `sign(data)` → 64 bytes, `public_bytes()` → the 32 raw bytes of
    its public key, `seed` → the 32-byte private key (for `private_key_pem`). `backend`: "auto" takes
    libcrypto when it is usable, else `cryptography`; "libcrypto" raises Ed25519Error where it is not."""

    __slots__ = ("_impl", "_seed", "backend")

    def __init__(self, seed: bytes, backend: Backend = "auto") -> None:
        if len(seed) != SEED_SIZE:
            raise ValueError(f"an Ed25519 private key has {SEED_SIZE} bytes, not {len(seed)}")
        self._seed = bytes(seed)
        lib = _libcrypto() if backend != "cryptography" else None
        if backend == "libcrypto" and lib is None:
            raise Ed25519Error("no libcrypto with Ed25519 (OpenSSL >= 1.1.1) found in this process")
        self._impl: _Key = _LibcryptoKey(lib, self._seed) if lib is not None else _CryptographyKey(self._seed)
        self.backend: Literal["libcrypto", "cryptography"] = "libcrypto" if lib is not None else "cryptography"

    @classmethod
    def generate(cls, backend: Backend = "auto") -> SigningKey:
        return cls(os.urandom(SEED_SIZE), backend)

    @property
    def seed(self) -> bytes:
        return self._seed

    def public_bytes(self) -> bytes:
        return self._impl.public_bytes()

    def sign(self, data: bytes) -> bytes:
        return self._impl.sign(data if isinstance(data, bytes) else bytes(data))

    def __repr__(self) -> str:  # never the seed
        return f"SigningKey(ed25519:{base64.b64encode(self.public_bytes()).decode()}, {self.backend})"


def libcrypto_available() -> bool:
    """Whether `SigningKey` signs through libcrypto here (else through `cryptography`)."""
    return _libcrypto() is not None


# ---------------------------------------------------------------- PKCS#8 PEM


def private_key_pem(key: SigningKey) -> bytes:
    """The unencrypted PKCS#8 PEM of `key`, byte for byte what `cryptography` writes for it."""
    b64 = base64.b64encode(PKCS8_PREFIX + key.seed)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return b"\n".join([_PEM_BEGIN, *lines, _PEM_END]) + b"\n"


def seed_from_pem(data: bytes) -> bytes | None:
    """The 32-byte seed of an unencrypted Ed25519 PKCS#8 PEM (the form `private_key_pem` and
    `cryptography` write); None for anything else, which the caller hands to a full parser."""
    text = data.strip()
    if not (text.startswith(_PEM_BEGIN) and text.endswith(_PEM_END)):
        return None
    body = b"".join(text[len(_PEM_BEGIN) : -len(_PEM_END)].split())
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(der) != len(PKCS8_PREFIX) + SEED_SIZE or not der.startswith(PKCS8_PREFIX):
        return None
    return der[len(PKCS8_PREFIX) :]


def key_from_pem(data: bytes, backend: Backend = "auto") -> SigningKey | None:
    seed = seed_from_pem(data)
    return SigningKey(seed, backend) if seed is not None else None
