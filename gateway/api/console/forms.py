"""The tag-map editor's forms as config data, and config errors back at the form's fields. Pure.

A device form carries the device's own fields, its connection and OEE settings as YAML flow text
(`{host: 10.0.0.5, port: 502, unit_id: 1}`), and one row of cells per tag (`tags.3.address`); a tag row
whose name is empty is left out. The whole config is then validated by the same loader as
`edgegw config validate`, and each `path: message` lands at the field its path names (no line number: the
draft is not the user's file).

The tag rows' address column holds what the driver addresses a tag by: `address` (Modbus), `node` (OPC UA),
`di` (DL/T 645). A secret (`password`, `token`) is never drawn in a form: it shows as `MASK`, which the form
sends back for "keep the stored one" (`restore_secrets`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from edge_config.loader import ConfigIssue
from edge_config.yamlfast import BoundedLoader

DEVICE_FIELDS = ("id", "name", "type", "line", "driver", "poll_interval")
TAG_FIELDS = ("name", "address", "node", "di", "type", "scale", "unit", "deadband", "domain", "extra")
NUMERIC = ("scale", "deadband")
MAX_TAG_ROWS = 5000
ADDRESS_FIELDS = ("address", "node", "di")  # one of them per driver: `address_key`
SECRET_KEYS = frozenset(("password", "token"))
MASK = "********"  # a secret as the form shows it; sent back unchanged it means "keep the stored one"
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


def address_key(driver: str | None) -> str:
    """The tag field a driver addresses a tag by (the form's address column)."""
    return {"opcua": "node", "dlt645": "di"}.get(driver or "", "address")


def form_rows(form: Mapping[str, str]) -> dict[int, dict[str, str]]:
    """The tag rows of a device form by row number, each address cell under the form's driver's key (a row
    drawn for another driver, before the driver was changed, has its address in another column)."""
    rows: dict[int, dict[str, str]] = {}
    for key, value in form.items():
        m = _TAG_KEY.match(key)
        if m and m.group(2) in TAG_FIELDS and int(m.group(1)) < MAX_TAG_ROWS:
            rows.setdefault(int(m.group(1)), {})[m.group(2)] = value.strip()
    wanted = address_key(form.get("driver"))
    for cells in rows.values():
        if not cells.get(wanted):
            given = next((k for k in ADDRESS_FIELDS if k != wanted and cells.get(k)), None)
            if given is not None:
                cells[wanted] = cells.pop(given)
    return rows


def device_from_form(form: Mapping[str, str]) -> tuple[dict[str, Any], list[int]]:
    """The device's config data from the form's fields, and the form row of each tag kept (raises
    FormError for text that is not YAML). A secret of the connection may be `MASK`: `restore_secrets`."""
    device: dict[str, Any] = {k: form[k].strip() for k in DEVICE_FIELDS if form.get(k, "").strip()}
    device["production"] = form.get("production") == "on"
    connection = _flow("connection", form.get("connection", ""))
    device["connection"] = connection if connection is not None else {}
    oee = _flow("oee", form.get("oee", ""))
    if oee is not None:
        device["oee"] = oee
    rows = form_rows(form)
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


def masked(data: Any) -> Any:
    """`data` with the value of every secret (`password`, `token`, at any depth) shown as `MASK`."""
    if isinstance(data, Mapping):
        return {k: MASK if k in SECRET_KEYS and v is not None else masked(v) for k, v in data.items()}
    if isinstance(data, list):
        return [masked(v) for v in data]
    return data


def restore_secrets(connection: Mapping[str, Any], stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """The connection a form sent, each secret sent back as `MASK` replaced by the stored one (`stored`: the
    device's connection before the edit; a secret removed from the text is removed)."""
    out = dict(connection)
    for key, value in connection.items():
        if key in SECRET_KEYS and value == MASK:
            if stored is None or stored.get(key) is None:
                raise FormError("connection", f"{key}: {MASK} stands for the stored {key}, and there is none: type it")
            out[key] = stored[key]
    return out


def issue_text(issue: ConfigIssue) -> str:
    """A config issue as the editor shows it: `path: message`. Its line is of the draft's YAML, not of the
    user's file, so it is left out."""
    return f"{issue.path}: {issue.message}" if issue.path else issue.message


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
            other.append(issue_text(issue))
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
            fields.setdefault(key, []).append(issue_text(issue))
        else:
            other.append(issue_text(issue))
    return fields, other
