"""One evidence pack, as the command line and the portal make it: the period's audit (the trust chain's
`audit_period`), the inputs gathered from the ledger, the pack written and signed with the platform key."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cloud_bridge.cloud.evidence.build import gather_inputs
from cloud_bridge.cloud.evidence.export import FORMATS, Pack, export_pack
from cloud_bridge.cloud.evidence.models import AuditRecord
from cloud_bridge.cloud.evidence.signing import load_private_key
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.cloud.trust.audit import AuditReport, audit_period
from cloud_bridge.metrics.labels import TEXTS
from cloud_bridge.metrics.period import Period
from edge_config.models import CloudConfig
from edge_config.secrets import redact_url


class AuditRefused(Exception):
    """The period's audit failed (or could not run): no pack unless asked for one that says so."""


def audit_summary(report: AuditReport) -> str:
    """One sentence for the command line, the report and audit.json."""
    checkpoints = sum(g.checkpoints for g in report.gateways)
    rows = report.evidence_rows_checked
    scope = f"{len(report.gateways)} gateway(s), {checkpoints} signed checkpoints, {rows} evidence rows"
    if report.intact:
        return f"{scope}: nothing inserted, deleted or altered"
    shown = "; ".join(f"{f.gw} {f.kind}: {f.detail}" for f in report.findings[:3])
    more = f" (+{len(report.findings) - 3} more)" if len(report.findings) > 3 else ""
    return f"{scope}: {len(report.findings)} finding(s): {shown}{more}"


def run_audit(store: EvidenceStore, config: CloudConfig, ent: str, period: Period) -> AuditRecord:
    """The trust chain's audit of the period (`audit_period`), as the pack records it."""
    if config.trust.mode == "off":
        return AuditRecord(
            status="not_available",
            summary="trust.mode is off: the ingester keeps no signed proofs, so the ledger cannot be audited",
        )
    try:
        report = audit_period(store, ent, period)
    except Exception as e:  # recorded, not raised: the export refuses a pack whose audit did not run
        return AuditRecord(status="error", summary=f"the audit failed to run: {type(e).__name__}: {e}")
    status = "passed" if report.intact else "failed"
    return AuditRecord(status=status, summary=audit_summary(report), report=report.model_dump(mode="json"))


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
    audit = run_audit(store, config, ent, period)
    if audit.status in ("failed", "error") and not allow_failed_audit:
        raise AuditRefused(f"{TEXTS[f'audit.{audit.status}']}: {audit.summary}")
    inputs = gather_inputs(store, config, ent, period, now_ms=now_ms)
    pack = export_pack(inputs, out_dir, formats, signing_key=key, audit=audit, ledger_url=redact_url(store.url))
    return pack, audit
