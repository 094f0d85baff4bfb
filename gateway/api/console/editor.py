"""The tag-map editor (engineer): devices and tags edited in a draft, validated as `edgegw config validate`
does, applied with a diff: written atomically with a backup, then hot-reloaded (`gateway.reload`).

Also: tags from a spreadsheet (CSV/XLSX, Chinese or English headers) and back, downloadable templates, an
OPC UA browse picker and a Modbus test read of one address.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud_bridge.webapp import Site
from drivers import make_driver
from edge_config.loader import ConfigError, load_text
from edge_config.models import GatewayConfig
from edge_config.sheets import SheetError
from edge_config.tagmap import CHINESE, columns, read_tags, write_sheet, write_tags
from gateway.api.auth import Engineer
from gateway.api.console.forms import TAG_FIELDS, FormError, device_from_form, field_errors, flow_text, tag_cells
from gateway.api.view import AgentView
from gateway.reload import config_text, unified_diff, write_config

MAX_SHEET = 5 << 20  # bytes of an uploaded tag sheet
BLANK_ROWS = 3
TEST_READ_TIMEOUT = 5.0
BROWSE_TIMEOUT = 30.0
TEMPLATE_ROWS = {
    "modbus": [
        {"name": "speed", "address": "40001", "type": "uint16", "scale": "0.1", "unit": "rpm", "domain": "equipment"}
    ],
    "opcua": [
        {"name": "temperature", "node": "ns=2;s=Reactor1.Temperature", "type": "float64", "unit": "°C"},
    ],
}


class Draft:
    """The configuration being edited (config data as JSON), shared by the gateway's engineers."""

    def __init__(self) -> None:
        self.data: dict[str, Any] | None = None

    def current(self, agent: AgentView) -> dict[str, Any]:
        if self.data is not None:
            return self.data
        return agent.full_config().model_dump(mode="json", exclude_defaults=True)


def _validate(data: dict[str, Any], name: str) -> GatewayConfig:
    return load_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), GatewayConfig, name)


