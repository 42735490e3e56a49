"""Published parameter figures (a TOML table such as bench_configs/paper_table2.toml) checked
against counts measured from the built cells.

A published figure such as "5.1M" or "0.06%" carries its precision: ours agrees when it rounds to
the same digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from rnnbench.bench.params import measure_params
from rnnbench.cells.registry import get
from rnnbench.errors import ConfigError, RnnbenchError
from rnnbench.results import Row

ROW_KEYS = {"id", "section", "cell", "variant", "form", "input_size", "hidden_size", "layer_sizes",
            "baseline", "published", "published_reduction", "note", "reading", "options"}
_SCALE = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9}


@dataclass
class Published:
    value: Decimal
    scale: int
    digits: int  # decimals printed
    text: str

    @classmethod
    def parse(cls, text: str, what: str) -> Published:
        m = re.fullmatch(r"\s*([0-9]+(?:\.([0-9]+))?)\s*([KMB%]?)\s*", str(text), re.IGNORECASE)
        if not m:
            raise ConfigError(f"{what}: cannot read the published figure {text!r}")
        suffix = m.group(3).upper()
        return cls(Decimal(m.group(1)), 1 if suffix == "%" else _SCALE[suffix],
                   len(m.group(2) or ""), str(text).strip())

    def as_float(self) -> float:
        return float(self.value * self.scale)

    def agrees(self, ours: float) -> bool:
        return round(Decimal(ours) / self.scale, self.digits) == self.value


@dataclass
class TableRow:
    id: str
    section: str
    spec: object
    sizes: list[tuple[int, int]]
    baseline: str | None = None
    published: Published | None = None
    published_reduction: Published | None = None
    note: str = ""
    reading: str = ""
    options: dict = field(default_factory=dict)


def load(path: str | Path) -> tuple[dict, list[TableRow]]:
    from rnnbench.suite import read_toml

    path = Path(path)
    data = read_toml(path, "config file")
    meta = data.get("meta", {})
    if (not isinstance(meta, dict) or meta.get("bench") != "params"
            or not isinstance(data.get("rows"), list)
            or not all(isinstance(r, dict) for r in data["rows"])):
        raise ConfigError(f"{path}: a parameter table needs [meta] bench = \"params\" and [[rows]]")
    rows, ids = [], set()
    for i, raw in enumerate(data["rows"], 1):
        where = f"{path.name}, row {i}"
        unknown = set(raw) - ROW_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        for req in ("id", "cell"):
            if req not in raw:
                raise ConfigError(f"{where}: missing {req!r}")
        rid = str(raw["id"])
        if rid in ids:
            raise ConfigError(f"{where}: duplicate id {rid!r}")
        spec = get(raw["cell"], raw.get("variant", "baseline"), raw.get("form", "paper"))
        sizes = _sizes(raw, where)
        if raw.get("baseline") and raw["baseline"] not in ids:
            raise ConfigError(f"{where}: baseline {raw['baseline']!r} must name an earlier row's id")
        opts = raw.get("options", {})
        if not isinstance(opts, dict):
            raise ConfigError(f"{where}: options must be a table")
        rows.append(TableRow(
            rid, str(raw.get("section", "")), spec, sizes, raw.get("baseline"),
            Published.parse(raw["published"], where) if "published" in raw else None,
            Published.parse(raw["published_reduction"], where) if "published_reduction" in raw else None,
            str(raw.get("note", "")), str(raw.get("reading", "")), dict(opts)))
        ids.add(rid)
    return meta, rows


def _sizes(raw: dict, where: str) -> list[tuple[int, int]]:
    try:
        if "layer_sizes" in raw:
            sizes = [(int(n), int(m)) for n, m in raw["layer_sizes"]]
        else:
            hs = raw["hidden_size"]
            hs = [hs] if isinstance(hs, int) else list(hs)
            sizes, n = [], int(raw["input_size"])
            for m in hs:
                sizes.append((n, int(m)))
                n = int(m)
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{where}: give input_size and hidden_size, or layer_sizes = [[N, M], ...]"
                          ) from None
    if not sizes or any(n <= 0 or m <= 0 for n, m in sizes):
        raise ConfigError(f"{where}: sizes must be positive")
    return sizes


def evaluate(rows: list[TableRow]) -> list[Row]:
    out, by_id = [], {}
    for tr in rows:
        labels = {"id": tr.id, "section": tr.section, "note": tr.note, "reading": tr.reading,
                  "sizes": "→".join([str(tr.sizes[0][0])] + [str(m) for _, m in tr.sizes]),
                  "case": tr.id}  # readings of one configuration differ only by id
        try:
            row, _ = measure_params(tr.spec, tr.sizes[0][0], None, sizes=tr.sizes,
                                    options=tr.options, labels=labels)
        except RnnbenchError as e:
            raise ConfigError(f"row {tr.id!r}: {e}") from None
        ours = row.metrics["params"]
        if tr.baseline:
            base = by_id[tr.baseline].metrics["params"]
            row.metrics["reduction_pct"] = 100.0 * (base - ours) / base
            row.labels["baseline"] = tr.baseline
        if tr.published:
            row.labels["published"] = tr.published.text
            row.metrics["published_params"] = tr.published.as_float()
            row.metrics["agrees_params"] = int(tr.published.agrees(ours))
        if tr.published_reduction and "reduction_pct" in row.metrics:
            row.labels["published_reduction"] = tr.published_reduction.text
            row.metrics["published_reduction_pct"] = tr.published_reduction.as_float()
            row.metrics["agrees_reduction"] = int(tr.published_reduction.agrees(
                row.metrics["reduction_pct"]))
        out.append(row)
        by_id[tr.id] = row
    return out
