"""The evidence pack: `evidence.json`, the CSVs of every figure and of what the figures are computed from,
`settings.json`, the equipment sheet as imported, the bilingual HTML report, the audit of the period,
`manifest.json` with the SHA-256 of every file, and `signature.json`, the platform's Ed25519 signature of
the manifest (`signing.py`).

What a pack proves (README "Trust model"): `edgegw evidence verify DIR --public-key FILE` that every file is
the one the platform signed (nothing edited, added or removed); `edgegw evidence recompute DIR` that every
figure follows from the pack's own input files by the same maths (`recompute.py`). Without a trusted key the
manifest's SHA-256, noted when the pack was received, is the only anchor (`verify --expect`); with neither,
the files only match a manifest anyone could have rewritten, and verify says integrity is unproven.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_bridge.cloud.evidence.build import Computed, EvidenceInputs, compute_evidence
from cloud_bridge.cloud.evidence.models import (
    ActivityRow,
    Area,
    AuditRecord,
    ConfigHashRow,
    CountRecord,
    Device,
    DeviceMetaRow,
    EventRow,
    GatewayInfo,
    IntervalRow,
    OeeRow,
    OeeSettingsRow,
    StateRow,
    SummaryRow,
    TagRow,
)
from cloud_bridge.cloud.evidence.signing import SIGNATURE, check_signature, fingerprint, signature_document
from cloud_bridge.cloud.evidence.tables import csv_table, interval_rows, oee_rows, state_rows, summary_rows
from cloud_bridge.cloud.ledger.equipment import equipment_csv
from cloud_bridge.metrics.period import iso_local

FORMATS = ("json", "csv", "html")
MANIFEST = "manifest.json"
SETTINGS = "settings.json"
AUDIT = "audit.json"
MANIFEST_SCHEMA = "edgegw-evidence-manifest/1"
NOT_LISTED = (MANIFEST, SIGNATURE)  # the manifest cannot list itself, nor the signature of itself
# What a reader takes from a pack before refusing it: a pack holds a few dozen files and a manifest of a few
# kilobytes per hundred devices; anything far larger is not a pack (and would pin the verifier).
MAX_MANIFEST_FILES = 1000  # entries of manifest.json's "files"
MAX_MANIFEST_BYTES = 32 << 20  # manifest.json
MAX_SIGNATURE_BYTES = 64 << 10  # signature.json
_CHUNK = 1 << 20


class ExportError(Exception):
    pass


def parse_formats(text: str) -> list[str]:
    fmts = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise ExportError(f"--format: {', '.join(bad) or 'nothing'} — use one or more of {','.join(FORMATS)}")
    return list(dict.fromkeys(fmts))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode()


# ---------------------------------------------------------------- the files

# what each CSV of a device row leaves out: lists that have CSVs of their own, and the OEE's detail (oee.csv)
DEVICE_CSV_EXCLUDE = ("online_intervals", "tags", "oee.time_s", "oee.losses_s", "oee.counts", "oee.shifts")

# the tables the figures are computed from, each with its model: written exactly, read back by recompute
INPUT_TABLES: dict[str, type[Any]] = {
    "device_meta.csv": DeviceMetaRow,
    "tags.csv": TagRow,
    "oee_settings.csv": OeeSettingsRow,
    "events.csv": EventRow,
    "counts.csv": CountRecord,
    "activity_hourly.csv": ActivityRow,
    "gateways.csv": GatewayInfo,
    "config_hashes.csv": ConfigHashRow,
}


def input_files(inputs: EvidenceInputs, computed: Computed) -> dict[str, bytes]:
    """`settings.json`, the input CSVs (under csv/) and the equipment sheet as imported."""
    tz = inputs.period.timezone
    tables: dict[str, Sequence[Any]] = {
        "device_meta.csv": inputs.devices,
        "tags.csv": inputs.tags,
        "oee_settings.csv": inputs.oee_settings,
        "events.csv": inputs.events,
        "counts.csv": inputs.counts,
        "activity_hourly.csv": inputs.activity,
        "gateways.csv": computed.evidence.gateways,
        "config_hashes.csv": inputs.config_hashes,
    }
    files = {f"csv/{name}": csv_table(INPUT_TABLES[name], rows, tz, precise=True) for name, rows in tables.items()}
    files["csv/equipment_ledger.csv"] = equipment_csv(inputs.equipment).encode("utf-8-sig")
    files[SETTINGS] = json_bytes(inputs.settings.jsonable())
    if inputs.settings.equipment_file is not None and inputs.equipment_file is not None:
        files[inputs.settings.equipment_file] = inputs.equipment_file
    return files


def figure_files(
    computed: Computed,
    formats: Sequence[str],
    *,
    audit: AuditRecord | None = None,
    signer: str | None = None,
) -> dict[str, bytes]:
    """The figures: `evidence.json`, the CSVs of the figures, the report."""
    ev = computed.evidence
    tz = ev.period.timezone
    files: dict[str, bytes] = {}
    if "json" in formats:
        files["evidence.json"] = json_bytes(ev.jsonable())
    if "csv" in formats:
        files.update(
            {
                "csv/summary.csv": csv_table(SummaryRow, summary_rows(ev), tz),
                "csv/devices.csv": csv_table(Device, ev.devices, tz, exclude=DEVICE_CSV_EXCLUDE),
                "csv/online_intervals.csv": csv_table(IntervalRow, interval_rows(ev), tz),
                "csv/oee.csv": csv_table(OeeRow, oee_rows(ev), tz),
                "csv/areas.csv": csv_table(Area, ev.summary.areas, tz),
                "csv/state_timeline.csv": csv_table(StateRow, state_rows(computed.timelines.values()), tz),
            }
        )
    if "html" in formats:
        from cloud_bridge.cloud.evidence.report import render_report

        files["report.html"] = render_report(ev, audit=audit, signer=signer).encode()
    return files


# ---------------------------------------------------------------- the pack


@dataclass
class Pack:
    directory: Path
    computed: Computed
    files: list[dict[str, Any]] = field(default_factory=list)
    manifest_sha256: str = ""
    signer: str | None = None  # the fingerprint of the key that signed it


def export_pack(
    inputs: EvidenceInputs,
    out_dir: str | Path,
    formats: Sequence[str] = FORMATS,
    *,
    signing_key: Ed25519PrivateKey | None = None,
    audit: AuditRecord | None = None,
    ledger_url: str = "",
) -> Pack:
    """Compute the evidence from `inputs` and write the pack into `out_dir` (created; it must be empty). The
    inputs go in whenever the CSVs do (`csv` in `formats`): a pack without them cannot be recomputed."""
    out = Path(out_dir)
    if out.is_symlink() or (out.exists() and any(out.iterdir())):
        raise ExportError(f"{out}: the directory is not empty (an evidence pack holds exactly its own files)")
    out.mkdir(parents=True, exist_ok=True)
    computed = compute_evidence(inputs)
    signer = fingerprint(signing_key.public_key()) if signing_key is not None else None
    files = figure_files(computed, formats, audit=audit, signer=signer)
    if "csv" in formats:
        files.update(input_files(inputs, computed))
    if audit is not None:
        files[AUDIT] = json_bytes(audit.jsonable())
    pack = Pack(out, computed, signer=signer)
    for name in sorted(files):
        data = files[name]
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        pack.files.append({"path": name, "sha256": sha256_bytes(data), "bytes": len(data)})
    data = json_bytes(manifest(inputs, computed, pack.files, audit=audit, signer=signer, ledger_url=ledger_url))
    (out / MANIFEST).write_bytes(data)
    pack.manifest_sha256 = sha256_bytes(data)
    if signing_key is not None:
        (out / SIGNATURE).write_bytes(signature_document(signing_key, data))
    return pack


def manifest(
    inputs: EvidenceInputs,
    computed: Computed,
    files: list[dict[str, Any]],
    *,
    audit: AuditRecord | None,
    signer: str | None,
    ledger_url: str,
) -> dict[str, Any]:
    ev = computed.evidence.jsonable()
    st = inputs.settings
    return {
        "schema": MANIFEST_SCHEMA,
        "generator": ev["generator"],
        "generated_at": iso_local(ev["generated_at_ms"], inputs.period.timezone),
        "generated_at_ms": ev["generated_at_ms"],
        "enterprise": ev["enterprise"],
        "period": ev["period"],
        "ledger": {
            "url": ledger_url,
            "equipment_import": ev["summary"]["ledger_import"],
            "equipment_file": st.equipment_file,
        },
        "gateways": [{"gateway": g["gateway"], "config_hashes": g["config_hashes"]} for g in ev["gateways"]],
        "config_hashes": [
            {"gateway": h["gw"], "device": h["dev"], "announced_ms": h["ts"], "config_hash": h["config_hash"]}
            for h in ev["config_hashes"]
        ],
        "audit": None if audit is None else {"status": audit.status, "summary": audit.summary, "file": AUDIT},
        "signer": None if signer is None else {"algorithm": "Ed25519", "public_key_fingerprint": signer},
        "files": files,
        "check": "edgegw evidence verify DIR --public-key <the platform's public key> (or --expect <SHA-256 of "
        "manifest.json, noted when the pack was received)); edgegw evidence recompute DIR",
    }


# ---------------------------------------------------------------- reading a pack safely

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class PackReadError(Exception):
    """A file of a pack that may not be read: a symbolic link, not a regular file, outside the pack."""


def pack_entries(root: Path) -> tuple[dict[str, int], list[str]]:
    """Every regular file under `root` (relative POSIX path → size) and the problems: symbolic links and
    anything that is neither a file nor a directory. Links are never followed."""
    files, problems, _ = _pack_entries(root)
    return files, problems


def _pack_entries(root: Path) -> tuple[dict[str, int], list[str], set[str]]:
    """`pack_entries`, and the paths its problems name."""
    files: dict[str, int] = {}
    problems: list[str] = []
    refused: set[str] = set()
    for base, dirs, names in os.walk(root, followlinks=False):
        for name in sorted([*dirs, *names]):
            path = Path(base) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                problems.append(f"{rel}: a symbolic link (refused: a pack holds its own files)")
                refused.add(rel)
            elif stat.S_ISREG(st.st_mode):
                files[rel] = st.st_size
            elif not stat.S_ISDIR(st.st_mode):
                problems.append(f"{rel}: not a regular file (refused)")
                refused.add(rel)
        dirs[:] = [d for d in dirs if not (Path(base) / d).is_symlink()]
    return files, problems, refused


def safe_name(name: object) -> str | None:
    """The relative POSIX path of a file inside a pack, or None when it could point anywhere else."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name or len(name) > 512:
        return None
    pp = PurePosixPath(name)
    if pp.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")) or ":" in pp.parts[0]:
        return None
    return name


