"""`edgegw user add|list|remove|token -c gateway.yaml`: the edge console's users and API tokens."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from edge_config import load_gateway_config
from gateway.users import ROLES, UserError, UserStore, users_path


def read_password(args: argparse.Namespace) -> str:
    """From standard input with --password-stdin (one line), else asked twice on the terminal."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("密码 / password: ")
    if first != getpass.getpass("再次输入 / again: "):
        raise UserError("the two passwords differ")
    return first


def _store(args: argparse.Namespace) -> UserStore:
    return UserStore(users_path(load_gateway_config(args.config)))  # a ConfigError is reported by main()


def cmd_user(args: argparse.Namespace) -> int:
    try:
        store = _store(args)
        if args.user_command == "add":
            store.add(args.name, args.role, read_password(args), replace=args.replace)
            print(f"用户已保存 / user saved: {args.name} ({args.role}) → {store.path}")
            if args.token:
                print(f"API 令牌（仅显示一次）/ API token (shown once): {store.add_token(args.name)}")
        elif args.user_command == "list":
            print(f"{'user':20} {'role':9} tokens")
            for u in store.users():
                print(f"{u.name:20} {u.role:9} {u.tokens}")
        elif args.user_command == "remove":
            store.remove(args.name)
            print(f"已删除 / removed: {args.name} (its sessions and tokens end now)")
        elif args.user_command == "token":
            print(f"API 令牌（仅显示一次）/ API token (shown once): {store.add_token(args.name, args.label)}")
    except UserError as e:
        print(f"edgegw user: {e}", file=sys.stderr)
        return 2
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("user", help="the edge console's users and API tokens")
    usub = p.add_subparsers(dest="user_command", required=True)
    a = usub.add_parser("add", help="add a user (password asked, or one line on stdin with --password-stdin)")
    a.add_argument("name")
    a.add_argument("--role", choices=ROLES, default="viewer")
    a.add_argument("--password-stdin", action="store_true")
    a.add_argument("--replace", action="store_true", help="set a new password and role for an existing user")
    a.add_argument("--token", action="store_true", help="also create an API token (shown once)")
    ls = usub.add_parser("list", help="users, roles and token counts (never a secret)")
    rm = usub.add_parser("remove", help="remove a user: their sessions and tokens stop working")
    rm.add_argument("name")
    t = usub.add_parser("token", help="a new API token for a user (shown once; only its hash is kept)")
    t.add_argument("name")
    t.add_argument("--label", default="", help="what the token is for")
    for q in (a, ls, rm, t):
        q.add_argument("-c", "--config", required=True, help="gateway.yaml (users live in auth.users_file)")
        q.set_defaults(func=cmd_user)
