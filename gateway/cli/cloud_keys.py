"""`edgegw cloud keygen -o FILE`: the platform's Ed25519 key pair that signs evidence packs."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_keygen(args: argparse.Namespace) -> int:
    from cloud_bridge.cloud.evidence.signing import SigningError, generate

    try:
        priv, pub, fp = generate(args.output)
    except SigningError as e:
        print(f"edgegw cloud keygen: {e}", file=sys.stderr)
        return 2
    print(f"签名私钥 / signing key (private, 0600): {priv}")
    print(f"公钥 / public key (give it to evaluators): {pub}")
    print(f"公钥指纹 / fingerprint: {fp}")
    print(f"cloud.yaml:\n  evidence: {{signing_key: {priv}}}")
    return 0


def register(csub: Any) -> None:
    k: argparse.ArgumentParser = csub.add_parser("keygen", help="make the Ed25519 key pair that signs evidence packs")
    k.add_argument("-o", "--output", required=True, help="private key file to create (FILE.pub: the public key)")
    k.set_defaults(func=cmd_keygen)
