"""The shared template setup: autoescape, strict undefined names, the shared filters."""

from __future__ import annotations

from datetime import date

import jinja2
import pytest

from cloud_bridge.metrics.calendar import local_ms
from cloud_bridge.metrics.labels import Label
from cloud_bridge.web import bilingual, environment, hours, local_time, percent


@pytest.fixture
def env() -> jinja2.Environment:
    return environment("cloud_bridge.cloud.evidence")


def test_filters() -> None:
    assert (percent(0.875), percent(None), percent(1.0, 0)) == ("87.5%", "—", "100%")
    assert (hours(9000), hours(42.4), hours(None)) == ("2.50 h", "42 s", "—")
    ms = local_ms(date(2024, 5, 1), 8 * 60 + 30, "Asia/Shanghai")
    assert local_time(ms, "Asia/Shanghai") == "2024-05-01 08:30:00"
    assert local_time(ms, "UTC", "%m-%d %H:%M") == "05-01 00:30"
    assert local_time(None, "UTC") == "—"
    assert bilingual("state.fault") == '故障 <span class="en">/ fault</span>'
    assert bilingual(Label("<b>", "a & b")) == '&lt;b&gt; <span class="en">/ a &amp; b</span>'


def test_templates_escape_and_refuse_undefined_names(env: jinja2.Environment) -> None:
    t = env.from_string('<p title="{{ name }}">{{ name }} {{ "state.idle" | bi }} {{ x | percent }}</p>')
    html = t.render(name='<script>alert("1")</script>', x=0.5)
    assert html == (
        '<p title="&lt;script&gt;alert(&#34;1&#34;)&lt;/script&gt;">&lt;script&gt;alert(&#34;1&#34;)&lt;/script&gt; '
        '待机 <span class="en">/ idle</span> 50.0%</p>'
    )
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ nothing }}").render()
    assert env.from_string('{{ ("flag." ~ f) | label(strict=False) }}').render(f="new") == "new / new"