def build_editor(agent: AgentView, site: Site) -> APIRouter:
    router = APIRouter(prefix="/editor", include_in_schema=False)
    draft = Draft()
    applying = asyncio.Lock()

    def file_name() -> str:
        return agent.config_path.name if agent.config_path else "gateway.yaml"

    def keep(request: Request, candidate: dict[str, Any], then: str) -> Response:
        """Validate `candidate` as the whole config; keep it as the draft, or show the errors."""
        try:
            _validate(candidate, file_name())
        except ConfigError as e:
            return page(request, flashes=[("error", str(i)) for i in e.issues])
        draft.data = candidate
        return RedirectResponse(then, status_code=303)

    def page(request: Request, **extra: Any) -> HTMLResponse:
        data = draft.current(agent)
        diff = ""
        if draft.data is not None:
            diff = unified_diff(
                config_text(agent.full_config()), config_text(_validate(draft.data, file_name())), file_name()
            )
        return site.render(
            request,
            "editor.html.j2",
            title="editor",
            devices=data.get("devices", []),
            has_draft=draft.data is not None,
            diff=diff,
            editable=agent.config_path is not None,
            **extra,
        )

    @router.get("", response_class=HTMLResponse)
    def editor(request: Request, _user: Engineer) -> HTMLResponse:
        return page(request)

    def device_page(
        request: Request,
        dev: dict[str, Any],
        *,
        original: str,
        errors: dict[str, list[str]] | None = None,
        other: list[str] | None = None,
        status: int = 200,
        rows: list[dict[str, str]] | None = None,
    ) -> HTMLResponse:
        tag_rows = rows if rows is not None else [tag_cells(t) for t in dev.get("tags", [])]
        tag_rows = tag_rows + [dict.fromkeys(TAG_FIELDS, "") for _ in range(BLANK_ROWS)]
        return site.render(
            request,
            "device_form.html.j2",
            title=original or "new",
            status=status,
            original=original,
            dev=dev,
            connection=flow_text(dev.get("connection")),
            oee=flow_text(dev.get("oee")),
            rows=tag_rows,
            errors=errors or {},
            other=other or [],
        )

    @router.get("/devices/{dev_id}", response_class=HTMLResponse)
    def edit_device(request: Request, dev_id: str, _user: Engineer) -> HTMLResponse:
        if dev_id == "_new":
            return device_page(
                request, {"driver": "modbus_tcp", "poll_interval": "1s", "production": True}, original=""
            )
        dev = next((d for d in draft.current(agent).get("devices", []) if d["id"] == dev_id), None)
        if dev is None:
            raise HTTPException(404, detail=f"no device {dev_id!r} in the config")
        return device_page(request, dev, original=dev_id)

    @router.post("/devices/{dev_id}", response_class=HTMLResponse)
    async def save_device(request: Request, dev_id: str, _user: Engineer) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        try:
            dev, kept = device_from_form(form)
        except FormError as e:
            return device_page(
                request, {"id": form.get("id", "")}, original=dev_id, errors={e.field: [str(e)]}, status=422
            )
        data = draft.current(agent)
        devices = list(data.get("devices", []))
        index = next((i for i, d in enumerate(devices) if d["id"] == dev_id), len(devices))
        if index == len(devices):
            devices.append(dev)
        else:
            devices[index] = dev
        candidate = {**data, "devices": devices}
        try:
            _validate(candidate, file_name())
        except ConfigError as e:
            errors, other = field_errors(e.issues, index, kept)
            rows = _rows_from_form(form)
            return device_page(request, dev, original=dev_id, errors=errors, other=other, status=422, rows=rows)
        draft.data = candidate
        return RedirectResponse("/editor#draft", status_code=303)

    @router.post("/devices/{dev_id}/remove")
    def remove_device(request: Request, dev_id: str, _user: Engineer) -> Response:
        data = draft.current(agent)
        return keep(
            request, {**data, "devices": [d for d in data.get("devices", []) if d["id"] != dev_id]}, "/editor#draft"
        )

    @router.post("/discard")
    def discard(_user: Engineer) -> Response:
        draft.data = None
        return RedirectResponse("/editor", status_code=303)

    @router.post("/apply", response_class=HTMLResponse)
    async def apply(request: Request, _user: Engineer) -> HTMLResponse:
        path = agent.config_path
        if path is None:
            raise HTTPException(409, detail="this gateway's config was not loaded from a file: nothing to write")
        async with applying:  # one Apply at a time; validating and the fsyncs off the event loop, where scans run
            data = draft.data
            if data is None:
                return page(request, flashes=[("ok", _fmt(site.lang(request) == "en", "ui.no_draft"))])
            new = await asyncio.to_thread(_validate, data, path.name)
            backup = await asyncio.to_thread(write_config, path, config_text(new))
            plan = await agent.reload(new)
            if draft.data is data:
                draft.data = None
        lang_en = site.lang(request) == "en"
        msgs = [
            (
                "ok",
                _fmt(
                    lang_en,
                    "ui.applied",
                    added=len(plan.added),
                    changed=len(plan.changed),
                    removed=len(plan.removed),
                    unchanged=len(plan.unchanged),
                    backup=backup.name if backup else "—",
                ),
            )
        ]
        if plan.restart_needed:
            msgs.append(("error", _fmt(lang_en, "ui.restart_needed", sections=", ".join(plan.restart_needed))))
        return page(request, flashes=msgs)

    # ---------------------------------------------------------------- spreadsheets

    @router.get("/template.{ext}")
    def template(ext: str, _user: Engineer, kind: str = "modbus") -> Response:
        if kind not in TEMPLATE_ROWS or ext not in ("csv", "xlsx"):
            raise HTTPException(404, detail="templates: kind modbus|opcua, .csv or .xlsx")
        keys = [k for k in columns(kind) if k in TEMPLATE_ROWS[kind][0]]  # type: ignore[arg-type]
        header = [CHINESE.get(k, (k,))[0] for k in keys]
        rows = [[r.get(k, "") for k in keys] for r in TEMPLATE_ROWS[kind]]
        return _sheet_response(header, rows, f"tags-{kind}-template.{ext}")

    @router.get("/devices/{dev_id}/tags.{ext}")
    def export_tags(dev_id: str, ext: str, _user: Engineer) -> Response:
        device = next((d for d in agent.full_config().devices if d.id == dev_id), None)
        if device is None or ext not in ("csv", "xlsx"):
            raise HTTPException(404, detail=f"no device {dev_id!r} (or not .csv/.xlsx)")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / f"{dev_id}.{ext}"
            write_tags(list(device.tags), out)
            return Response(out.read_bytes(), media_type=_media(ext), headers=_attachment(f"{dev_id}-tags.{ext}"))

    @router.post("/devices/{dev_id}/tags", response_class=HTMLResponse)
    async def import_tags(
        request: Request, dev_id: str, _user: Engineer, sheet: Annotated[UploadFile, File()]
    ) -> Response:
        data = await sheet.read(MAX_SHEET + 1)
        if len(data) > MAX_SHEET:
            raise HTTPException(413, detail=f"the sheet is larger than {MAX_SHEET >> 20} MB")
        name = sheet.filename or "tags.csv"
        try:
            tags, _kind, _ignored = await asyncio.to_thread(read_tags, data, name)  # off the event loop
        except SheetError as e:
            return page(request, flashes=[("error", line) for line in e.issues])
        current = draft.current(agent)
        devices = list(current.get("devices", []))
        index = next((i for i, d in enumerate(devices) if d["id"] == dev_id), None)
        if index is None:
            raise HTTPException(404, detail=f"no device {dev_id!r} in the config")
        devices[index] = {**devices[index], "tags": [t.model_dump(mode="json", exclude_defaults=True) for t in tags]}
        return keep(request, {**current, "devices": devices}, "/editor#draft")

    # ---------------------------------------------------------------- OPC UA browse, Modbus test read

    @router.get("/opcua", response_class=HTMLResponse)
    async def browse(request: Request, _user: Engineer, endpoint: str = "", device: str = "") -> HTMLResponse:
        found: list[Any] = []
        error = ""
        if endpoint:
            try:
                found = await asyncio.wait_for(_browse(endpoint, agent.config.gateway.data_dir), BROWSE_TIMEOUT)
            except Exception as e:  # a browse that fails is reported on the page
                error = f"{type(e).__name__}: {e}"
        return site.render(
            request, "browse.html.j2", title="OPC UA", endpoint=endpoint, device=device, found=found, error=error
        )

    @router.post("/opcua", response_class=HTMLResponse)
    async def add_browsed(request: Request, _user: Engineer) -> Response:
        form = await request.form()
        endpoint = str(form.get("endpoint", ""))
        dev_id = str(form.get("device", "")).strip()
        nodes = [str(v) for v in form.getlist("node")][:5000]
        if not nodes or not dev_id:
            raise HTTPException(422, detail="tick at least one node and name the device")
        from drivers.opcua.browse import to_tags

        found = await asyncio.wait_for(_browse(endpoint, agent.config.gateway.data_dir), BROWSE_TIMEOUT)
        ticked = [b for b in found if b.node in set(nodes)]
        tags = to_tags(ticked)
        for t in tags:
            t.pop("description", None)
        current = draft.current(agent)
        devices = list(current.get("devices", []))
        existing = next((d for d in devices if d["id"] == dev_id), None)
        if existing is None:
            devices.append(
                {"id": dev_id, "name": dev_id, "driver": "opcua", "connection": {"endpoint": endpoint}, "tags": tags}
            )
        else:
            names = {t["name"] for t in existing.get("tags", [])}
            existing = {**existing, "tags": [*existing.get("tags", []), *(t for t in tags if t["name"] not in names)]}
            devices = [existing if d["id"] == dev_id else d for d in devices]
        return keep(request, {**current, "devices": devices}, f"/editor/devices/{dev_id}")

    @router.post("/modbus/test", response_class=HTMLResponse)
    async def test_read(
        request: Request,
        _user: Engineer,
        host: Annotated[str, Form(max_length=255)],
        port: Annotated[int, Form(ge=1, le=65535)],
        unit_id: Annotated[int, Form(ge=0, le=255)],
        address: Annotated[str, Form(max_length=32)],
        type: Annotated[str, Form(max_length=16)] = "uint16",
    ) -> HTMLResponse:
        result, ok = await _test_read(host, port, unit_id, address, type)
        return site.render(request, "test_read.html.j2", result=result, ok=ok)

    return router


