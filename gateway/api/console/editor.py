"""The tag-map editor (engineer): devices and tags edited in a draft, validated as `edgegw config validate`
does, applied with a diff: written atomically with a backup, then hot-reloaded (`gateway.reload`).

Also: tags from a spreadsheet (CSV/XLSX, Chinese or English headers) and back, downloadable templates, an
OPC UA browse picker and a Modbus test read of one address.

The draft holds the config as its file does (`gateway.reload.file_data`): no secret of the environment's or
read from a `password_file`; a device form shows a secret as a mask. Every change of the draft and every
Apply runs one at a time (`edits`), its validation off the event loop (the scans run there). Apply refuses
to write over a file changed on disk since the agent loaded it (or the console last wrote it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud_bridge.webapp import Site
from drivers import make_driver
from edge_config.loader import ConfigError, error_loc, load_text
from edge_config.models import DRIVER_NAMES, Dlt645Device, GatewayConfig, ModbusRtuDevice, ModbusTcpDevice, OpcUaDevice
from edge_config.secrets import with_env_secrets
from edge_config.sheets import SheetError
from edge_config.tagmap import CHINESE, columns, read_tags, write_sheet, write_tags
from gateway.api.auth import Engineer
from gateway.api.console.forms import (
    MAX_TAG_ROWS,
    TAG_FIELDS,
    FormError,
    address_key,
    device_from_form,
    field_errors,
    flow_text,
    form_rows,
    issue_text,
    masked,
    restore_secrets,
    tag_cells,
)
from gateway.api.view import AgentView
from gateway.normalize import TagSpec, to_sample
from gateway.reload import config_text, data_text, file_data, file_sha256, unified_diff, write_config

MAX_SHEET = 5 << 20  # bytes of an uploaded tag sheet
# a posted form's limits (starlette's default of 1,000 fields is a device of ~120 tags): a device form of
# MAX_TAG_ROWS tags (and its blank rows), or the OPC UA picker's as many nodes
MAX_FORM_FIELDS = (MAX_TAG_ROWS + 10) * len(TAG_FIELDS) + 100
MAX_FORM_FILES = 4
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
DEVICE_MODELS: dict[str, Any] = {
    "modbus_tcp": ModbusTcpDevice,
    "modbus_rtu": ModbusRtuDevice,
    "opcua": OpcUaDevice,
    "dlt645": Dlt645Device,
}
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
    """The configuration being edited (config data as its file holds it: `gateway.reload.file_data`), shared
    by the gateway's engineers."""

    def __init__(self) -> None:
        self.data: dict[str, Any] | None = None

    def current(self, agent: AgentView) -> dict[str, Any]:
        if self.data is not None:
            return self.data
        return file_data(agent.full_config())


def _validate(data: dict[str, Any], name: str) -> GatewayConfig:
    """`data` validated as `edgegw config validate` does, with the environment's secrets as the agent loads
    them (`with_env_secrets`: the file written from it has the file's own, `file_data`)."""
    return with_env_secrets(load_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), GatewayConfig, name))


def _shown(config: GatewayConfig) -> str:
    """The config as the diff shows it: as its file is written, every secret masked."""
    return data_text(masked(file_data(config)))


def _say(en: bool, zh_text: str, en_text: str) -> str:
    return en_text if en else zh_text


