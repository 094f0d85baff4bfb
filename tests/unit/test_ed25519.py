"""The edge's Ed25519 (`cloud_bridge.wire.ed25519`) held against `cryptography` as the reference: the same
signatures byte for byte (Ed25519 is deterministic) from both backends, signatures `cryptography` verifies,
the same public keys, PKCS#8 PEM both ways; the fallback when no usable libcrypto is found; the gateway's
identity files, old and new, and their errors; and that the edge's signing path never imports `cryptography`."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from cloud_bridge.uplink.identity import IdentityError, load_identity, load_or_create_identity
from cloud_bridge.wire import ed25519
from cloud_bridge.wire.ed25519 import SigningKey, key_from_pem, private_key_pem, seed_from_pem
from cloud_bridge.wire.signing import (
    fingerprint,
    parse_public_key,
    public_key_bytes,
    public_key_text,
    seal,
    verify_sealed,
)

BACKENDS = ("libcrypto", "cryptography")
# RFC 8032, 7.1, TESTs 1-3: seed, public key, message, signature
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


def reference(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def reference_public(seed: bytes) -> bytes:
    return reference(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def messages(rng: random.Random) -> Iterator[bytes]:
    yield b""
    yield b"\x00"
    yield b"\x00" * 100  # NUL bytes inside: passed by length, not as a C string
    for size in (1, 31, 32, 33, 64, 127, 128, 129, 1000, 4096):
        yield rng.randbytes(size)
    yield rng.randbytes(1 << 20)  # a large one


def test_this_platform_signs_through_libcrypto() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the libcrypto is looked for in /proc/self/maps on Linux")
    assert ed25519.libcrypto_available(), "Python's ssl maps a libcrypto with Ed25519 here: it must be found"
    assert SigningKey.generate().backend == "libcrypto"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032)
def test_the_rfc8032_vectors(backend: ed25519.Backend, seed: str, public: str, message: str, signature: str) -> None:
    key = SigningKey(bytes.fromhex(seed), backend)
    assert key.backend == backend
    assert key.public_bytes().hex() == public
    assert key.sign(bytes.fromhex(message)).hex() == signature


@pytest.mark.parametrize("backend", BACKENDS)
def test_signatures_are_cryptographys_byte_for_byte_and_verify(backend: ed25519.Backend) -> None:
    rng = random.Random(25519)
    for _ in range(40):
        seed = rng.randbytes(32)
        key, ref = SigningKey(seed, backend), reference(seed)
        assert key.public_bytes() == reference_public(seed)
        for message in messages(rng):
            sig = key.sign(message)
            assert sig == ref.sign(message), (seed.hex(), len(message))
            ref.public_key().verify(sig, message)  # raises InvalidSignature otherwise


def test_both_backends_agree_on_fresh_keys() -> None:
    for _ in range(50):
        key = SigningKey.generate("libcrypto")
        other = SigningKey(key.seed, "cryptography")
        assert key.public_bytes() == other.public_bytes()
        message = os.urandom(200)
        assert key.sign(message) == other.sign(message)
        assert key.sign(bytearray(message)) == key.sign(memoryview(message)) == key.sign(message)


def test_the_wire_functions_take_the_key_as_they_took_cryptographys() -> None:
    seed = os.urandom(32)
    key, ref = SigningKey(seed), reference(seed)
    assert public_key_bytes(key) == public_key_bytes(ref) == public_key_bytes(ref.public_key())
    assert public_key_text(key) == public_key_text(ref) and fingerprint(key) == fingerprint(ref.public_key())
    payload = b'{"online":true,"ts":5}'
    assert seal(key, "sf/v1/e/g/status", payload) == seal(ref, "sf/v1/e/g/status", payload)
    verify_sealed(parse_public_key(public_key_text(key)), "sf/v1/e/g/status", seal(key, "sf/v1/e/g/status", payload))


def test_a_seed_must_have_32_bytes_and_repr_hides_it() -> None:
    with pytest.raises(ValueError, match="32 bytes, not 31"):
        SigningKey(bytes(31))
    key = SigningKey(bytes(range(32)))
    assert key.seed.hex() not in repr(key) and public_key_text(key) in repr(key)


# ---------------------------------------------------------------- the fallback


@pytest.fixture
def no_libcrypto(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The locator finds no libcrypto (a Python built without a shared OpenSSL)."""
    ed25519._libcrypto.cache_clear()
    monkeypatch.setattr(ed25519, "_candidates", lambda: [])
    yield
    ed25519._libcrypto.cache_clear()


def test_without_libcrypto_cryptography_signs_the_same_bytes(no_libcrypto: None) -> None:
    assert not ed25519.libcrypto_available()
    seed, message = os.urandom(32), os.urandom(500)
    key = SigningKey(seed)
    assert key.backend == "cryptography"
    assert key.sign(message) == reference(seed).sign(message) and key.public_bytes() == reference_public(seed)
    with pytest.raises(ed25519.Ed25519Error, match="no libcrypto"):
        SigningKey(seed, "libcrypto")