def _open_in_pack(root: Path, name: str) -> Any:
    """A regular file of the pack opened for reading (binary), never through a symbolic link, never outside
    `root`."""
    rel = safe_name(name)
    if rel is None:
        raise PackReadError(f"{name!r}: not a path inside the pack")
    path = root / rel
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        raise PackReadError(f"{rel}: leaves the pack")
    for parent in [*reversed(PurePosixPath(rel).parents)][1:]:
        if (root / parent).is_symlink():
            raise PackReadError(f"{rel}: {parent} is a symbolic link")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise PackReadError(f"{rel}: a symbolic link") from None
        raise
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        raise PackReadError(f"{rel}: not a regular file")
    return f


def read_in_pack(root: Path, name: str, limit: int | None = None) -> bytes:
    """A regular file of the pack, never through a symbolic link, never outside `root`; PackReadError,
    before anything is read, when it holds more than `limit` bytes."""
    with _open_in_pack(root, name) as f:
        if limit is not None:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise PackReadError(f"{name}: {size} bytes, more than the {limit} it may hold here (refused unread)")
            parts: list[bytes] = []
            got = 0
            while chunk := f.read(min(_CHUNK, limit + 1 - got)):  # not read(limit + 1): that allocates it all
                parts.append(chunk)
                got += len(chunk)
                if got > limit:  # grew while read
                    raise PackReadError(f"{name}: more than the {limit} bytes it may hold here (refused)")
            return b"".join(parts)
        whole: bytes = f.read()
        return whole


