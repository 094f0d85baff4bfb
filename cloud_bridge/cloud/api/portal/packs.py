"""The portal's evidence packs and equipment-ledger import:

- `GET /enterprises/{ent}/pack.zip?start=&end=`: the evidence pack of the period (`export_pack`, as
  `edgegw evidence export` writes it) as a zip download, for a user who may read the enterprise; the
  manifest's SHA-256 is in the file name and the `X-Manifest-SHA256` header, and the export is audit-logged.
- `GET /verify`, `POST /verify`: a pack uploaded as a zip (bounded in size, files and unpacked bytes;
  entries that climb out of the pack, absolute paths, symlinks and encrypted entries are refused before
  anything is written) is unpacked into a temporary directory and checked with `verify_pack`; the page
  shows the result.
- `POST /enterprises/{ent}/equipment`: the equipment-ledger import form (an operator of the enterprise,
  or an admin), through the same `import_sheet` as the API's PUT.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from cloud_bridge.cloud.api.auth import Caller, Users
from cloud_bridge.cloud.api.portal.pages import enterprise_evidence
from cloud_bridge.cloud.api.routes import MAX_UPLOAD, Config, Store, import_sheet, may_import
from cloud_bridge.cloud.evidence.export import MANIFEST, ExportError, Verification, verify_pack
from cloud_bridge.cloud.evidence.packing import AuditRefused, make_pack
from cloud_bridge.cloud.evidence.signing import SigningError, load_private_key
from cloud_bridge.cloud.ledger.equipment import EquipmentError
from cloud_bridge.metrics.period import iso_local
from cloud_bridge.webapp import Site

MAX_PACK = MAX_UPLOAD  # bytes of an uploaded zip
MAX_FILES = 1000  # entries of an uploaded zip (a pack has about a dozen)
MAX_UNPACKED = 200 << 20  # bytes once unpacked: a zip bomb stops here
_CHUNK = 1 << 16


def platform_public_key(config: Any) -> Any:
    """The public half of the key this platform signs packs with (None: packs are not signed here)."""
    if not config.evidence.signing_key:
        return None
    try:
        return load_private_key(config.evidence.signing_key).public_key()
    except SigningError:
        return None


class PackRefused(ValueError):
    """The upload is not a zip we unpack: the reason is shown to the user."""


def _safe_name(name: str) -> PurePosixPath:
    """The entry's path inside the pack, or PackRefused when it could land outside it."""
    if "\\" in name or "\x00" in name:
        raise PackRefused(f"{name!r}: a backslash or NUL in an entry name")
    path = PurePosixPath(name)
    if not path.parts or path.parts == (".",):
        raise PackRefused(f"{name!r}: an entry without a name")
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise PackRefused(f"{name!r}: the entry would be written outside the pack (path traversal)")
    return path