def build_editor(agent: AgentView, site: Site) -> APIRouter:
    class FormFirst(APIRoute):
        """Reads a posted form with the editor's limits before anything else does (the CSRF check, FastAPI's
        own parsing, which would use starlette's 1,000 fields); a form over them gets a page saying so."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def read_form_first(request: Request) -> Response:
                if request.method == "POST" and request.headers.get("content-type", "").startswith(_FORM_TYPES):
                    try:
                        await request.form(max_fields=MAX_FORM_FIELDS, max_files=MAX_FORM_FILES)
                    except StarletteHTTPException as e:  # too many fields or files, a field too long
                        return form_refused(request, str(e.detail))
                return await handler(request)

            return read_form_first

    router = APIRouter(prefix="/editor", include_in_schema=False, route_class=FormFirst)
    draft = Draft()
    edits = asyncio.Lock()  # one change of the draft, or one Apply, at a time
    # what the file held when this console last wrote it (None: as the agent loaded it, `config_sha256`)
    written_sha: list[str | None] = [None]

    def file_name() -> str:
        return agent.config_path.name if agent.config_path else "gateway.yaml"

    def form_refused(request: Request, detail: str) -> HTMLResponse:
        en = site.lang(request) == "en"
        message = _say(
            en,
            f"表单过大，未保存（{detail}）。设备表单最多 {MAX_TAG_ROWS} 个点位，OPC UA 选点最多 {MAX_TAG_ROWS} 个节点；"
            "更多点位请用表格导入。",
            f"The form is too large and was not saved ({detail}). A device's form holds at most {MAX_TAG_ROWS} "
            f"tags, the OPC UA picker {MAX_TAG_ROWS} nodes: import more tags from a sheet.",
        )
        return site.render(request, "form_refused.html.j2", title="editor", status=413, flashes=[("error", message)])

    async def keep(request: Request, change: Callable[[dict[str, Any]], dict[str, Any]], then: str) -> Response:
        """Validate `change(draft)` as the whole config; keep it as the draft, or show the errors."""
        async with edits:
            candidate = change(await asyncio.to_thread(draft.current, agent))
            try:
                await asyncio.to_thread(_validate, candidate, file_name())
            except ConfigError as e:
                flashes = [("error", issue_text(i)) for i in e.issues]
            else:
                draft.data = candidate
                return RedirectResponse(then, status_code=303)
        return await asyncio.to_thread(page, request, flashes=flashes)

    def page(request: Request, **extra: Any) -> HTMLResponse:
        """The editor's page (validates the draft for its diff: called off the event loop from async routes)."""
        pending = draft.data
        data = pending if pending is not None else draft.current(agent)
        diff = ""
        if pending is not None:
            with contextlib.suppress(ConfigError):  # no longer valid (a password_file gone): the flashes say why
                diff = unified_diff(_shown(agent.full_config()), _shown(_validate(pending, file_name())), file_name())
        return site.render(
            request,
            "editor.html.j2",
            title="editor",
            devices=data.get("devices", []),
            has_draft=pending is not None,
            drivers=DRIVER_NAMES,
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
        driver = str(dev.get("driver")) if dev.get("driver") in DEVICE_MODELS else "modbus_tcp"
        return site.render(
            request,
            "device_form.html.j2",
            title=original or "new",
            status=status,
            original=original,
            dev=dev,
            driver=driver,
            drivers=DRIVER_NAMES,
            address_key=address_key(driver),
            # unset: the driver's own default (a meter is not production equipment)
            production=dev.get("production", DEVICE_MODELS[driver].model_fields["production"].default),
            connection=flow_text(masked(dev.get("connection"))),  # a secret is never drawn
            oee=flow_text(dev.get("oee")),
            rows=tag_rows,
            errors=errors or {},
            other=other or [],
        )

    @router.get("/devices/{dev_id}", response_class=HTMLResponse)
    def edit_device(request: Request, dev_id: str, _user: Engineer, driver: str = "modbus_tcp") -> HTMLResponse:
        if dev_id == "_new":
            driver = driver if driver in DEVICE_MODELS else "modbus_tcp"
            return device_page(request, {"driver": driver, "poll_interval": "1s"}, original="")
        dev = next((d for d in draft.current(agent).get("devices", []) if d["id"] == dev_id), None)
        if dev is None:
            raise HTTPException(404, detail=f"no device {dev_id!r} in the config")
        return device_page(request, dev, original=dev_id)

    @router.post("/devices/{dev_id}", response_class=HTMLResponse)
    async def save_device(request: Request, dev_id: str, _user: Engineer) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}  # read by FormFirst
        try:
            dev, kept = device_from_form(form)
        except FormError as e:
            return device_page(
                request, {"id": form.get("id", "")}, original=dev_id, errors={e.field: [str(e)]}, status=422
            )
        async with edits:
            data = await asyncio.to_thread(draft.current, agent)
            devices = list(data.get("devices", []))
            index = next((i for i, d in enumerate(devices) if d["id"] == dev_id), len(devices))
            try:  # a secret sent back masked is the stored one
                stored = devices[index].get("connection") if index < len(devices) else None
                dev["connection"] = restore_secrets(dev["connection"], stored)
            except FormError as e:
                rows = _rows_from_form(form)
                return device_page(request, dev, original=dev_id, errors={e.field: [str(e)]}, status=422, rows=rows)
            if index == len(devices):
                devices.append(dev)
            else:
                devices[index] = dev
            candidate = {**data, "devices": devices}
            try:
                await asyncio.to_thread(_validate, candidate, file_name())
            except ConfigError as e:
                errors, other = field_errors(e.issues, index, kept)
                rows = _rows_from_form(form)
                return device_page(request, dev, original=dev_id, errors=errors, other=other, status=422, rows=rows)
            draft.data = candidate
        return RedirectResponse("/editor#draft", status_code=303)

    @router.post("/devices/{dev_id}/remove")
    async def remove_device(request: Request, dev_id: str, _user: Engineer) -> Response:
        def without(data: dict[str, Any]) -> dict[str, Any]:
            return {**data, "devices": [d for d in data.get("devices", []) if d["id"] != dev_id]}

        return await keep(request, without, "/editor#draft")

    @router.post("/discard")
    async def discard(_user: Engineer) -> Response:
        async with edits:
            draft.data = None
        return RedirectResponse("/editor", status_code=303)

    def write_unless_changed(path: Path, text: str) -> tuple[bool, Path | None]:
        """Write `text` (with a backup) unless the file changed since the agent loaded it or this console
        last wrote it: (written, the backup)."""
        expected = written_sha[0] if written_sha[0] is not None else agent.config_sha256
        if file_sha256(path) != expected:
            return False, None
        backup = write_config(path, text)
        written_sha[0] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return True, backup

    @router.post("/apply", response_class=HTMLResponse)
    async def apply(request: Request, _user: Engineer) -> HTMLResponse:
        path = agent.config_path
        if path is None:
            raise HTTPException(409, detail="this gateway's config was not loaded from a file: nothing to write")
        lang_en = site.lang(request) == "en"
        async with edits:  # one Apply at a time; validating and the fsyncs off the event loop, where scans run
            data = draft.data
            if data is None:
                return await asyncio.to_thread(page, request, flashes=[("ok", _fmt(lang_en, "ui.no_draft"))])
            try:  # valid when kept, but what it names may have changed since (a password_file gone)
                new = await asyncio.to_thread(_validate, data, path.name)
            except ConfigError as e:
                flashes = [("error", issue_text(i)) for i in e.issues]
                return await asyncio.to_thread(page, request, flashes=flashes, status=422)
            written, backup = await asyncio.to_thread(write_unless_changed, path, config_text(new))
            if written:
                plan = await agent.reload(new)
                draft.data = None
        if not written:
            refused = _say(
                lang_en,
                f"{path.name} 在网关加载之后已在磁盘上被修改（手工编辑或 edgegw tags import -c），未写入，草稿保留。"
                "请先重新加载：重启网关（edgegw run）使其加载该文件，再在控制台中重新编辑。",
                f"{path.name} changed on disk since the agent loaded it (a hand edit or edgegw tags import -c): "
                "nothing written, the draft is kept. Reload it first: restart the agent (edgegw run) so it loads "
                "the file, then edit again in the console.",
            )
            return await asyncio.to_thread(page, request, flashes=[("error", refused)], status=409)
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
        return await asyncio.to_thread(page, request, flashes=msgs)

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
            return await asyncio.to_thread(page, request, flashes=[("error", line) for line in e.issues])
        new_tags = [t.model_dump(mode="json", exclude_defaults=True) for t in tags]

        def with_tags(current: dict[str, Any]) -> dict[str, Any]:
            devices = list(current.get("devices", []))
            index = next((i for i, d in enumerate(devices) if d["id"] == dev_id), None)
            if index is None:
                raise HTTPException(404, detail=f"no device {dev_id!r} in the config")
            devices[index] = {**devices[index], "tags": new_tags}
            return {**current, "devices": devices}

        return await keep(request, with_tags, "/editor#draft")

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
        nodes = [str(v) for v in form.getlist("node")][:MAX_TAG_ROWS]
        if not nodes or not dev_id:
            raise HTTPException(422, detail="tick at least one node and name the device")
        from drivers.opcua.browse import to_tags

        found = await asyncio.wait_for(_browse(endpoint, agent.config.gateway.data_dir), BROWSE_TIMEOUT)
        ticked = [b for b in found if b.node in set(nodes)]
        tags = to_tags(ticked)
        for t in tags:
            t.pop("description", None)

        def with_ticked(current: dict[str, Any]) -> dict[str, Any]:
            devices = list(current.get("devices", []))
            existing = next((d for d in devices if d["id"] == dev_id), None)
            if existing is None:
                new = {"id": dev_id, "name": dev_id, "driver": "opcua", "connection": {"endpoint": endpoint}}
                devices.append({**new, "tags": tags})
            else:
                names = {t["name"] for t in existing.get("tags", [])}
                kept = [*existing.get("tags", []), *(t for t in tags if t["name"] not in names)]
                devices = [{**existing, "tags": kept} if d["id"] == dev_id else d for d in devices]
            return {**current, "devices": devices}

        return await keep(request, with_ticked, f"/editor/devices/{dev_id}")

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
    rows = form_rows(form)
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
    except ValidationError as e:  # a bad address or type: the field and the model's message
        return _test_read_errors(e), False
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
    # the quality as the gateway would publish it (not a finite number: bad, gateway.normalize)
    sample = to_sample(r, TagSpec(name="value", type=type_))
    return f"{r.value!r} ({sample.q})", sample.q == "good"


def _test_read_errors(e: ValidationError) -> str:
    """The test read's mistakes as `field: message` (the form's fields: host, port, unit_id, address, type)."""
    out = []
    for err in e.errors():
        loc = list(error_loc(err))
        for head in (["devices", 0, "tags", 0], ["devices", 0, "connection"], ["devices", 0]):
            if loc[: len(head)] == head:
                loc = loc[len(head) :]
                break
        msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        field = ".".join(str(p) for p in loc)
        out.append(f"{field}: {msg}" if field else msg)
    return "; ".join(out)


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
