"""One Jinja2 setup for every page the product renders: the evidence report now, the edge console and the
cloud portal next.

`environment("some.package")` loads the templates shipped in that package's `templates/` folder with
autoescape on for `.html`, `.htm`, `.xml`, `.svg` and `.j2` files (what a template prints is escaped
unless it is `Markup`), undefined names an error (`StrictUndefined`), and the shared filters:

- `x|percent`, `x|percent(0)`: `87.5%` (`—` for None);
- `s|hours`: seconds as `2.50 h` (from 6 min up) or `42 s` (`—` for None);
- `ms|local_time(tz)`, `ms|local_time(tz, "%m-%d %H:%M")`: epoch ms as local time in the IANA zone `tz`;
- `"state.running"|label`: the `Label` (`.zh`, `.en`) from `cloud_bridge.metrics.labels`; with
  `label(strict=False)` a name the table does not know is shown as itself;
- `"state.running"|bi`: `运行 <span class="en">/ running</span>`, from a key or a pair (zh, en) such as
  a `Label`.

- `"ui.devices"|tr`: the label in the page's language (`lang` in the template's context, `zh` or `en`).

Every environment also finds the shared page layout (`cloud_bridge/templates/layout.html.j2`: the header,
navigation, language switch, the vendored script), and `STATIC_DIR` (`cloud_bridge/static/`: htmx and
the style sheet) is what both applications serve under `/static`: nothing is fetched from elsewhere.

It imports nothing of the cloud service, so the edge agent can use it too.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from markupsafe import Markup

from cloud_bridge.metrics.labels import label

if TYPE_CHECKING:  # Jinja2 is imported when the first environment is made (the edge agent: first page)
    import jinja2

AUTOESCAPE = ("html", "htm", "xml", "svg", "j2")
STATIC_DIR = Path(__file__).parent / "static"
LANGS = ("zh", "en")
NONE = "—"


def percent(x: float | None, digits: int = 1) -> str:
    return NONE if x is None else f"{x * 100:.{digits}f}%"


def hours(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds:.0f} s"


def local_time(ms: int | None, tz: str, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if ms is None:
        return NONE
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).strftime(fmt)


def bilingual(key: str | tuple[str, str], *, strict: bool = True) -> Markup:
    """A label (its key, or the pair zh, en) as `zh <span class="en">/ en</span>`, both halves escaped; a
    text that is the same in both languages once."""
    zh, en = key if isinstance(key, tuple) else label(key, strict=strict)
    if zh == en:
        return Markup.escape(zh)
    return Markup('{} <span class="en">/ {}</span>').format(zh, en)


def translate(context: Any, key: str, **values: object) -> str:
    """The label of `key` in the page's language (`lang`: zh, the default, or en)."""
    zh, en = label(key).format(**values) if values else label(key)
    return en if context.get("lang") == "en" else zh


def pick_lang(query: str | None, cookie: str | None) -> str:
    """The page's language: `?lang=` first, then the cookie, then zh-CN."""
    for v in (query, cookie):
        if v in LANGS:
            return v
    return "zh"


def environment(package: str, folder: str = "templates") -> jinja2.Environment:
    """A Jinja2 environment for the templates in `package`/`folder` (shipped as package data), which also
    finds the shared layout."""
    import jinja2

    loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader(package, folder)]
    if package != "cloud_bridge":
        loaders.append(jinja2.PackageLoader("cloud_bridge", "templates"))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=AUTOESCAPE, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(percent=percent, hours=hours, local_time=local_time, label=label, bi=bilingual,
                       tr=jinja2.pass_context(translate))  # fmt: skip
    return env
