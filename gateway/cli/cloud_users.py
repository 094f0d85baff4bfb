"""`edgegw cloud user add|list|revoke -c cloud.yaml`: the cloud API's users, kept in the ledger database."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edge_config import load_cloud_config
from gateway.cli import cloud_keys


def cmd_cloud_user(args: argparse.Namespace) -> int:
    from cloud_bridge.cloud.ledger.store import EvidenceStore
    from cloud_bridge.cloud.ledger.users import CloudUserError, CloudUsers
    from gateway.cli.users import read_password

    cfg = load_cloud_config(args.config)  # a ConfigError is reported by main()
    store = EvidenceStore(cfg.ledger.url)
    try:
        users = CloudUsers(store.db)
        if args.user_command == "add":
            password = read_password(args) if (args.password or args.password_stdin) else None
            tok = users.add(args.name, args.role, args.enterprise or [], password)
            scope = ", ".join(args.enterprise) if args.enterprise else "all enterprises"
            print(f"用户已创建 / user added: {args.name} ({args.role}; {scope})")
            print(f"API 令牌（仅显示一次）/ API token (shown once): {tok.secret}")
        elif args.user_command == "list":
            print(f"{'user':20} {'role':10} {'enterprises':24} tokens state")
            for u, tokens, revoked in users.all_users():
                ents = ",".join(u.enterprises) or "*"
                print(f"{u.name:20} {u.role:10} {ents:24} {tokens:6} {'revoked' if revoked else 'active'}")
        elif args.user_command == "revoke":
            users.revoke(args.name)
            print(f"已撤销 / revoked: {args.name} (tokens deleted, sessions ended)")
    except (CloudUserError, ValueError) as e:
        print(f"edgegw cloud user: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "cloud", help="the cloud service's users and API tokens, the pack signing key"
    )
    csub = p.add_subparsers(dest="cloud_command", required=True)
    u = csub.add_parser("user", help="users of the evidence API and portal (in the ledger database)")
    usub = u.add_subparsers(dest="user_command", required=True)
    a = usub.add_parser("add", help="add a user; prints its API token once")
    a.add_argument("name")
    a.add_argument("--role", choices=["admin", "operator", "evaluator"], required=True)
    a.add_argument("--enterprise", action="append", help="operator: theirs; evaluator: assigned (default all)")
    a.add_argument("--password", action="store_true", help="also set a portal password (asked on the terminal)")
    a.add_argument("--password-stdin", action="store_true", help="the portal password as one line on stdin")
    ls = usub.add_parser("list", help="users, roles, enterprises, token counts (never a secret)")
    rv = usub.add_parser("revoke", help="end a user: tokens deleted, sessions ended, login refused")
    rv.add_argument("name")
    for q in (a, ls, rv):
        q.add_argument("-c", "--config", required=True, help="cloud.yaml (its ledger.url)")
        q.set_defaults(func=cmd_cloud_user)
    cloud_keys.register(csub)
