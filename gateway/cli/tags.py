"""`edgegw tags import|export`: tag maps from and to the spreadsheets plant engineers keep."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from edge_config import ConfigError, load_gateway_config, load_text
from edge_config.models import GatewayConfig
from edge_config.sheets import SheetError, read_sheet_file
from edge_config.tagmap import read_tags, write_tags
from gateway.reload import file_data


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("tags", help="tag maps from and to CSV/XLSX spreadsheets")
    tsub = p.add_subparsers(dest="tags_command", required=True)
    i = tsub.add_parser("import", help="read a CSV/XLSX tag list, validate it, write YAML")
    i.add_argument("file", help="tags.csv or tags.xlsx (headers in English or Chinese)")
    i.add_argument("--device", required=True, help="the device the tags belong to")
    i.add_argument("--driver", choices=["modbus", "opcua"], default=None, help="default: from the columns")
    i.add_argument("-c", "--config", default=None, help="gateway.yaml: print it whole with the device's tags replaced")
    i.add_argument("-o", "--out", default=None, help="write here instead of standard output")
    i.set_defaults(func=cmd_import)
    e = tsub.add_parser("export", help="write a device's tags from gateway.yaml to CSV/XLSX")
    e.add_argument("-c", "--config", required=True)
    e.add_argument("--device", required=True)
    e.add_argument("-o", "--out", required=True, help="tags.csv or tags.xlsx")
    e.set_defaults(func=cmd_export)


def _tag_dicts(tags: list[Any]) -> list[dict[str, Any]]:
    return [t.model_dump(mode="json", exclude_defaults=True) for t in tags]


def cmd_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        tags, kind, ignored = read_tags(read_sheet_file(path), str(path), args.driver)
    except OSError as e:
        print(f"{path}: cannot read: {e.strerror or e}", file=sys.stderr)
        return 2
    except SheetError as e:
        print(e, file=sys.stderr)
        return 2
    if ignored:
        print(f"{path}: 忽略的列 / ignored columns: {', '.join(ignored)}", file=sys.stderr)
    if args.config:
        cfg = load_gateway_config(args.config)  # a ConfigError is reported by main()
        data = file_data(cfg)  # secrets as the file gave them: none from the environment or a password_file
        devices = data.get("devices", [])
        match = [d for d in devices if d["id"] == args.device]
        if not match:
            print(f"{args.config}: no device {args.device!r}", file=sys.stderr)
            return 2
        match[0]["tags"] = _tag_dicts(tags)
        text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
        try:
            load_text(text, GatewayConfig, str(args.config))
        except ConfigError as e:  # e.g. an OEE state tag that the new tag list no longer has
            print(e, file=sys.stderr)
            return 2
    else:
        text = f"# tags of device {args.device} ({kind}), from {path.name}\n" + yaml.safe_dump(
            {"tags": _tag_dicts(tags)}, allow_unicode=True, sort_keys=False
        )
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{len(tags)} 个标签 / tags → {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    cfg = load_gateway_config(args.config)  # a ConfigError is reported by main()
    device = next((d for d in cfg.devices if d.id == args.device), None)
    if device is None:
        print(f"{args.config}: no device {args.device!r}", file=sys.stderr)
        return 2
    try:
        write_tags(list(device.tags), args.out)
    except SheetError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"{len(device.tags)} 个标签 / tags → {args.out}")
    return 0
