"""`edgegw evidence ...`: the evaluator's evidence pack, its verification, and the equipment ledger import.

    edgegw evidence export --enterprise ID --from D --to D [--format json,csv,html] -o DIR [-c cloud.yaml]
    edgegw evidence verify DIR [--expect SHA256]
    edgegw evidence import-equipment FILE.csv|.xlsx --enterprise ID [-c cloud.yaml]

Exit codes: 0 done (verify: intact); 1 verify found a difference; 2 bad input (config, period,
enterprise, sheet, output directory).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cloud_bridge.metrics.labels import INDICATORS, TEXTS
from edge_config import ConfigError, load_cloud_config
from edge_config.models import CloudConfig
from edge_config.timing import now_ms


def _config(args: argparse.Namespace) -> CloudConfig | None:
    """cloud.yaml (-c), with --ledger overriding its ledger URL; defaults when neither file nor URL."""
    try:
        if args.config:
            cfg = load_cloud_config(args.config)
        elif Path("cloud.yaml").exists() and not args.ledger:
            cfg = load_cloud_config("cloud.yaml")
        else:
            cfg = CloudConfig()
        if args.ledger:
            cfg = CloudConfig.model_validate({**cfg.model_dump(), "ledger": {"url": args.ledger}})
    except ConfigError as e:
        print(e, file=sys.stderr)
        return None
    except ValueError as e:
        print(f"edgegw evidence: --ledger: {e}", file=sys.stderr)
        return None
    return cfg


def cmd_export(args: argparse.Namespace) -> int:
    from cloud_bridge.cloud.evidence.build import build_evidence, enterprise_period
    from cloud_bridge.cloud.evidence.export import ExportError, export_pack, parse_formats
    from cloud_bridge.cloud.ledger.store import EvidenceStore
    from cloud_bridge.metrics.period import PeriodError

    cfg = _config(args)
    if cfg is None:
        return 2
    try:
        formats = parse_formats(args.format)
    except ExportError as e:
        print(f"edgegw evidence export: {e}", file=sys.stderr)
        return 2
    now = now_ms()
    try:
        period = enterprise_period(cfg, args.enterprise, args.from_, args.to, now)
    except PeriodError as e:
        print(f"edgegw evidence export: bad period: {e}", file=sys.stderr)
        return 2
    store = EvidenceStore(cfg.ledger.url)
    try:
        if cfg.enterprise(args.enterprise) is None and not store.knows(args.enterprise):
            print(
                f"edgegw evidence export: unknown enterprise {args.enterprise!r}: not in the config and nothing "
                "in the ledger",
                file=sys.stderr,
            )
            return 2
        ev = build_evidence(store, cfg, args.enterprise, period, now_ms=now)
        try:
            pack = export_pack(ev, store, period, args.output, formats)
        except ExportError as e:
            print(f"edgegw evidence export: {e}", file=sys.stderr)
            return 2
    finally:
        store.close()
    net = ev.summary.networked
    print(f"{TEXTS['evidence_pack']}: {pack.directory} ({len(pack.files)} files + manifest.json)")
    score = ""
    if net.ratio is not None and net.score is not None:
        score = f" = {net.ratio * 100:.1f}% → {net.score:g} points"
    print(f"  {INDICATORS['networked_ratio']}: {net.numerator}/{net.denominator}{score}")
    print(f"  manifest.json SHA-256: {pack.manifest_sha256}")
    print(f"  {TEXTS['note_the_hash']}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from cloud_bridge.cloud.evidence.export import verify_pack

    v = verify_pack(args.directory, args.expect)
    for p in v.problems:
        print(f"  ✗ {p}")
    if v.manifest_sha256:
        print(f"manifest.json SHA-256: {v.manifest_sha256}")
    if v.ok:
        print(f"{TEXTS['intact']}: {v.files} files match the manifest")
        return 0
    print(f"{TEXTS['not_intact']}: {len(v.problems)} problem(s)")
    return 1


def cmd_import_equipment(args: argparse.Namespace) -> int:
    from cloud_bridge.cloud.ledger.equipment import EquipmentError
    from cloud_bridge.cloud.ledger.store import EvidenceStore

    cfg = _config(args)
    if cfg is None:
        return 2
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as e:
        print(f"{path}: cannot read: {e.strerror or e}", file=sys.stderr)
        return 2
    store = EvidenceStore(cfg.ledger.url)
    try:
        sheet, sha = store.import_equipment(args.enterprise, data, path.name)
    except EquipmentError as e:
        print(e, file=sys.stderr)
        return 2
    finally:
        store.close()
    n = len(sheet.items)
    print(f"{TEXTS['equipment_ledger']} of {args.enterprise}: {n} rows from {path.name} (SHA-256 {sha})")
    print("  columns: " + ", ".join(f"{k} ← {v!r}" for k, v in sheet.columns.items()))
    if sheet.ignored:
        print("  ignored columns: " + ", ".join(repr(c) for c in sheet.ignored))
    return 0


def _ledger_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=None, help="cloud.yaml (default ./cloud.yaml if present)")
    p.add_argument(
        "--ledger", default=None, help="ledger URL instead of the config's (sqlite:///... or postgresql://...)"
    )


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("evidence", help="evidence pack for evaluators; equipment ledger")
    esub = p.add_subparsers(dest="evidence_command", required=True)

    x = esub.add_parser("export", help="write the evidence pack of an enterprise for a period")
    x.add_argument("--enterprise", required=True, help="enterprise id")
    x.add_argument("--from", dest="from_", required=True, help="first day (YYYY-MM-DD), or a local date-time")
    x.add_argument("--to", required=True, help="last day, included (YYYY-MM-DD), or a date-time (excluded)")
    x.add_argument("--format", default="json,csv,html", help="any of json,csv,html (default all)")
    x.add_argument("-o", "--output", required=True, help="directory to create (must be empty)")
    _ledger_options(x)
    x.set_defaults(func=cmd_export)

    v = esub.add_parser("verify", help="check an evidence pack against its manifest")
    v.add_argument("directory")
    v.add_argument("--expect", default=None, help="the manifest's SHA-256 as noted when the pack was received")
    v.set_defaults(func=cmd_verify)

    ledger = TEXTS["equipment_ledger"]
    i = esub.add_parser("import-equipment", help=f"import the {ledger.en} ({ledger.zh}) from CSV or XLSX")
    i.add_argument("file")
    i.add_argument("--enterprise", required=True, help="enterprise id")
    _ledger_options(i)
    i.set_defaults(func=cmd_import_equipment)