def sha256_in_pack(root: Path, name: str) -> str:
    """The SHA-256 of a regular file of the pack (as `read_in_pack` opens it), read in chunks."""
    h = hashlib.sha256()
    with _open_in_pack(root, name) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def load_json(data: bytes) -> Any:
    """JSON, or None when it is not JSON: not UTF-8, malformed, or nested too deep to parse."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # ValueError: not JSON or not UTF-8
        return None


def _short(v: Any, most: int = 200) -> str:
    """A value of a manifest in a problem: its repr, cut short, whatever its depth."""
    try:
        text = repr(v)
    except RecursionError:
        return f"<a {type(v).__name__} nested too deep>"
    return text if len(text) <= most else f"{text[:most]}… ({len(text)} characters)"


# ---------------------------------------------------------------- verification


@dataclass
class Verification:
    ok: bool  # every file matches the manifest, nothing added, the signature (if checked) valid
    problems: list[str]
    manifest_sha256: str | None
    files: int
    proven: bool = False  # ok, and anchored: signed by the trusted key, or the manifest hash as expected
    signer: str | None = None  # the fingerprint the signature names
    notes: list[str] = field(default_factory=list)


def verify_pack(
    directory: str | Path, expect: str | None = None, public_key: Ed25519PublicKey | None = None
) -> Verification:
    """Check the signature (with the trusted `public_key`), the manifest's hash (`expect`), every file
    against the manifest, and that no file was added or removed; refuse symbolic links, special files and
    paths that leave the pack."""
    root = Path(directory)
    if not root.is_dir():
        return Verification(False, [f"{root}: not a directory"], None, 0)
    present, problems, refused = _pack_entries(root)
    try:
        raw = read_in_pack(root, MANIFEST, MAX_MANIFEST_BYTES)
    except (OSError, PackReadError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        return Verification(False, [*problems, f"{MANIFEST}: cannot read the manifest ({why})"], None, 0)
    msha = sha256_bytes(raw)
    anchored = False
    signer = None
    if expect is not None:
        if expect.strip().lower() != msha:
            problems.append(
                f"{MANIFEST}: SHA-256 is {msha}, not the expected {expect.strip().lower()} (manifest edited?)"
            )
        else:
            anchored = True
    if public_key is not None:
        if SIGNATURE not in present:
            problems.append(f"{SIGNATURE}: missing — the pack is unsigned")
        else:
            try:
                check = check_signature(public_key, raw, read_in_pack(root, SIGNATURE, MAX_SIGNATURE_BYTES))
            except (OSError, PackReadError) as e:
                problems.append(f"{SIGNATURE}: cannot read ({e})")
            else:
                signer = check.fingerprint or None
                if check.valid:
                    anchored = True
                else:
                    problems.append(check.problem)
    doc = load_json(raw)
    listed = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("schema") != MANIFEST_SCHEMA or not isinstance(listed, list):
        return Verification(False, [*problems, f"{MANIFEST}: not an edgegw evidence manifest"], msha, 0)
    if len(listed) > MAX_MANIFEST_FILES:
        why = f"lists {len(listed)} files, more than the {MAX_MANIFEST_FILES} a pack may hold: not an evidence pack"
        return Verification(False, [*problems, f"{MANIFEST}: {why} (refused)"], msha, 0)
    names: set[str] = set()
    for entry in listed:
        raw_name = entry.get("path") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        name = safe_name(raw_name)
        if name is None or name in NOT_LISTED:
            problems.append(
                f"{MANIFEST}: bad file entry {_short(entry)} (a path that leaves the pack, or a reserved name)"
            )
            continue
        if name in names:
            problems.append(f"{MANIFEST}: {name} is listed twice")
            continue
        if not isinstance(digest, str) or not _HEX64.match(digest):
            problems.append(f"{MANIFEST}: {name}: bad SHA-256 {_short(digest)}")
            continue
        names.add(name)
        if name not in present:
            if name not in refused:  # a link or special file in its place is already a problem
                problems.append(f"{name}: missing")
            continue
        try:
            actual = sha256_in_pack(root, name)
        except (OSError, PackReadError) as e:
            problems.append(f"{name}: cannot read ({e})")
            continue
        if actual != digest:
            problems.append(f"{name}: SHA-256 {actual} does not match the manifest's {digest} (edited)")
    for rel in sorted(present):
        if rel not in NOT_LISTED and rel not in names:
            problems.append(f"{rel}: not listed in the manifest (added)")
    notes = []
    if SIGNATURE in present and public_key is None:
        notes.append(f"{SIGNATURE} present, not checked: give --public-key (the platform's public key)")
    ok = not problems
    return Verification(ok, problems, msha, len(names), ok and anchored, signer, notes)
