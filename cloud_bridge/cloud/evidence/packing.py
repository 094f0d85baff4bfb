"""One evidence pack, as the command line and the portal make it: the period's audit (the trust chain's
`audit_period`), the inputs gathered from the ledger, the pack written and signed with the platform key."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

from cloud_bridge.cloud.evidence.build import gather_inputs
from cloud_bridge.cloud.evidence.export import FORMATS, Pack, export_pack
from cloud_bridge.cloud.evidence.models import AuditRecord
from cloud_bridge.cloud.evidence.signing import load_private_key
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.metrics.labels import TEXTS
from cloud_bridge.metrics.period import Period
from edge_config.models import CloudConfig
from edge_config.secrets import redact_url

AUDIT_MODULE = "cloud_bridge.cloud.trust.audit"


class AuditRefused(Exception):
    """The period's audit failed (or could not run): no pack unless asked for one that says so."""


def run_audit(store: EvidenceStore, ent: str, period: Period) -> AuditRecord:
    """`audit_period(store, ent, period)` of the trust chain, as the pack records it. Its report's `ok` (or
    `passed`) is the verdict, `summary` the sentence; the whole report goes into audit.json."""
    from cloud_bridge.cloud.evidence.models import AuditRecord

    try:
        module = importlib.import_module(AUDIT_MODULE)
    except ModuleNotFoundError as e:
        if e.name and AUDIT_MODULE.startswith(e.name):
            return AuditRecord(status="not_available", summary=f"{AUDIT_MODULE} is not in this build")
        raise
    try:
        report = module.audit_period(store, ent, period)
        data = report.model_dump(mode="json")
    except Exception as e:  # recorded, not raised: the export refuses a pack whose audit did not run
        return AuditRecord(status="error", summary=f"the audit failed to run: {type(e).__name__}: {e}")
    verdict = next((v for a in ("ok", "passed") if isinstance(v := getattr(report, a, None), bool)), None)
    summary = str(getattr(report, "summary", "") or "")
    if verdict is None:
        return AuditRecord(status="error", summary="the audit report gives no verdict (ok)", report=data)
    return AuditRecord(status="passed" if verdict else "failed", summary=summary, report=data)


def make_pack(
    store: EvidenceStore,
    config: CloudConfig,
    ent: str,
    period: Period,
    out_dir: str | Path,
    formats: Sequence[str] = FORMATS,
    *,
    allow_failed_audit: bool = False,
    now_ms: int | None = None,
) -> tuple[Pack, AuditRecord]:
    """The pack of `ent` for `period` in `out_dir`, signed when the config names a key. Raises AuditRefused
    when the audit fails and `allow_failed_audit` is not set, SigningError for an unusable key, ExportError."""
    key = load_private_key(config.evidence.signing_key) if config.evidence.signing_key else None
    audit = run_audit(store, ent, period)
    if audit.status in ("failed", "error") and not allow_failed_audit:
        raise AuditRefused(f"{TEXTS[f'audit.{audit.status}']}: {audit.summary}")
    inputs = gather_inputs(store, config, ent, period, now_ms=now_ms)
    pack = export_pack(inputs, out_dir, formats, signing_key=key, audit=audit, ledger_url=redact_url(store.url))
    return pack, audit
