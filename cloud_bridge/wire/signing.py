"""Gateway identity on the wire: Ed25519 signatures, the per-gateway hash chain and signed checkpoints.

Both ends import this module: the gateway's buffer chains and signs (`cloud_bridge.uplink`), the cloud
verifies (`cloud_bridge.cloud.trust`). Pure functions over bytes, no I/O. The gateway's key is a
`cloud_bridge.wire.ed25519.SigningKey`; `cryptography` is imported only by the functions the cloud uses
(`parse_public_key`, `verify_sealed`) and for keys of its own, so the edge agent never loads it; the
cloud verifies with libsodium where PyNaCl is installed (`_sodium_verify`).

- **Chained messages** (data and events, the ones with a `seq`): the payload is
  `{"v":1,"ent":E,"gw":G,"dev":D,"seq":N,"prev":"<hex>",<body fields>,"hist":false}`. Everything before
  `,"hist":` is the *signed part*; its SHA-256 is the message's chain hash `h`, and `prev` is the chain
  hash of the gateway's previous message (by seq; 64 zeros for the first). `hist` stays outside, so a
  replay after an outage sends the same signed part, byte for byte.
- **Checkpoints** (`{prefix}/{ent}/{gw}/checkpoint`): the chain hash of every message `from`..`to`, in
  seq order, and `prev` (the chain hash before `from`), signed with the gateway's key. One signature
  vouches for up to `MAX_CHECKPOINT` messages.
- **Signed statuses and metadata** (retained, no seq): the payload ends with `,"sig":"<base64>"}`; the
  signature covers the topic and every byte before `,"sig":`, so a signed payload cannot be moved to
  another gateway's or device's topic.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Protocol

from cloud_bridge.wire.ed25519 import SIGNATURE_SIZE, SigningKey

if TYPE_CHECKING:  # imported where used: the edge signs without `cryptography` (cloud_bridge.wire.ed25519)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = bytes(32)  # `prev` of a gateway's first chained message
MAX_CHECKPOINT = 1000  # messages one checkpoint may cover
HIST_TAILS = (b',"hist":false}', b',"hist":true}')
_SIG_MARK = b',"sig":"'
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class SignatureError(ValueError):
    """A signature, key or checkpoint that does not verify or does not follow the contract."""


class Signer(Protocol):
    """What `seal` needs of a key: the gateway's `SigningKey`, or `cryptography`'s Ed25519PrivateKey."""

    def sign(self, data: bytes) -> bytes: ...


# ---------------------------------------------------------------- keys


def public_key_bytes(key: SigningKey | Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    if isinstance(key, SigningKey):
        return key.public_bytes()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_text(key: SigningKey | Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """`ed25519:<base64 of the 32 raw bytes>`: what `edgegw cloud gateway add --public-key` takes."""
    return "ed25519:" + base64.b64encode(public_key_bytes(key)).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """The inverse of `public_key_text`; SignatureError with the reason otherwise."""
    raw = text.strip()
    if raw.startswith("ed25519:"):
        raw = raw[len("ed25519:") :]
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("a public key is ed25519:<base64 of 32 bytes> (edgegw identity show prints it)") from None
    if len(data) != 32:
        raise SignatureError(f"an Ed25519 public key has 32 bytes, not {len(data)}")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(data)


def forgeable(key: Ed25519PublicKey) -> bool:
    """True for a point no gateway's key can be: of small order, or not canonical. Under such a key a
    verifier that does not refuse it (OpenSSL's) takes forged signatures: one made of the identity point and
    S = 0 verifies for about one message in four under the all-zero key. libsodium's check, through PyNaCl
    (the cloud extra); without it, False: nothing to check with."""
    try:
        from nacl.bindings import crypto_core_ed25519_is_valid_point
    except ImportError:
        return False
    return not crypto_core_ed25519_is_valid_point(public_key_bytes(key))


def fingerprint(key: SigningKey | Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, hex: how people compare keys (`SHA256:` + the first 32 hex shown)."""
    return hashlib.sha256(public_key_bytes(key)).hexdigest()


# ---------------------------------------------------------------- the chain


def _json_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def chained_prefix(ent: str, gw: str, dev: str, seq: int, prev: bytes, body: bytes) -> bytes:
    """The signed part of a chained message: the envelope with ent and prev, then the body's fields."""
    ids = f'"ent":{_json_str(ent)},"gw":{_json_str(gw)},"dev":{_json_str(dev)}'
    head = f'{{"v":1,{ids},"seq":{int(seq)},"prev":"{prev.hex()}",'
    return head.encode() + body[1:-1]


def chained_payload(prefix: bytes, hist: bool) -> bytes:
    return prefix + HIST_TAILS[1 if hist else 0]


def chain_hash(prefix: bytes | memoryview) -> bytes:
    return hashlib.sha256(prefix).digest()


def signed_part(payload: bytes) -> memoryview | None:
    """The signed part of a chained message as received, without a copy (None when it does not end
    with the hist field)."""
    for tail in HIST_TAILS:
        if payload.endswith(tail):
            return memoryview(payload)[: -len(tail)]
    return None


def parse_hex_hash(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX64.match(value):
        raise SignatureError(f"{what} must be 64 lowercase hex digits")
    return bytes.fromhex(value)


# ---------------------------------------------------------------- signed payloads (statuses, meta, checkpoints)


def _message(topic: str, part: bytes) -> bytes:
    return topic.encode() + b"\n" + part


def seal(key: Signer, topic: str, payload: bytes) -> bytes:
    """`payload` (a JSON object) with `"sig"` added: an Ed25519 signature over the topic and the payload."""
    if not payload.endswith(b"}"):
        raise ValueError("only a JSON object can be sealed")
    part = payload[:-1]
    sig = base64.b64encode(key.sign(_message(topic, part)))
    sep = b"" if part.endswith(b"{") else b","
    return part + sep + b'"sig":"' + sig + b'"}'


def unseal(payload: bytes) -> tuple[bytes, bytes] | None:
    """(signed part, signature) of a sealed payload; None when it carries no signature."""
    if not payload.endswith(b'"}'):
        return None
    i = payload.rfind(_SIG_MARK)
    if i < 0:
        j = payload.rfind(b'{"sig":"')
        if j != 0:
            return None
        part, raw = b"{", payload[len(b'{"sig":"') : -2]
    else:
        part, raw = payload[:i], payload[i + len(_SIG_MARK) : -2]
    try:
        sig = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None
    return part, sig


def verify_sealed(key: Ed25519PublicKey, topic: str, payload: bytes) -> None:
    """Raise SignatureError unless `payload` was sealed for `topic` with the private half of `key`."""
    parts = unseal(payload)
    if parts is None:
        raise SignatureError("not signed")
    part, sig = parts
    sodium = _sodium_verify()
    if sodium is not None:
        valid = len(sig) == SIGNATURE_SIZE and sodium(public_key_bytes(key), sig, _message(topic, part))
    else:
        from cryptography.exceptions import InvalidSignature

        try:
            key.verify(sig, _message(topic, part))
            valid = True
        except InvalidSignature:
            valid = False
    if not valid:
        raise SignatureError("the signature does not verify with the registered key")


@cache
def _sodium_verify() -> Callable[[bytes, bytes, bytes], bool] | None:
    """libsodium's Ed25519 verification (PyNaCl, in the cloud extra), or None without PyNaCl (then
    `cryptography`'s). The ingester verifies every checkpoint, a gateway's once a second in live traffic:
    libsodium takes ≈ 55 µs a signature where OpenSSL (in `cryptography`, or the system's) takes ≈ 110 µs
    on the bench machine. libsodium is the stricter of the two (it also refuses non-canonical signatures and
    small-order keys), which no signature a gateway makes can be. `public` (32 bytes), `sig` (64 bytes)."""
    try:
        from nacl.bindings import crypto_sign_open
        from nacl.exceptions import BadSignatureError
    except ImportError:
        return None

    def verify(public: bytes, sig: bytes, message: bytes) -> bool:
        try:
            crypto_sign_open(sig + message, public)
        except BadSignatureError:
            return False
        return True

    return verify


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A gateway's signed statement: the chain hashes of its messages `first`..`last`."""

    ent: str
    gw: str
    ts: int
    first: int
    last: int
    prev: bytes  # chain hash before `first`
    hashes: tuple[bytes, ...]  # one per seq, first..last
    key: str  # fingerprint of the signing key (which key, when a gateway's key was replaced)

    @property
    def head(self) -> bytes:
        return self.hashes[-1]

    def hash_of(self, seq: int) -> bytes | None:
        return self.hashes[seq - self.first] if self.first <= seq <= self.last else None


def encode_checkpoint(c: Checkpoint) -> bytes:
    """The unsigned checkpoint payload (`seal` signs it)."""
    d = {
        "v": 1,
        "ent": c.ent,
        "gw": c.gw,
        "ts": c.ts,
        "from": c.first,
        "to": c.last,
        "prev": c.prev.hex(),
        "hashes": base64.b64encode(b"".join(c.hashes)).decode(),
        "key": c.key,
    }
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode()


def decode_checkpoint(payload: bytes) -> Checkpoint:
    """Parse a (sealed) checkpoint; SignatureError with the reason when it breaks the contract. The
    signature is checked separately (`verify_sealed`), against the key the registry holds."""
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, an integer of > 4300 digits
        raise SignatureError(f"not JSON: {str(e)[:200]}") from None
    if not isinstance(obj, dict) or obj.get("v") != 1:
        raise SignatureError("a checkpoint is a JSON object with v = 1")
    ints = [obj.get(k) for k in ("ts", "from", "to")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63 for v in ints):
        raise SignatureError("'ts', 'from' and 'to' must be non-negative integers")
    ts, first, last = ints
    assert isinstance(first, int) and isinstance(last, int) and isinstance(ts, int)
    if not 0 < last - first + 1 <= MAX_CHECKPOINT:
        raise SignatureError(f"a checkpoint covers 1..{MAX_CHECKPOINT} messages")
    raw = obj.get("hashes")
    try:
        blob = base64.b64decode(raw, validate=True) if isinstance(raw, str) else b""
    except (binascii.Error, ValueError):
        blob = b""
    if len(blob) != 32 * (last - first + 1):
        raise SignatureError("'hashes' must hold 32 bytes per message from..to")
    ent, gw, key = obj.get("ent"), obj.get("gw"), obj.get("key")
    if not all(isinstance(v, str) and 0 < len(v) <= 128 for v in (ent, gw, key)):
        raise SignatureError("'ent', 'gw' and 'key' must be strings")
    hashes = tuple(blob[i : i + 32] for i in range(0, len(blob), 32))
    return Checkpoint(str(ent), str(gw), ts, first, last, parse_hex_hash(obj.get("prev"), "'prev'"), hashes, str(key))
