"""The pilot city's virtual enterprises (`city_seed.csv`): generated once, deterministically, by `generate()`.

About 400 SMEs of the prefecture's industries, each with 5–60 devices of 20–200 tags and a report-by-exception
rate (the share of its tags that change in a minute). The CSV in the package is the data; this module writes it
(`python -m gateway.bench.city_seed`) and reads it back. The numbers are a plausible pilot, not a census.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SEED = 2024
ENTERPRISES = 408
DEVICES = (5, 60)
TAGS = (20, 200)
RBE = (0.02, 0.40)
# (industry key, zh, share of the pilot, typical devices, typical tags per device)
INDUSTRIES: tuple[tuple[str, str, float, int, int], ...] = (
    ("nonferrous", "有色金属", 0.22, 28, 110),
    ("chemicals", "现代化工", 0.20, 24, 130),
    ("new_materials", "新材料", 0.16, 20, 90),
    ("power_equipment", "电力装备", 0.14, 22, 70),
    ("food", "食品加工", 0.16, 18, 50),
    ("textiles", "纺织服装", 0.12, 26, 40),
)
COLUMNS = ("enterprise_id", "name", "industry", "devices", "tags_per_device", "rbe_per_min")


@dataclass(frozen=True, slots=True)
class SeedEnterprise:
    id: str
    name: str
    industry: str
    devices: int
    tags_per_device: int
    rbe_per_min: float  # share of tags that change in a minute (report by exception)

    @property
    def tags(self) -> int:
        return self.devices * self.tags_per_device


def _clamp(v: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, round(v)))


def generate(n: int = ENTERPRISES, seed: int = SEED) -> list[SeedEnterprise]:
    """`n` enterprises, the same for the same seed (a lognormal spread around each industry's typical size)."""
    rnd = random.Random(seed)
    weights = [share for _, _, share, _, _ in INDUSTRIES]
    out = []
    for i in range(1, n + 1):
        key, zh, _, dev, tags = rnd.choices(INDUSTRIES, weights)[0]
        out.append(
            SeedEnterprise(
                id=f"ent-{i:04d}",
                name=f"试点{zh}企业{i:03d}",
                industry=key,
                devices=_clamp(rnd.lognormvariate(0, 0.5) * dev, *DEVICES),
                tags_per_device=_clamp(rnd.lognormvariate(0, 0.45) * tags, *TAGS),
                rbe_per_min=round(rnd.uniform(*RBE), 3),
            )
        )
    return out


def to_csv(items: list[SeedEnterprise]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for e in items:
        w.writerow((e.id, e.name, e.industry, e.devices, e.tags_per_device, f"{e.rbe_per_min:.3f}"))
    return buf.getvalue()


def parse(text: str) -> list[SeedEnterprise]:
    rows = csv.DictReader(io.StringIO(text))
    if tuple(rows.fieldnames or ()) != COLUMNS:
        raise ValueError(f"city seed: the columns must be {', '.join(COLUMNS)}")
    return [
        SeedEnterprise(
            r["enterprise_id"],
            r["name"],
            r["industry"],
            int(r["devices"]),
            int(r["tags_per_device"]),
            float(r["rbe_per_min"]),
        )
        for r in rows
    ]


def load() -> list[SeedEnterprise]:
    """The seed shipped in the package."""
    return parse(resources.files("gateway.bench").joinpath("city_seed.csv").read_text(encoding="utf-8"))


if __name__ == "__main__":  # regenerate the shipped file
    Path(__file__).with_name("city_seed.csv").write_text(to_csv(generate()), encoding="utf-8")
