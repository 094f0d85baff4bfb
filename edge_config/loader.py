"""YAML loading with errors a plant engineer can act on: `file:line: field.path: message`."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edge_config import yamlfast
from edge_config.models import DRIVER_NAMES, CloudConfig, GatewayConfig, LocatedError
from edge_config.secrets import with_env_secrets

M = TypeVar("M", bound=BaseModel)
PathKey = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class ConfigError(Exception):
    """One or more problems in a config file; `str()` gives one `file:line: path: message` per line."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def _line_map(node: yaml.Node, prefix: PathKey, out: dict[PathKey, int]) -> None:
    out.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[(*prefix, key)] = key_node.start_mark.line + 1
            _line_map(value_node, (*prefix, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*prefix, i), out)


def format_path(loc: PathKey) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + part
    return text


def _clean_loc(loc: tuple[Any, ...]) -> PathKey:
    """Drop pydantic's union-branch names (discriminator values, function validators) from a location."""
    return tuple(p for p in loc if not (isinstance(p, str) and (p in DRIVER_NAMES or "[" in p)))


def _line_for(lines: dict[PathKey, int], loc: PathKey) -> int:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def _message(err: Any) -> str:
    msg: str = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    elif err["type"] == "union_tag_invalid":
        msg = f"driver must be one of {', '.join(DRIVER_NAMES)}"
    elif err["type"] == "union_tag_not_found":
        msg = f"driver: is missing (one of {', '.join(DRIVER_NAMES)})"
    elif err["type"] == "literal_error" and "input" in err:
        msg = f"{err['input']!r}: {msg.lower()}"
    return msg


def error_loc(err: Any) -> PathKey:
    """Where a pydantic error is: its location, and for a check across fields the field it names."""
    loc = _clean_loc(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    return (*loc, *cause.loc) if isinstance(cause, LocatedError) else loc


def _issues(file: str, lines: dict[PathKey, int], exc: ValidationError) -> Iterator[ConfigIssue]:
    for err in exc.errors():
        loc = error_loc(err)
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "driver")  # the discriminator's own line (or, when missing, the device's)
        yield ConfigIssue(file, _line_for(lines, loc), format_path(loc), _message(err))


# libyaml through PyYAML's C binding when present (five times faster than the pure-Python scanner on a
# large tag map, FACTS.md), with the safe constructor's common nodes built directly (`yamlfast`: the same
# data, half the time), refusing alias bombs and cycles before anything is built
_Loader: Any = yamlfast.BoundedLoader


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a tag map is built: every object made is kept, and the collector's
    full passes over them made loading 100,000 tags 3.7 times slower (10.5 s against 2.9 s for the YAML
    alone, measured). Collection resumes, as it was, when the block ends."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _syntax_error(file: str, e: yaml.MarkedYAMLError) -> ConfigError:
    mark = e.problem_mark or e.context_mark
    line = mark.line + 1 if mark else 1
    what = "YAML" if isinstance(e, yamlfast.AliasError) else "YAML syntax"
    return ConfigError([ConfigIssue(file, line, "", f"{what}: {e.problem or e}")])


# A tag map this large is parsed in a short-lived child process: PyYAML builds a node graph of about
# 3.5 KB per tag before the data (measured: 145 MB for 40,000 tags), and CPython keeps that heap for the
# life of the process; the child hands the plain data back as JSON (40,000 tags: RSS +49 MB instead of
# +145 MB, 1.8 s instead of 1.3 s). Anything JSON cannot carry, or any error, is parsed here as usual.
PARSE_ELSEWHERE_BYTES = 512 * 1024
# The child loads `yamlfast` by its path: importing it as `edge_config.yamlfast` would import the config
# models first (the package's __init__), which the child does not need.
_CHILD = (
    "import gc, importlib.util, json, sys, yaml\n"
    "gc.disable()\n"
    "spec = importlib.util.spec_from_file_location('edgegw_yamlfast', sys.argv[1])\n"
    "fast = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(fast)\n"
    "sys.stdout.write(json.dumps(yaml.load(sys.stdin.read(), Loader=fast.BoundedLoader), allow_nan=False))\n"
)


def _parse_elsewhere(text: str) -> bytes | None:
    """The YAML document parsed in a child process, as JSON, or None when that cannot be done faithfully."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, yamlfast.__file__],
            input=text.encode(),
            capture_output=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None  # a syntax error, or data JSON cannot hold (dates, NaN): the usual path says what
    return out.stdout


def load_text(text: str, model: type[M], file: str = "<config>") -> M:
    """Parse and validate; on a mistake, every error at once with its `file:line: path`. The line map is
    built only then: a large valid tag map is parsed once, with no per-key bookkeeping."""
    try:
        parsed = _parse_elsewhere(text) if len(text) > PARSE_ELSEWHERE_BYTES else None
        if parsed is not None and parsed.lstrip()[:1] == b"{":
            return _validate(text, parsed, model, file)
        with _collector_paused():
            data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        raise _syntax_error(file, e) from None
    except yaml.YAMLError as e:
        raise ConfigError([ConfigIssue(file, 1, "", f"YAML: {e}")]) from None
    except RecursionError:  # libyaml allows 1,000 levels; building them takes more frames than Python has
        raise ConfigError([ConfigIssue(file, 1, "", "YAML: nested too deeply")]) from None
    if data is None:
        raise ConfigError([ConfigIssue(file, 1, "", "the file is empty")])
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(file, 1, "", "the top level must be a mapping (key: value)")])
    try:
        return _validate(text, data, model, file)
    except RecursionError:
        raise ConfigError([ConfigIssue(file, 1, "", "YAML: nested too deeply")]) from None


def _validate(text: str, data: dict[str, Any] | bytes, model: type[M], file: str) -> M:
    """`data` validated as `model`: a mapping, or the document as JSON (validated straight from the JSON:
    no Python objects for the raw data of a large tag map next to its models, half the peak memory)."""
    try:
        with _collector_paused():
            return model.model_validate_json(data) if isinstance(data, bytes) else model.model_validate(data)
    except ValidationError as exc:
        lines: dict[PathKey, int] = {}
        root = yaml.compose(text, Loader=_Loader)
        if root is not None:
            _line_map(root, (), lines)
        raise ConfigError(list(_issues(file, lines, exc))) from None


def load_file(path: str | Path, model: type[M]) -> M:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([ConfigIssue(str(path), 0, "", f"cannot read: {e.strerror or e}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(str(path), 0, "", "not UTF-8 text")]) from None
    return with_env_secrets(load_text(text, model, p.name if p.parent == Path(".") else str(path)))


def load_gateway_config(path: str | Path) -> GatewayConfig:
    return load_file(path, GatewayConfig)


def load_cloud_config(path: str | Path) -> CloudConfig:
    return load_file(path, CloudConfig)


def json_schema(kind: str = "gateway") -> str:
    model: type[BaseModel] = GatewayConfig if kind == "gateway" else CloudConfig
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"edgegw {kind} config"
    return json.dumps(schema, indent=2, ensure_ascii=False)
