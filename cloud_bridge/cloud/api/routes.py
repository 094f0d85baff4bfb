"""Evidence API routes: per enterprise and period, the MIIT 2024 equipment indicators, per-device online
time, completeness and OEE, and the equipment ledger. Read-only except the ledger import. Every route but
health needs a user (`cloud_bridge.cloud.api.auth`): 401 without one, 403 for an enterprise or action the
role does not allow; reads, exports and imports are written to the audit log. Errors are 4xx with a
reason: unknown enterprise 404, bad period 422."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import PlainTextResponse

from cloud_bridge.cloud.api.auth import Caller, Users, may_read
from cloud_bridge.cloud.api.models import EnterpriseListed, EquipmentImported, EquipmentLedger, Health
from cloud_bridge.cloud.evidence.build import build_evidence, enterprise_period, oee_of
from cloud_bridge.cloud.evidence.models import Device, DeviceOee, Evidence, Overview, PeriodBounds, SummaryAnswer
from cloud_bridge.cloud.evidence.overview import build_overview
from cloud_bridge.cloud.ledger.equipment import EquipmentError, equipment_csv
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.cloud.ledger.users import CloudUser, CloudUsers
from cloud_bridge.metrics.period import Period, PeriodError, iso_local
from cloud_bridge.webapp import problems
from edge_config.models import CloudConfig
from edge_config.secrets import redact_url
from edge_config.version import __version__

router = APIRouter(prefix="/api/v1", tags=["evidence"], responses=problems(401, 403, 404, 422))
MAX_UPLOAD = 20 << 20
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def get_store(request: Request) -> EvidenceStore:
    store: EvidenceStore = request.app.state.store
    return store


def get_config(request: Request) -> CloudConfig:
    config: CloudConfig = request.app.state.config
    return config


Store = Annotated[EvidenceStore, Depends(get_store)]
Config = Annotated[CloudConfig, Depends(get_config)]
From = Annotated[str | None, Query(alias="from", description="YYYY-MM-DD, local date-time or epoch ms; default today")]
To = Annotated[
    str | None, Query(alias="to", description="YYYY-MM-DD (whole day), date-time or epoch ms; default today")
]


def _enterprise(store: EvidenceStore, config: CloudConfig, ent: str, user: Caller) -> str:
    may_read(user, ent)
    if config.enterprise(ent) is None and not store.knows(ent):
        raise HTTPException(404, detail=f"unknown enterprise {ent!r}: not in cloud.yaml and nothing in the ledger")
    return ent


def _period(request: Request, config: CloudConfig, ent: str, start: str | None, end: str | None) -> Period:
    now: int = request.app.state.clock()
    tz, _ = config.calendar(ent)
    today = iso_local(now, tz)[:10]
    try:
        return enterprise_period(config, ent, start or today, end or today, now)
    except PeriodError as e:
        raise HTTPException(422, detail=f"bad period: {e}") from None


@router.get("/health")
def health(store: Store) -> Health:
    return Health(status="ok", version=__version__, ledger=redact_url(store.url))


def readable(store: EvidenceStore, config: CloudConfig, user: CloudUser) -> list[str]:
    """The enterprises (configured or in the ledger) this user may read, sorted."""
    return sorted(i for i in {e.id for e in config.enterprises} | set(store.enterprises()) if user.may_read(i))


@router.get("/enterprises")
def enterprises(store: Store, config: Config, user: Caller) -> list[EnterpriseListed]:
    """The enterprises this user may read."""
    known = {e.id: e for e in config.enterprises}
    ids = readable(store, config, user)
    return [EnterpriseListed(id=i, name=known[i].name if i in known else "", configured=i in known) for i in ids]


def pilot_overview(request: Request, store: EvidenceStore, config: CloudConfig, user: CloudUser,
                   start: str | None, end: str | None) -> Overview:  # fmt: skip
    """The overview of every enterprise the user may read (the API's and the portal's); 422 on a bad period."""
    now: int = request.app.state.clock()
    today = iso_local(now, config.timezone)[:10]
    try:
        return build_overview(store, config, readable(store, config, user), start or today, end or today, now_ms=now)
    except PeriodError as e:
        raise HTTPException(422, detail=f"bad period: {e}") from None


@router.get("/overview")
def overview(
    request: Request, store: Store, config: Config, user: Caller, users: Users, start: From = None, end: To = None
) -> Overview:
    """The pilot in one call: every enterprise this user may read (evaluators all or those assigned, admins all)
    with its networked equipment ratio (MIIT 2024 band), digitized ratio, devices online now, online time inside
    planned time and OEE devices for the period; each row equals the enterprise's evidence summary."""
    ov = pilot_overview(request, store, config, user, start, end)
    p = ov.enterprises[0].period if ov.enterprises else None
    users.audit(user.name, "read", "", f"{request.url.path} {len(ov.enterprises)} enterprises "
                f"{p.from_ms if p else ''}..{p.to_ms if p else ''}")  # fmt: skip
    return ov


@router.get("/enterprises/{ent}/evidence")
def evidence(
    request: Request,
    ent: str,
    store: Store,
    config: Config,
    user: Caller,
    users: Users,
    start: From = None,
    end: To = None,
) -> Evidence:
    """Everything: indicators with score bands, per-device figures, OEE, business areas, provenance."""
    _enterprise(store, config, ent, user)
    period = _period(request, config, ent, start, end)
    users.audit(user.name, "read", ent, f"{request.url.path} {period.start}..{period.end}")
    return build_evidence(store, config, ent, period, now_ms=request.app.state.clock())


