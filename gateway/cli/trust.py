"""Gateway identity and the trust chain on the command line (README "Trust model"):

    edgegw identity show -c gateway.yaml                 (edge: the gateway's public key and fingerprint)
    edgegw cloud gateway add ENT GW --public-key ed25519:… -c cloud.yaml [--mosquitto-dir DIR]
    edgegw cloud gateway list|revoke … -c cloud.yaml [--mosquitto-dir DIR]
    edgegw cloud gateway broker-files --mosquitto-dir DIR -c cloud.yaml
    edgegw evidence audit --enterprise ID --from D --to D [-c cloud.yaml] [--json FILE]

`add` prints the gateway's MQTT user and password once (the ledger keeps the broker's hash of it);
with `--mosquitto-dir` every change rewrites `passwords` and `acl` there for Mosquitto's `password_file`
and `acl_file` (reload Mosquitto, SIGHUP, to apply). Exit codes: 0 done (audit: intact), 1 the audit
found something, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edge_config import load_cloud_config, load_gateway_config
from edge_config.models import CloudConfig


def cmd_identity_show(args: argparse.Namespace) -> int:
    from cloud_bridge.uplink.identity import IdentityError, load_or_create_identity

    cfg = load_gateway_config(args.config)
    try:
        ident = load_or_create_identity(cfg.gateway.data_dir)
    except IdentityError as e:
        print(f"edgegw identity: {e}", file=sys.stderr)
        return 2
    print(f"网关 / gateway      : {cfg.gateway.enterprise_id}/{cfg.gateway.id}")
    print(f"公钥 / public key   : {ident.public_key}")
    print(f"指纹 / fingerprint  : SHA256:{ident.fingerprint}")
    print(f"私钥 / private key  : {ident.path} (0600, never leaves this machine)")
    print(
        "登记 / enrol on the cloud: edgegw cloud gateway add "
        f"{cfg.gateway.enterprise_id} {cfg.gateway.id} --public-key {ident.public_key} -c cloud.yaml"
    )
    return 0


def write_broker_files(cfg: CloudConfig, registry: Any, directory: str) -> list[Path]:
    """Mosquitto's dynamic-security config (`dynamic-security.json`) and, for brokers without the plugin,
    `passwords` + `acl`, from the registry's active gateways and cloud.yaml's ingester user."""
    import json

    from cloud_bridge.cloud.trust.broker import (
        acl_text,
        dynsec_config,
        mosquitto_hash,
        password_text,
        write_private,
    )

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    m = cfg.mqtt
    active = registry.active_with_hash()
    ingest = (m.username, mosquitto_hash(m.password)) if m.username and m.password else None
    users = ([ingest] if ingest else []) + [(r.mqtt_user, h) for r, h in active]
    gateways = [(r.mqtt_user, r.ent, r.gw) for r, _ in active]
    dynsec = dynsec_config(m.topic_prefix, [(r.mqtt_user, h, r.ent, r.gw) for r, h in active], ingest, m.shared_group)
    paths = [folder / "dynamic-security.json", folder / "passwords", folder / "acl"]
    write_private(paths[0], json.dumps(dynsec, indent=2))
    write_private(paths[1], password_text(users))
    write_private(paths[2], acl_text(m.topic_prefix, gateways, m.username))
    return paths


def cmd_cloud_gateway(args: argparse.Namespace) -> int:
    from cloud_bridge.cloud.ledger.sqldb import Database
    from cloud_bridge.cloud.trust.registry import Registry, RegistryError

    cfg = load_cloud_config(args.config)
    db = Database(cfg.ledger.url)
    try:
        registry = Registry(db)
        if args.gateway_command == "add":
            rec, password = registry.add(args.enterprise, args.gateway, args.public_key)
            print(f"网关已登记 / gateway registered: {rec.ent}/{rec.gw} (SHA256:{rec.fingerprint})")
            print(f"MQTT 用户 / user: {rec.mqtt_user}")
            print(f"MQTT 密码（仅显示一次）/ password (shown once): {password}")
            print("  put it in the gateway's mqtt.username and EDGEGW_MQTT_PASSWORD (or mqtt.password_file)")
        elif args.gateway_command == "list":
            print(f"{'enterprise':16} {'gateway':16} {'status':9} {'mqtt user':28} fingerprint")
            for r in registry.all():
                print(f"{r.ent:16} {r.gw:16} {r.status:9} {r.mqtt_user:28} SHA256:{r.fingerprint[:32]}")
        elif args.gateway_command == "revoke":
            registry.revoke(args.enterprise, args.gateway)
            print(f"已撤销 / revoked: {args.enterprise}/{args.gateway} (its messages are refused from now on)")
        if args.mosquitto_dir:
            for path in write_broker_files(cfg, registry, args.mosquitto_dir):
                print(f"已写入 / written: {path}")
            print(
                "  Mosquitto: plugin mosquitto_dynamic_security.so with plugin_opt_config_file "
                'dynamic-security.json (restart to apply; README "Trust model")'
            )
    except (RegistryError, ValueError) as e:
        print(f"edgegw cloud gateway: {e}", file=sys.stderr)
        return 2
    finally:
        db.close()
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from cloud_bridge.cloud.evidence.build import enterprise_period
    from cloud_bridge.cloud.ledger.sqldb import Database
    from cloud_bridge.cloud.trust.audit import audit_period
    from cloud_bridge.metrics.period import PeriodError
    from edge_config.timing import now_ms
    from gateway.cli.evidence import _config

    cfg = _config(args)
    if cfg is None:
        return 2
    try:
        period = enterprise_period(cfg, args.enterprise, args.from_, args.to, now_ms())
    except PeriodError as e:
        print(f"edgegw evidence audit: {e}", file=sys.stderr)
        return 2
    db = Database(cfg.ledger.url)
    try:
        report = audit_period(db, args.enterprise, period)
    finally:
        db.close()
    if args.json:
        Path(args.json).write_text(report.model_dump_json(indent=2))
    for g in report.gateways:
        print(
            f"  {g.gw}: {g.checkpoints} checkpoints, seq {g.first_seq}..{g.last_seq}, "
            f"{g.verified_messages}/{g.signed_messages} messages verified, head {g.head}"
        )
    for f in report.findings:
        where = f"seq {f.seq}" if f.seq is not None else (f.table or "")
        print(f"  ✗ {f.kind} {f.gw} {where}: {f.detail}")
    print(f"  evidence rows checked: {report.evidence_rows_checked}")
    if report.intact:
        print("审计通过 / audit: intact (what the ledger holds is what the gateways signed)")
        return 0
    print(f"审计未通过 / audit: NOT intact ({len(report.findings)} finding(s))")
    return 1


def _subparsers(parser: argparse.ArgumentParser) -> Any:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def register(sub: Any) -> None:
    ident = sub.add_parser("identity", help="the gateway's identity key (made on first start)")
    isub = ident.add_subparsers(dest="identity_command", required=True)
    show = isub.add_parser("show", help="public key and fingerprint, and the command that enrols it")
    show.add_argument("-c", "--config", required=True, help="gateway.yaml (its gateway.data_dir)")
    show.set_defaults(func=cmd_identity_show)

    cloud = _subparsers(sub.choices["cloud"])  # the group of gateway.cli.cloud_users
    g = cloud.add_parser("gateway", help="the gateway registry: keys, MQTT credentials, broker ACL")
    gsub = g.add_subparsers(dest="gateway_command", required=True)
    a = gsub.add_parser("add", help="register a gateway (or give it a new key); prints its MQTT password once")
    a.add_argument("enterprise")
    a.add_argument("gateway")
    a.add_argument("--public-key", required=True, help="ed25519:… as `edgegw identity show` prints it")
    ls = gsub.add_parser("list", help="registered gateways, keys and their status")
    rv = gsub.add_parser("revoke", help="end a gateway: its messages are refused, the broker files drop it")
    rv.add_argument("enterprise")
    rv.add_argument("gateway")
    bf = gsub.add_parser("broker-files", help="write Mosquitto's password and ACL files from the registry")
    for q in (a, ls, rv, bf):
        q.add_argument("-c", "--config", required=True, help="cloud.yaml (its ledger.url, mqtt.topic_prefix)")
        q.add_argument("--mosquitto-dir", default=None, help="write `passwords` and `acl` for Mosquitto here")
        q.set_defaults(func=cmd_cloud_gateway)
    bf.set_defaults(func=cmd_broker_files)

    evidence = _subparsers(sub.choices["evidence"])  # the group of gateway.cli.evidence
    au = evidence.add_parser("audit", help="check the ledger against the gateways' signed chains for a period")
    au.add_argument("--enterprise", required=True, help="enterprise id")
    au.add_argument("--from", dest="from_", required=True, help="first day (YYYY-MM-DD), or a local date-time")
    au.add_argument("--to", required=True, help="last day, included (YYYY-MM-DD), or a date-time (excluded)")
    au.add_argument("--json", default=None, help="also write the report as JSON here")
    au.add_argument("-c", "--config", default=None, help="cloud.yaml (default ./cloud.yaml if present)")
    au.add_argument("--ledger", default=None, help="ledger URL instead of the config's")
    au.set_defaults(func=cmd_audit)


def cmd_broker_files(args: argparse.Namespace) -> int:
    if not args.mosquitto_dir:
        print("edgegw cloud gateway broker-files: give --mosquitto-dir", file=sys.stderr)
        return 2
    args.gateway_command = "broker-files"
    return cmd_cloud_gateway(args)