def unpack_zip(data: bytes, dest: Path) -> Path:
    """Unpack a zip into `dest` and return the pack's directory (where manifest.json is: the top, or the one
    folder the zip holds). Every entry is checked before anything is written."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as e:
        raise PackRefused(f"not a zip file ({e})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_FILES:
            raise PackRefused(f"{len(infos)} entries: more than {MAX_FILES}")
        declared = 0
        for info in infos:
            _safe_name(info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind == stat.S_IFLNK:
                raise PackRefused(f"{info.filename!r}: a symbolic link")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise PackRefused(f"{info.filename!r}: not a regular file")
            if info.flag_bits & 0x1:
                raise PackRefused(f"{info.filename!r}: encrypted")
            declared += info.file_size
        if declared > MAX_UNPACKED:
            raise PackRefused(f"{declared} bytes once unpacked: more than {MAX_UNPACKED >> 20} MB")
        written = 0
        for info in infos:
            target = dest.joinpath(*_safe_name(info.filename).parts)
            try:
                (target if info.is_dir() else target.parent).mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise PackRefused(f"{info.filename!r}: a file and a folder of the same name") from None
            if info.is_dir():
                continue
            try:
                with archive.open(info) as src, target.open("xb") as out:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > MAX_UNPACKED:  # the sizes in the zip lied
                            raise PackRefused(f"more than {MAX_UNPACKED >> 20} MB once unpacked")
                        out.write(chunk)
            except PackRefused:
                raise
            except FileExistsError:
                raise PackRefused(f"{info.filename!r}: appears twice") from None
            except IsADirectoryError:
                raise PackRefused(f"{info.filename!r}: a file and a folder of the same name") from None
            # ValueError: zipfile seeking before the data (a central directory that lies about offsets)
            except (zipfile.BadZipFile, EOFError, NotImplementedError, OSError, ValueError) as e:
                raise PackRefused(f"{info.filename!r}: cannot be unpacked ({e})") from None
    if (dest / MANIFEST).is_file():
        return dest
    tops = list(dest.iterdir())
    if len(tops) == 1 and tops[0].is_dir() and (tops[0] / MANIFEST).is_file():
        return tops[0]
    raise PackRefused(f"no {MANIFEST} at the top of the zip (nor in its one folder): not an evidence pack")


def check_upload(data: bytes, expect: str | None, config: Any) -> tuple[Verification | None, str]:
    """An uploaded zip unpacked into a temporary directory and verified: (the verification, "") or (None, why
    it was refused). Blocking: the portal runs it in a worker thread."""
    with tempfile.TemporaryDirectory(prefix="edgegw-verify-") as tmp:
        try:
            root = unpack_zip(data, Path(tmp))
        except PackRefused as e:
            return None, str(e)
        return verify_pack(root, expect, platform_public_key(config)), ""


def zip_dir(root: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(root).as_posix())
    return buf.getvalue()


def build_packs(site: Site) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/enterprises/{ent}/pack.zip")
    def export(
        request: Request,
        ent: str,
        store: Store,
        config: Config,
        user: Caller,
        users: Users,
        start: str = "",
        end: str = "",
    ) -> Response:
        period, _ev = enterprise_evidence(request, store, config, user, ent, start, end)
        work = Path(tempfile.mkdtemp(prefix="edgegw-pack-"))
        try:
            try:
                pack, _audit = make_pack(store, config, ent, period, work / "pack", now_ms=request.app.state.clock())
            except AuditRefused as e:
                raise HTTPException(409, detail=f"the period's audit failed, no pack: {e}") from None
            except (ExportError, SigningError) as e:
                raise HTTPException(
                    503, detail=f"the pack could not be made (the platform's configuration): {e}"
                ) from None
            data = zip_dir(pack.directory)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        sha = pack.manifest_sha256
        users.audit(
            user.name, "export", ent, f"evidence pack {period.start}..{period.end} (portal), manifest sha256 {sha}"
        )
        first, last = iso_local(period.start, period.timezone)[:10], iso_local(period.end - 1, period.timezone)[:10]
        name = f"evidence-{ent}-{first}-{last}-{sha[:12]}.zip"
        return Response(
            data,
            media_type="application/zip",
            headers={
                "content-disposition": f"attachment; filename*=UTF-8''{quote(name)}",
                "x-manifest-sha256": sha,
            },
        )

    @router.get("/verify", response_class=HTMLResponse)
    def verify_page(request: Request, _user: Caller) -> HTMLResponse:
        return site.render(request, "verify.html.j2", title="verify", result=None, refused="", expect="")

    @router.post("/verify", response_class=HTMLResponse)
    async def verify(
        request: Request,
        user: Caller,
        users: Users,
        config: Config,
        pack: Annotated[UploadFile, File()],
        expect: Annotated[str, Form(max_length=200)] = "",
    ) -> HTMLResponse:
        data = await pack.read(MAX_PACK + 1)
        if len(data) > MAX_PACK:
            raise HTTPException(413, detail=f"the pack is larger than {MAX_PACK >> 20} MB")
        # unpacking, hashing and removing the files is blocking work: off the event loop, which serves everyone
        result, refused = await asyncio.to_thread(check_upload, data, expect.strip() or None, config)
        verdict = "refused" if result is None else "proven" if result.proven else "intact" if result.ok else "broken"
        users.audit(
            user.name,
            "verify",
            "",
            f"evidence pack {pack.filename!r} (portal): {verdict}"
            + (f", manifest sha256 {result.manifest_sha256}" if result is not None else f": {refused}"),
        )
        status = 422 if result is None else 200
        return site.render(
            request, "verify.html.j2", title="verify", status=status, result=result, refused=refused, expect=expect
        )

    @router.post("/enterprises/{ent}/equipment", response_class=HTMLResponse)
    async def import_form(
        request: Request,
        ent: str,
        store: Store,
        config: Config,
        user: Caller,
        users: Users,
        sheet: Annotated[UploadFile, File()],
    ) -> HTMLResponse:
        may_import(user, ent)
        data = await sheet.read(MAX_UPLOAD + 1)
        filename = sheet.filename or "equipment.csv"
        try:
            done = await asyncio.to_thread(import_sheet, store, users, user, ent, data, filename)
        except EquipmentError as e:
            flashes = [("error", site.text(request, "ui.ledger_errors")), *(("error", i) for i in e.issues)]
            return site.render(request, "imported.html.j2", title=ent, status=422, ent=ent, items=[], flashes=flashes)
        text = site.text(request, "ui.ledger_imported", rows=done.rows, sha=done.sha256)
        items = store.equipment(ent)
        return site.render(request, "imported.html.j2", title=ent, ent=ent, items=items, flashes=[("ok", text)])

    return router