@router.get("/enterprises/{ent}/summary")
def summary(
    request: Request,
    ent: str,
    store: Store,
    config: Config,
    user: Caller,
    users: Users,
    start: From = None,
    end: To = None,
) -> SummaryAnswer:
    """The indicators: networked and digitized ratios (MIIT 2024 bands), online rate, completeness, areas."""
    ev = evidence(request, ent, store, config, user, users, start, end)
    return SummaryAnswer(enterprise=ev.enterprise, period=ev.period, summary=ev.summary, notes=ev.notes)


@router.get("/enterprises/{ent}/devices")
def devices(
    request: Request,
    ent: str,
    store: Store,
    config: Config,
    user: Caller,
    users: Users,
    start: From = None,
    end: To = None,
) -> list[Device]:
    """Per device: networked, first/last seen, online time and rate, completeness, OEE."""
    return evidence(request, ent, store, config, user, users, start, end).devices


@router.get("/enterprises/{ent}/devices/{device}/oee")
def oee(
    request: Request,
    ent: str,
    device: str,
    store: Store,
    config: Config,
    user: Caller,
    users: Users,
    start: From = None,
    end: To = None,
    gateway: Annotated[str | None, Query(description="the gateway, when the device id is on several")] = None,
) -> DeviceOee:
    """OEE of one device (its gateway device id) for the period, with the per-shift split."""
    _enterprise(store, config, ent, user)
    period = _period(request, config, ent, start, end)
    users.audit(user.name, "read", ent, f"{request.url.path} {period.start}..{period.end}")
    metas = store.metas(ent)
    keys = [k for k in metas if k[1] == device and (gateway is None or k[0] == gateway)]
    if not keys:
        raise HTTPException(404, detail=f"no device {device!r} of enterprise {ent!r} has announced itself (meta)")
    if len(keys) > 1:
        raise HTTPException(422, detail=f"device {device!r} is on gateways {sorted(k[0] for k in keys)}: give gateway=")
    gw, dev = keys[0]
    o = metas[keys[0]].oee
    if o is None:
        raise HTTPException(404, detail=f"device {device!r} has no OEE settings (no state tag in its config)")
    result = oee_of(store, config, ent, period, gw, dev, o, now_ms=request.app.state.clock())
    return DeviceOee.of(result, period.timezone, enterprise=ent, gateway=gw, device=dev, period=PeriodBounds.of(period))


@router.get(
    "/enterprises/{ent}/equipment",
    response_model=EquipmentLedger,
    responses={200: {"content": {"text/csv": {}}, "description": "the ledger, or with `format=csv` the sheet"}},
)
def equipment(
    ent: str,
    store: Store,
    config: Config,
    user: Caller,
    users: Users,
    format: Annotated[Literal["json", "csv"], Query(description="`csv` for the sheet")] = "json",
) -> Response | EquipmentLedger:
    """The equipment ledger as imported; `format=csv` for the sheet."""
    _enterprise(store, config, ent, user)
    items = store.equipment(ent)
    users.audit(user.name, "export" if format == "csv" else "read", ent, f"equipment ledger ({format})")
    if format == "csv":
        return PlainTextResponse(equipment_csv(items), media_type="text/csv; charset=utf-8")
    return EquipmentLedger.model_validate(
        {
            "enterprise": ent,
            "import": store.equipment_import(ent),
            "equipment": [{**e.ledger_fields(), "gateway": e.gateway, "device": e.device_id} for e in items],
        }
    )


SHEET_BODY = {
    "requestBody": {
        "required": True,
        "description": "the sheet: CSV (UTF-8 or GB18030) or XLSX, as the request body",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                "schema": {"type": "string", "format": "binary"}
            },
        },
    }
}


@router.put("/enterprises/{ent}/equipment", openapi_extra=SHEET_BODY, responses=problems(413))
async def import_equipment(
    request: Request,
    ent: str,
    store: Store,
    config: Config,
    user: Caller,
    users: Users,
    filename: Annotated[str, Query(description="the sheet's file name: .csv or .xlsx")] = "equipment.csv",
) -> EquipmentImported:
    """Replace the enterprise's equipment ledger with a CSV or XLSX sheet sent as the request body (an
    operator of the enterprise, or an admin)."""
    may_import(user, ent)
    data = await request.body()
    try:
        # parsed off the event loop: a large (or hostile) sheet never holds up the other requests
        return await asyncio.to_thread(import_sheet, store, users, user, ent, data, filename)
    except EquipmentError as e:
        raise HTTPException(422, detail={"reason": "the equipment sheet has errors", "errors": e.issues}) from None


def may_import(user: CloudUser, ent: str) -> None:
    if not user.may_import(ent):
        raise HTTPException(403, detail=f"{user.name} ({user.role}) may not import the ledger of {ent!r}")
    if not _SLUG.match(ent):
        raise HTTPException(422, detail=f"{ent!r} is not an enterprise id (ASCII slug)")


def import_sheet(
    store: EvidenceStore, users: CloudUsers, user: CloudUser, ent: str, data: bytes, filename: str
) -> EquipmentImported:
    """Make a sheet the enterprise's equipment ledger and log it (the API's PUT and the portal's form);
    `EquipmentError` when the sheet has errors. The caller checked `may_import`."""
    if len(data) > MAX_UPLOAD:
        raise HTTPException(413, detail=f"the sheet is larger than {MAX_UPLOAD >> 20} MB")
    sheet, sha = store.import_equipment(ent, data, filename)
    users.audit(user.name, "import", ent, f"equipment ledger {filename!r}: {len(sheet.items)} rows, sha256 {sha}")
    return EquipmentImported(
        enterprise=ent, rows=len(sheet.items), sha256=sha, columns=sheet.columns, ignored=sheet.ignored
    )