def test_a_libcrypto_that_fails_the_known_answer_test_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    ed25519._libcrypto.cache_clear()
    monkeypatch.setattr(ed25519, "_KAT_SIGNATURE", bytes(64))
    try:
        assert SigningKey.generate().backend == "cryptography"
    finally:
        ed25519._libcrypto.cache_clear()
    monkeypatch.undo()
    assert SigningKey.generate().backend == "libcrypto" or not sys.platform.startswith("linux")


# ---------------------------------------------------------------- PKCS#8 PEM


def test_our_pem_is_cryptographys_and_loads_both_ways() -> None:
    for _ in range(20):
        key = SigningKey.generate()
        ref = reference(key.seed)
        pem = private_key_pem(key)
        assert pem == ref.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        loaded = load_pem_private_key(pem, password=None)
        assert isinstance(loaded, Ed25519PrivateKey)
        assert loaded.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()) == key.seed
        theirs = key_from_pem(ref.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        assert theirs is not None and theirs.seed == key.seed and theirs.public_bytes() == key.public_bytes()


def test_pem_layout_is_tolerated_but_nothing_else_is_taken() -> None:
    key = SigningKey.generate()
    pem = private_key_pem(key)
    assert seed_from_pem(pem.replace(b"\n", b"\r\n")) == key.seed
    assert seed_from_pem(b"\n  " + pem + b"\n\n") == key.seed
    begin, body, end = pem.split(b"\n")[:3]
    assert seed_from_pem(b"\n".join([begin, body[:20], body[20:], end])) == key.seed  # wrapped differently
    rsa_pem = rsa.generate_private_key(65537, 1024).private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    encrypted = reference(key.seed).private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw"))
    for other in (
        b"",
        b"not a key",
        rsa_pem,
        encrypted,
        pem.replace(b"PRIVATE KEY", b"PUBLIC KEY"),
        pem.replace(body, body[:-4]),  # shorter
        pem.replace(body, body[:8] + b"!" + body[9:]),  # not base64
        pem.replace(body[:16], b"MC4CAQEwBQYDK2Vw"),  # version 1 in the prefix
    ):
        assert seed_from_pem(other) is None, other[:60]


# ---------------------------------------------------------------- the gateway's identity files


def key_file(data_dir: Path, pem: bytes) -> Path:
    folder = data_dir / "identity"
    folder.mkdir(parents=True)
    path = folder / "gateway.key"
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


def test_an_identity_written_by_cryptography_loads_unchanged(tmp_path: Path) -> None:
    ref = Ed25519PrivateKey.generate()
    key_file(tmp_path, ref.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    ident = load_identity(tmp_path)
    assert ident is not None and ident.key.backend == ed25519.SigningKey.generate().backend
    assert ident.public_key == public_key_text(ref.public_key()) and ident.fingerprint == fingerprint(ref.public_key())
    assert ident.key.sign(b"m") == ref.sign(b"m")


def test_a_new_identity_loads_with_cryptography(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path)
    loaded = load_pem_private_key(ident.path.read_bytes(), password=None)
    assert isinstance(loaded, Ed25519PrivateKey)
    assert public_key_text(loaded) == ident.public_key == (ident.path.parent / "gateway.pub").read_text().strip()


def test_an_ed25519_key_in_another_pem_layout_goes_through_cryptography(tmp_path: Path) -> None:
    """`openssl pkcs12 -nodes` writes attributes before the block: not our form, still the key."""
    ref = Ed25519PrivateKey.generate()
    preamble = b"Bag Attributes\n    localKeyID: 01 02\nKey Attributes: <No Attributes>\n"
    pem = preamble + ref.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    assert seed_from_pem(pem) is None
    key_file(tmp_path, pem)
    ident = load_identity(tmp_path)
    assert ident is not None and ident.key.sign(b"m") == ref.sign(b"m")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"garbage", "not a PEM private key"),
        (Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"x")),
         "not a PEM private key"),
        (rsa.generate_private_key(65537, 1024).private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
         "not an Ed25519 key"),
    ],
)  # fmt: skip
def test_a_key_file_that_is_not_an_ed25519_key_is_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = key_file(tmp_path, content)
    with pytest.raises(IdentityError, match=message) as e:
        load_or_create_identity(tmp_path)
    assert str(path) in str(e.value) and path.read_bytes() == content, "reported, never overwritten"


def test_an_unreadable_key_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "identity" / "gateway.key").mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(IdentityError, match="cannot read the gateway key"):
        load_identity(tmp_path)


def test_the_edge_signs_without_importing_cryptography(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from cloud_bridge.uplink.buffer import Buffer, Chain\n"
        "from cloud_bridge.uplink.identity import load_or_create_identity\n"
        "from cloud_bridge.wire.signing import seal\n"
        f"ident = load_or_create_identity({str(tmp_path)!r})\n"
        f"ident = load_or_create_identity({str(tmp_path)!r})\n"
        "print(seal(ident.key, 't', b'{}').decode(), ident.key.backend)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    sealed, loaded = out.stdout.splitlines()
    assert sealed.startswith('{"sig":"') and loaded == "[]", out.stdout
