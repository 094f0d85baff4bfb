"""Hostile evidence packs against `verify`, `recompute` and the portal's /verify: a manifest listing thousands of
files is refused (and the problems of one that lists many are one per file), JSON nested too deep is a problem
with its reason (never a RecursionError), a huge file is hashed in chunks by verify and refused unread by
recompute, and a pack that names another generator cannot pass recompute with an edited report."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cloud_bridge.cloud.api import portal
from cloud_bridge.cloud.api.app import create_cloud_app
from cloud_bridge.cloud.evidence import recompute as recompute_mod
from cloud_bridge.cloud.evidence.export import MANIFEST_SCHEMA, MAX_MANIFEST_FILES, Verification, verify_pack
from cloud_bridge.cloud.evidence.recompute import RecomputeError, recompute_pack
from cloud_bridge.cloud.ledger.store import EvidenceStore
from tests.integration.test_cloud_api import add_user, config
from tests.unit.test_evidence_build import CONFIG, NOW, fill_day, period, store  # noqa: F401
from tests.unit.test_evidence_pack import KEY, _rehash, exported

DEEP = b"[" * 5000 + b"]" * 5000  # well past json's recursion limit, small enough for every size bound


@pytest.fixture
def pack_dir(store: EvidenceStore, tmp_path: Path) -> Path:  # noqa: F811
    return exported(store, tmp_path / "pack", signing_key=KEY).directory


def many_entries(n: int) -> bytes:
    files = [{"path": f"f{i}", "sha256": "a" * 64, "bytes": 1} for i in range(n)]
    return json.dumps({"schema": MANIFEST_SCHEMA, "files": files}).encode()


# ---------------------------------------------------------------- a manifest of many entries


def test_a_manifest_listing_more_files_than_a_pack_holds_is_refused(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_bytes(many_entries(20_000))
    v = verify_pack(tmp_path)
    assert not v.ok and not v.proven
    assert v.problems == [
        f"manifest.json: lists 20000 files, more than the {MAX_MANIFEST_FILES} a pack may hold: not an evidence "
        "pack (refused)"
    ]


def test_each_missing_file_is_one_problem(tmp_path: Path) -> None:
    """At the bound, every listed file that is not there is one problem (no more: the problems are not scanned
    again per file), and a link in a listed file's place is the link's problem, not also 'missing'."""
    n = MAX_MANIFEST_FILES
    (tmp_path / "manifest.json").write_bytes(many_entries(n))
    os.symlink("/etc/passwd", tmp_path / "f0")
    v = verify_pack(tmp_path)
    assert not v.ok and v.files == n
    assert v.problems[0] == "f0: a symbolic link (refused: a pack holds its own files)"
    assert v.problems[1:] == [f"f{i}: missing" for i in range(1, n)]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path}/ledger.db"
    fill_day(url)
    with TestClient(create_cloud_app(config(url))) as c:
        c.headers["Authorization"] = f"Bearer {add_user(url, 'eva', 'evaluator', [])}"
        yield c


def zipped(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_the_portal_answers_a_manifest_of_many_entries_and_works_off_the_event_loop(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's upload (a small zip whose manifest lists 20,000 files) is answered with the refusal; the
    unpacking and the verification run in a worker thread, not on the event loop that serves everyone."""
    r = client.post("/verify", files={"pack": ("p.zip", zipped({"manifest.json": many_entries(20_000)}))})
    assert r.status_code == 200 and "lists 20000 files, more than the 1000" in r.text
    assert r.text.count("missing") == 0

    on_loop: dict[str, bool] = {}

    def running_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    unpack, verify = portal.packs.unpack_zip, portal.packs.verify_pack

    def watched_unpack(*a: Any) -> Path:
        on_loop["unpack"] = running_loop()
        return unpack(*a)

    def watched_verify(*a: Any) -> Verification:
        on_loop["verify"] = running_loop()
        return verify(*a)

    monkeypatch.setattr(portal.packs, "unpack_zip", watched_unpack)
    monkeypatch.setattr(portal.packs, "verify_pack", watched_verify)
    r = client.post("/verify", files={"pack": ("p.zip", zipped({"manifest.json": many_entries(3)}))})
    assert r.status_code == 200 and "f2: missing" in r.text
    assert on_loop == {"unpack": False, "verify": False}


# ---------------------------------------------------------------- JSON nested too deep


def test_deep_json_is_a_problem_with_its_reason_in_verify(pack_dir: Path) -> None:
    (pack_dir / "signature.json").write_bytes(DEEP)
    v = verify_pack(pack_dir, public_key=KEY.public_key())
    assert not v.ok and "signature.json: not an edgegw signature" in v.problems
    (pack_dir / "manifest.json").write_bytes(DEEP)
    v = verify_pack(pack_dir, public_key=KEY.public_key())
    assert not v.ok and v.problems[-1] == "manifest.json: not an edgegw evidence manifest"


