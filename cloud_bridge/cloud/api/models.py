"""Answers of the evidence API that are not evidence: health, the enterprises, the equipment ledger.
(The evidence itself is in `cloud_bridge.cloud.evidence.models`.)"""

from __future__ import annotations

from pydantic import Field

from cloud_bridge.cloud.evidence.models import LedgerImport, Model


class Health(Model):
    status: str
    version: str
    ledger: str = Field(description="the ledger's URL without its password")


class EnterpriseListed(Model):
    id: str
    name: str
    configured: bool = Field(description="in cloud.yaml (else only seen in the ledger)")


class EquipmentItem(Model):
    """A row of the equipment ledger as imported."""

    id: str
    name: str
    type: str
    line: str
    key_process: bool
    digitized: bool
    gateway: str = Field(description="the gateway it is connected through; empty: any of the enterprise's")
    device: str = Field(description="its device id in that gateway's config")


class EquipmentLedger(Model):
    """The answer of `GET .../equipment`."""

    enterprise: str
    import_: LedgerImport | None = Field(alias="import")
    equipment: list[EquipmentItem]


class EquipmentImported(Model):
    """The answer of `PUT .../equipment`."""

    enterprise: str
    rows: int
    sha256: str
    columns: dict[str, str] = Field(description="our column → the sheet's header text")
    ignored: list[str] = Field(description="header texts that are none of ours")
