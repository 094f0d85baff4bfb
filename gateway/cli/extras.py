"""Which extra of `edgegw` brings a missing module, read from the installed package's own metadata (the
extras are declared once, in pyproject.toml)."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, requires

_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _module_name(distribution: str) -> str:
    return distribution.lower().replace("-", "_").replace(".", "_")


def extra_for(module: str) -> str | None:
    """The narrowest extra whose requirements include the distribution of `module` (e.g. 'cloud' for
    influxdb_client), or None when no extra brings it."""
    try:
        reqs = requires("edgegw") or []
    except PackageNotFoundError:
        return None
    top = module.split(".")[0].lower()
    found: list[str] = []
    for req in reqs:
        name, extra = _NAME.match(req), _EXTRA.search(req)
        if name and extra and _module_name(name.group(1)) == top and extra.group(1) not in ("all", "dev"):
            found.append(extra.group(1))
    return min(found, key=len) if found else None


def missing_extra_message(command: str, module: str) -> str | None:
    extra = extra_for(module)
    if extra is None:
        return None
    return (
        f"edgegw {command}: 缺少可选组件 / needs the '{extra}' extra ({module} is not installed): "
        f"pip install 'edgegw[{extra}]'"
    )
