"""The HTML report: every name from a ledger, a gateway or a config is escaped (checked on the parsed
document, not by grepping), every branch renders, and the labels live only in the labels table."""

from __future__ import annotations

import ast
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import cloud_bridge
from cloud_bridge.cloud.evidence.build import build_evidence
from cloud_bridge.cloud.evidence.models import Evidence, LedgerImport
from cloud_bridge.cloud.evidence.report import render_report
from cloud_bridge.cloud.ledger.store import EvidenceStore
from cloud_bridge.metrics.labels import label
from tests.unit.test_evidence_build import CONFIG, NOW, period, store  # noqa: F401  (the hand-built day)

HOSTILE = "<script>alert(1)</script>织机"
IMG = '"><img src=x onerror=alert(2)>'
TAGS = {  # what the templates write, and nothing else
    *("html", "head", "meta", "title", "style", "body", "header", "footer", "section", "h1", "h2", "h3", "p"),
    *("b", "br", "span", "i", "div", "ul", "li", "table", "thead", "tbody", "tr", "th", "td"),
    *("svg", "defs", "pattern", "line", "rect", "text"),
}


class Page(HTMLParser):
    """The elements and the text of a page, as a browser would read them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str | None]] = []
        self.texts: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.texts.append(data.strip())


def hostile(ev: Evidence) -> Evidence:
    """The hand-built day with hostile text wherever the ledger, a gateway or a config can put some."""
    d0, *rest = ev.devices
    assert d0.oee is not None
    oee = d0.oee.model_copy(update={"flags": [*d0.oee.flags, "<b>new_flag</b>"]})
    d0 = d0.model_copy(
        update={"id": "<b>bold</b>&amp;", "name": HOSTILE, "type": IMG, "line": "&lt;L1&gt;", "device": IMG, "oee": oee}
    )
    imp = ev.summary.ledger_import
    assert imp is not None
    summary = ev.summary.model_copy(update={"ledger_import": LedgerImport(**{**imp.model_dump(), "source": IMG})})
    gateways = [g.model_copy(update={"version": HOSTILE}) for g in ev.gateways]
    return ev.model_copy(
        update={
            "enterprise": ev.enterprise.model_copy(update={"name": "某纺织 <i>&</i>"}),
            "devices": [d0, *rest],
            "summary": summary,
            "gateways": gateways,
            "notes": [f"note {HOSTILE}"],
        }
    )


def test_hostile_names_are_text(store: EvidenceStore) -> None:  # noqa: F811
    html = render_report(hostile(build_evidence(store, CONFIG, "ent-1", period(), now_ms=NOW)))
    page = Page(html)
    assert page.tags <= TAGS, page.tags - TAGS
    assert not [a for a in page.attrs if a[0].startswith("on") or a[0] in ("src", "href")]
    texts = page.texts
    assert HOSTILE in texts  # the name in the equipment table, as text
    assert f"note {HOSTILE}" in texts and texts.count(HOSTILE) >= 2  # the note; the gateway version
    assert "<b>bold</b>&amp;" in texts  # the id, in the table and on the chart rows (not cut inside an entity)
    assert texts.count("<b>bold</b>&amp;") >= 4
    assert IMG in texts and "&lt;L1&gt;" in texts
    assert "某纺织 <i>&</i> (ent-1)" in texts
    assert any("<b>new_flag</b>" in t for t in texts)  # a flag this version does not know, as itself
    assert html.count("<svg") == 3 and "<script" not in html


def test_every_branch_renders(store: EvidenceStore) -> None:  # noqa: F811
    ev = build_evidence(store, CONFIG, "ent-1", period(), now_ms=NOW)
    empty = ev.model_copy(
        update={
            "devices": [],
            "gateways": [],
            "notes": [],
            "period": ev.period.model_copy(update={"calendar": "24 h a day", "as_of_ms": ev.period.from_ms + 1}),
            "summary": ev.summary.model_copy(update={"ledger_import": None, "areas": []}),
        }
    )
    texts = Page(render_report(empty)).texts
    for key in ("no_equipment", "no_oee", "method.no_shifts", "figures_up_to"):
        for text in label(f"text.{key}"):
            assert any(text in t for t in texts), text


def _cjk(text: str) -> bool:
    return re.search(r"[\u4e00-\u9fff]", text) is not None


def test_labels_live_in_the_labels_table_only() -> None:
    """No zh-CN text in the code and templates that show the evidence: it all comes from labels.py."""
    root = Path(cloud_bridge.__file__).parent
    sources = [
        *(root / "cloud" / "evidence").glob("*.py"),
        *(root / "cloud" / "api").glob("*.py"),
        root / "web.py",
        root.parent / "gateway" / "cli" / "evidence.py",
    ]
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert not _cjk(node.value), f"{path.name}:{node.lineno}: {node.value!r}"
    templates = list((root / "cloud" / "evidence" / "templates").iterdir())
    assert {t.name for t in templates} >= {"base.html.j2", "report.html.j2"}
    for t in templates:
        assert not _cjk(t.read_text(encoding="utf-8")), t.name


def test_the_templates_ship_with_the_package() -> None:
    tomllib = pytest.importorskip("tomllib")
    root = Path(cloud_bridge.__file__).parent.parent
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    for name in ("report.html.j2", "base.html.j2", "charts.html.j2", "print.css"):
        assert any(Path("templates", name).match(g) for g in globs), name
