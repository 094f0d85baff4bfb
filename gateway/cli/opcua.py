"""`edgegw opcua browse ENDPOINT`: walk a server's address space and write a tag map."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse

from pydantic import ValidationError

from drivers.base import DriverError
from edge_config.models import OpcUaConnection
from edge_config.opcua import parse_node_id
from gateway.cli.options import whole


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("opcua", help="OPC UA tools (browse a server into a tag map)")
    osub = p.add_subparsers(dest="opcua_command", required=True)
    b = osub.add_parser("browse", help="walk a server's address space and write a tag map (YAML config or CSV)")
    b.add_argument("endpoint", help="opc.tcp://host:4840")
    b.add_argument("--root", default=None, help="node to start from, e.g. ns=2;s=Plant (default: the Objects folder)")
    b.add_argument("--out", default=None, help="FILE.yaml (a gateway config) or FILE.csv (tag rows); default stdout")
    b.add_argument("--device-id", default=None, help="device id in the YAML (default from the endpoint)")
    b.add_argument("--mode", choices=["subscribe", "poll"], default="subscribe", help="mode of every tag")
    b.add_argument("--depth", type=whole(0, 64), default=12, help="levels below the root (default 12)")
    b.add_argument("--max-nodes", type=whole(1, 1_000_000), default=100_000)
    b.add_argument("--security-policy", default="None", help="None, Basic256Sha256, Aes128_Sha256_RsaOaep, ...")
    b.add_argument("--security-mode", default=None, help="Sign or SignAndEncrypt (default SignAndEncrypt if secured)")
    b.add_argument("--username", default=None)
    b.add_argument("--password", default=None, help="or set EDGEGW_OPCUA_PASSWORD")
    b.add_argument("--user-certificate", default=None)
    b.add_argument("--user-private-key", default=None)
    b.add_argument("--data-dir", default="./data", help="where the gateway's certificate and trust list live")
    b.add_argument("--trust-on-first-use", action="store_true", help="trust and store an unknown server certificate")
    b.add_argument("--timeout", default="4s")
    b.set_defaults(func=cmd_browse)


class ProgressBar:
    """`浏览 / browsing [#####-----] 120 nodes, 80 tags` on one line of stderr."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width

    def __call__(self, visited: int, queued: int, tags: int) -> None:
        total = visited + queued
        filled = int(self.width * visited / total) if total else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r浏览 / browsing [{bar}] {visited} nodes, {tags} tags ")
        self.stream.flush()

    def done(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def default_device_id(endpoint: str) -> str:
    u = urlparse(endpoint)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{u.hostname or 'server'}-{u.port or 4840}").strip("-")
    return f"opcua-{slug}"[:64]


def _env_password() -> str | None:
    from edge_config.envsettings import EnvSecrets

    secret = EnvSecrets().opcua_password
    return secret.get_secret_value() if secret else None


def connection_from(args: argparse.Namespace) -> OpcUaConnection:
    mode = args.security_mode or ("None" if args.security_policy == "None" else "SignAndEncrypt")
    return OpcUaConnection(
        endpoint=args.endpoint,
        security_policy=args.security_policy,
        security_mode=mode,
        username=args.username,
        password=args.password or (_env_password() if args.username else None),
        user_certificate=args.user_certificate,
        user_private_key=args.user_private_key,
        trust_on_first_use=args.trust_on_first_use,
        timeout=args.timeout,
    )


def _connection_for_file(conn: OpcUaConnection) -> dict[str, Any]:
    """The connection as the YAML should keep it: no password (write it in by hand, or leave it out)."""
    out: dict[str, Any] = {}
    if conn.security_policy != "None":
        out.update(security_policy=conn.security_policy, security_mode=conn.security_mode)
    if conn.username:
        out["username"] = conn.username
    if conn.user_certificate:
        out.update(user_certificate=conn.user_certificate, user_private_key=conn.user_private_key)
    return out


async def browse(args: argparse.Namespace, conn: OpcUaConnection, bar: ProgressBar) -> tuple[str, int]:
    # asyncua is loaded only by the command that needs it (every `edgegw` command builds this parser)
    from drivers.opcua.browse import render_csv, render_yaml, to_tags, walk
    from drivers.opcua.driver import ua_node_id
    from drivers.opcua.pki import pki_for
    from drivers.opcua.session import close_client, open_client

    client, _security = await open_client(conn, pki_for(args.data_dir))
    try:
        root = None
        if args.root:
            root = ua_node_id(parse_node_id(args.root), await client.get_namespace_array())
        found = await walk(client, root, max_depth=args.depth, max_nodes=args.max_nodes, progress=bar)
        bar.done()
        tags = to_tags(found, mode=args.mode)
        if args.out and args.out.lower().endswith(".csv"):
            return render_csv(tags), len(tags)
        device_id = args.device_id or default_device_id(conn.endpoint)
        text = render_yaml(
            tags,
            endpoint=conn.endpoint,
            device_id=device_id,
            connection=_connection_for_file(conn),
            root=args.root or "i=85",
        )
        return text, len(tags)
    finally:
        await close_client(client)


def cmd_browse(args: argparse.Namespace) -> int:
    try:
        conn = connection_from(args)
        if args.root:
            parse_node_id(args.root)
    except (ValidationError, ValueError) as e:
        errors = e.errors() if isinstance(e, ValidationError) else [{"msg": str(e)}]
        for err in errors:
            print(f"edgegw opcua browse: {err['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    bar = ProgressBar()
    try:
        text, count = asyncio.run(browse(args, conn, bar))
    except DriverError as e:
        print(f"\nedgegw opcua browse: {e}", file=sys.stderr)
        return 1
    except KeyError as e:
        print(f"\nedgegw opcua browse: {e.args[0]}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"写入 / wrote {count} tags to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
