"""The tag-map editor's forms as config data, and config errors back at the form's fields. Pure.

A device form carries the device's own fields, its connection and OEE settings as YAML flow text
(`{host: 10.0.0.5, port: 502, unit_id: 1}`), and one row of cells per tag (`tags.3.address`); a tag row
whose name is empty is left out. The whole config is then validated by the same loader as
`edgegw config validate`, and each `file:line: path: message` lands at the field its path names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from edge_config.loader import ConfigIssue
from edge_config.yamlfast import BoundedLoader

DEVICE_FIELDS = ("id", "name", "type", "line", "driver", "poll_interval")
TAG_FIELDS = ("name", "address", "node", "type", "scale", "unit", "deadband", "domain", "extra")
NUMERIC = ("scale", "deadband")
MAX_TAG_ROWS = 5000
_TAG_KEY = re.compile(r"^tags\.(\d{1,5})\.([a-z_]+)$")


class FormError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _flow(field: str, text: str) -> Any:
    if not text.strip():
        return None
    try:
        value = yaml.load(text, Loader=BoundedLoader)  # no alias bombs nor cycles
    except yaml.YAMLError as e:
        raise FormError(field, f"YAML: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:
        raise FormError(field, "YAML: nested too deeply") from None
    if not isinstance(value, dict):
        raise FormError(field, "write a mapping, e.g. {host: 127.0.0.1, port: 502}")
    return value


def device_from_form(form: Mapping[str, str]) -> tuple[dict[str, Any], list[int]]:
    """The device's config data from the form's fields, and the form row of each tag kept (raises
    FormError for text that is not YAML)."""
    device: dict[str, Any] = {k: form[k].strip() for k in DEVICE_FIELDS if form.get(k, "").strip()}
    device["production"] = form.get("production") == "on"
    connection = _flow("connection", form.get("connection", ""))
    device["connection"] = connection if connection is not None else {}
    oee = _flow("oee", form.get("oee", ""))
    if oee is not None:
        device["oee"] = oee
    rows: dict[int, dict[str, str]] = {}
    for key, value in form.items():
        m = _TAG_KEY.match(key)
        if m and m.group(2) in TAG_FIELDS and int(m.group(1)) < MAX_TAG_ROWS:
            rows.setdefault(int(m.group(1)), {})[m.group(2)] = value.strip()
    tags = []
    kept: list[int] = []
    for i in sorted(rows):
        cells = rows[i]
        if not cells.get("name"):
            continue
        kept.append(i)
        tag: dict[str, Any] = {k: v for k, v in cells.items() if v and k not in ("extra", *NUMERIC)}
        for k in NUMERIC:
            if cells.get(k):
                try:
                    tag[k] = float(cells[k])
                except ValueError:
                    raise FormError(f"tags.{i}.{k}", f"{cells[k]!r} is not a number") from None
        extra = _flow(f"tags.{i}.extra", cells.get("extra", ""))
        if extra:
            tag.update(extra)
        tags.append(tag)
    device["tags"] = tags
    return device, kept


def tag_cells(tag: Mapping[str, Any]) -> dict[str, str]:
    """A tag's config data as the editor's cells (what has no column of its own goes to `extra`)."""
    cells = {k: "" if tag.get(k) is None else str(tag[k]) for k in TAG_FIELDS if k != "extra"}
    rest = {k: v for k, v in tag.items() if k not in TAG_FIELDS}
    cells["extra"] = flow_text(rest) if rest else ""
    return cells


def flow_text(data: Any) -> str:
    if not data:
        return ""
    return str(yaml.safe_dump(data, default_flow_style=True, allow_unicode=True, sort_keys=False, width=10_000)).strip()


def field_errors(issues: list[ConfigIssue], index: int, rows: list[int]) -> tuple[dict[str, list[str]], list[str]]:
    """Issues of device `index` by form field (`name`, `connection`, `tags.3.address`, …; `rows`: the form
    row of each tag) and the rest."""
    prefix = f"devices[{index}]"
    fields: dict[str, list[str]] = {}
    other: list[str] = []
    for issue in issues:
        if not issue.path.startswith(prefix):
            other.append(str(issue))
            continue
        rest = issue.path[len(prefix) :].lstrip(".")
        m = re.match(r"^tags\[(\d+)\]\.?([a-z_]*)", rest)
        if m:
            col = m.group(2) if m.group(2) in TAG_FIELDS else "extra" if m.group(2) else "name"
            k = int(m.group(1))
            key = f"tags.{rows[k] if k < len(rows) else k}.{col}"
        else:
            head = rest.split(".")[0].split("[")[0]
            key = head if head in (*DEVICE_FIELDS, "connection", "oee", "production") else ""
        if key:
            fields.setdefault(key, []).append(str(issue))
        else:
            other.append(str(issue))
    return fields, other