def test_a_deep_manifest_entry_is_shown_short(tmp_path: Path) -> None:
    doc = b'{"schema": "%s", "files": [%s]}' % (MANIFEST_SCHEMA.encode(), b"[" * 900 + b"]" * 900)
    (tmp_path / "manifest.json").write_bytes(doc)
    v = verify_pack(tmp_path)
    assert not v.ok and len(v.problems) == 1
    assert v.problems[0].startswith("manifest.json: bad file entry ") and len(v.problems[0]) < 400


@pytest.mark.parametrize(
    ("name", "difference"),
    [("manifest.json", "manifest.json: not JSON"), ("evidence.json", "evidence.json: not JSON")],
)
def test_deep_json_is_a_difference_with_its_reason_in_recompute(pack_dir: Path, name: str, difference: str) -> None:
    (pack_dir / name).write_bytes(DEEP)
    r = recompute_pack(pack_dir)
    assert not r.ok and difference in r.differences


def test_deep_settings_cannot_be_read(pack_dir: Path) -> None:
    (pack_dir / "settings.json").write_bytes(DEEP)
    with pytest.raises(RecomputeError, match=r"settings\.json: .*recursion limit"):
        recompute_pack(pack_dir)


# ---------------------------------------------------------------- a huge file


def test_verify_hashes_a_huge_file_in_chunks(pack_dir: Path) -> None:
    huge = pack_dir / "csv" / "areas.csv"
    start = huge.read_bytes()
    with huge.open("r+b") as f:
        f.truncate(64 << 20)  # sparse: the table, then zeros to 64 MiB
    tracemalloc.start()
    try:
        v = verify_pack(pack_dir, public_key=KEY.public_key())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    h = hashlib.sha256(start)
    for _ in range(((64 << 20) - len(start)) >> 10):
        h.update(b"\0" * 1024)
    h.update(b"\0" * (((64 << 20) - len(start)) & 1023))
    assert not v.ok and f"csv/areas.csv: SHA-256 {h.hexdigest()} does not match" in "\n".join(v.problems)
    assert peak < 16 << 20, peak  # the file was never in memory whole


def test_recompute_refuses_a_file_far_larger_than_the_manifest_records(pack_dir: Path) -> None:
    with (pack_dir / "csv" / "areas.csv").open("r+b") as f:
        f.truncate(64 << 20)
    with pytest.raises(RecomputeError, match=r"csv/areas\.csv: cannot read .*67108864 bytes.*refused unread"):
        recompute_pack(pack_dir)


def test_recompute_refuses_a_file_over_the_bound_when_the_manifest_records_no_size(
    pack_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (pack_dir / "manifest.json").unlink()
    monkeypatch.setattr(recompute_mod, "MAX_FILE_BYTES", 1 << 20)
    with (pack_dir / "csv" / "events.csv").open("r+b") as f:
        f.truncate(2 << 20)
    with pytest.raises(RecomputeError, match=r"csv/events\.csv: cannot read .*2097152 bytes.*refused unread"):
        recompute_pack(pack_dir)


def test_an_edited_file_a_little_larger_still_shows_as_a_difference(pack_dir: Path) -> None:
    summary = pack_dir / "csv" / "summary.csv"
    summary.write_bytes(
        summary.read_bytes().replace(b"networked equipment ratio,0.333333,", b"networked equipment ratio,0.9999999,")
    )
    r = recompute_pack(pack_dir)
    assert "csv/summary.csv:2 (networked_ratio) value: pack '0.9999999', recomputed '0.333333'" in r.differences


# ---------------------------------------------------------------- the report of another generator


def _other_generator(d: Path) -> None:
    for name in ("settings.json", "evidence.json"):
        p = d / name
        p.write_bytes(p.read_bytes().replace(b'"generator": "edgegw ', b'"generator": "edgegw 0.0.9-was-'))
    report = d / "report.html"
    report.write_bytes(report.read_bytes().replace(b"33.3%", b"95.0%"))


def test_a_pack_naming_another_generator_does_not_pass_recompute(pack_dir: Path) -> None:
    assert b"33.3%" in (pack_dir / "report.html").read_bytes()
    _other_generator(pack_dir)
    with pytest.raises(RecomputeError, match=r"report\.html: written by edgegw 0\.0\.9-was-.* cannot be made again"):
        recompute_pack(pack_dir)


def test_another_generator_with_a_figure_changed_lists_both(pack_dir: Path) -> None:
    _other_generator(pack_dir)
    summary = pack_dir / "csv" / "summary.csv"
    summary.write_bytes(
        summary.read_bytes().replace(b"networked equipment ratio,0.333333,", b"networked equipment ratio,0.95,")
    )
    _rehash(pack_dir, "csv/summary.csv")
    r = recompute_pack(pack_dir)
    assert not r.ok
    assert "csv/summary.csv:2 (networked_ratio) value: pack '0.95', recomputed '0.333333'" in r.differences
    assert r.differences[-1].startswith("report.html: written by edgegw 0.0.9-was-")