def _rows_from_form(form: dict[str, str]) -> list[dict[str, str]]:
    rows: dict[int, dict[str, str]] = {}
    for k, v in form.items():
        parts = k.split(".")
        if len(parts) == 3 and parts[0] == "tags" and parts[1].isdigit() and int(parts[1]) < 5000:
            rows.setdefault(int(parts[1]), {})[parts[2]] = v
    return [{k: rows[i].get(k, "") for k in TAG_FIELDS} for i in sorted(rows)]


async def _browse(endpoint: str, data_dir: str) -> list[Any]:
    from drivers.opcua.browse import walk
    from drivers.opcua.pki import pki_for
    from drivers.opcua.session import close_client, open_client
    from edge_config.models import OpcUaConnection

    conn = OpcUaConnection.model_validate({"endpoint": endpoint})
    client, _security = await open_client(conn, pki_for(data_dir))
    try:
        return await walk(client, max_nodes=5000)
    finally:
        await close_client(client)


async def _test_read(host: str, port: int, unit_id: int, address: str, type_: str) -> tuple[str, bool]:
    """Read one address once through the gateway's own Modbus driver; the value or the reason."""
    try:
        cfg = GatewayConfig.model_validate(
            {
                "gateway": {"id": "test-read", "enterprise_id": "test"},
                "devices": [
                    {
                        "id": "test-read",
                        "driver": "modbus_tcp",
                        "connection": {"host": host, "port": port, "unit_id": unit_id, "timeout": "2s"},
                        "tags": [{"name": "value", "address": address, "type": type_}],
                    }
                ],
            }
        )
    except Exception as e:  # a bad address or type: the model's message
        return f"{e}".splitlines()[-1] if str(e) else type(e).__name__, False
    driver = make_driver(cfg.devices[0])
    try:
        await asyncio.wait_for(driver.connect(), TEST_READ_TIMEOUT)
        readings = await asyncio.wait_for(driver.read(), TEST_READ_TIMEOUT)
    except Exception as e:  # the device's answer (or silence) is the result
        return f"{type(e).__name__}: {e}", False
    finally:
        with contextlib.suppress(Exception):
            await driver.close()
    r = readings[0]
    return f"{r.value!r} ({r.quality})", r.quality == "good"


def _media(ext: str) -> str:
    return (
        "text/csv; charset=utf-8"
        if ext == "csv"
        else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )


def _attachment(name: str) -> dict[str, str]:
    return {"content-disposition": f'attachment; filename="{name}"'}


def _sheet_response(header: list[str], rows: list[list[str]], name: str) -> Response:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / name
        write_sheet(header, rows, out, sheet="点表")
        return Response(out.read_bytes(), media_type=_media(name.rsplit(".", 1)[1]), headers=_attachment(name))


def _fmt(en: bool, key: str, **values: object) -> str:
    from cloud_bridge.metrics.labels import label

    zh_text, en_text = label(key).format(**values)
    return en_text if en else zh_text
