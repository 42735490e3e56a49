"""`rnnbench params`: parameter counts measured from the built cells, against the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rnnbench import envinfo
from rnnbench.bench import param_forms
from rnnbench.case import layer_sizes
from rnnbench.commands import _options as opts
from rnnbench.commands.common import (cli_errors, hidden_sizes_option, out, parse_cells,
                                      parse_variants, require_positive, select_cells)
from rnnbench.outputs import prepare
from rnnbench.results import ResultFile, Row, atomic_write_text, fmt_count, to_markdown, write_outputs


def _reduction(base: int, n: int) -> str:
    return "–" if base == n else f"{100.0 * (base - n) / base:+.1f}%".replace("+", "−", 1) \
        if base > n else f"+{100.0 * (n - base) / base:.1f}%"


def params(
    cell: str = opts.CELL,
    variant: str = opts.VARIANT,
    irc: bool = opts.IRC,
    ihc: bool = opts.IHC,
    input_size: int = opts.INPUT_SIZE,
    hidden_size: str = opts.HIDDEN_SIZE,
    layers: Optional[int] = opts.LAYERS,
    form: str = opts.FORM,
    ihc_gamma: str = opts.IHC_GAMMA,
    pru_output_map: bool = opts.PRU_OUTPUT_MAP,
    detail: bool = typer.Option(False, "--detail", help="every parameter tensor, shape and symbol"),
    config: Optional[Path] = typer.Option(None, "--config",
                                          help="a published-figures table, e.g. bench_configs/paper_table2.toml"),
    csv: Optional[Path] = opts.CSV,
    json: Optional[Path] = opts.JSON,
    markdown: Optional[Path] = opts.MARKDOWN,
    overwrite: bool = opts.OVERWRITE,
):
    """Count parameters of cells and variants, with the reduction against the baseline."""
    prepare(json=json, csv=csv, markdown=markdown, inputs=[config], overwrite=overwrite)
    if config is not None:
        from rnnbench.bench import published
        meta, table_rows = published.load(config)
        rows = published.evaluate(table_rows)
        columns, cells = _published_table(rows, meta.get("title", str(config)))
    else:
        require_positive(("--input-size", input_size))
        hs = hidden_sizes_option(hidden_size, layers)
        variants = parse_variants(variant, irc=irc, ihc=ihc, baseline_beside=True)
        options = {"gamma_input": ihc_gamma, "output_map": pru_output_map}
        # the closed forms fitted from earlier counts answer without torch (param_forms.py)
        fast = None if detail else param_forms.counts_from_cache(
            parse_cells(cell)[0], variants, form, layer_sizes(input_size, hs), options)
        if fast is not None:
            rows, specs = fast
        else:
            rows, specs = _measured(cell, variants, form, input_size, hs, options, detail)
        columns, cells = _count_table(rows, specs)
    if markdown:
        atomic_write_text(markdown, to_markdown(columns, cells))
    if csv or json:
        result = ResultFile(envinfo.collect("cpu"), envinfo.provenance(), rows)
        write_outputs(result, json_path=json, csv_path=csv)


def _measured(cell, variants, form, input_size, hs, options, detail):
    """Counts from the cells built on the meta device; their forms kept for the next call."""
    from rnnbench.bench.params import measure_params

    specs, _ = select_cells(cell, variants, form)
    rows, details = [], []
    for spec in specs:
        row, det = measure_params(spec, input_size, hs, options=options, want_detail=detail)
        rows.append(row)
        details.append((spec, det))
    if detail:
        _print_detail(details)
    param_forms.remember(specs, options)
    return rows, specs


def _count_table(rows: list[Row], specs) -> tuple[list[str], list[list[str]]]:
    columns = ["cell", "form", "N", "M", "layers", "params", "vs baseline"]
    table = Table(title="Parameters (trainable scalars, unique storage)")
    for c in columns:
        table.add_column(c, justify="right" if c in ("N", "params", "vs baseline", "layers") else "left")
    base = {}
    cells = []
    for row, spec in zip(rows, specs):
        n = row.metrics["params"]
        if spec.variant == "baseline":
            base[spec.family] = n
        ref = base.get(spec.family)
        m = row.hidden_size if not isinstance(row.hidden_size, list) else ",".join(map(str, row.hidden_size))
        line = [spec.display, spec.form, str(row.input_size), str(m), str(row.layers), fmt_count(n),
                _reduction(ref, n) if ref is not None and spec.variant != "baseline" else ""]
        if row.labels.get("options"):
            line[1] += f" ({row.labels['options']})"
        table.add_row(*line)
        cells.append(line)
    out.print(table)
    return columns, cells


def _published_table(rows: list[Row], title: str) -> tuple[list[str], list[list[str]]]:
    columns = ["section", "model", "layers N→M", "ours", "reduction", "published", "pub. reduction",
               "agrees", "note"]
    table = Table(title=title)
    for c in columns[1:]:
        table.add_column(c, justify="right" if c in ("ours", "reduction", "published",
                                                     "pub. reduction", "note") else "left")
    cells, notes, section = [], [], None
    for r in rows:
        m, lab = r.metrics, r.labels
        if lab.get("section") != section:
            section = lab.get("section")
            table.add_row(f"[bold]{section}[/bold]", *[""] * (len(columns) - 2))
        agrees = [m[k] for k in ("agrees_params", "agrees_reduction") if k in m]
        mark = "" if not agrees else ("yes" if all(agrees) else "no")
        red = ""
        if "reduction_pct" in m:
            red = f"{m['reduction_pct']:.{3 if abs(m['reduction_pct']) < 1 else 1}f}%"
        why = f"reading: {lab['reading']}" if lab.get("reading") else lab.get("note", "")
        ref = ""
        if why:
            notes.append(why)
            ref = f"[{len(notes)}]"
        line = [section, r.variant.upper() + "-" + _title(r) if r.variant != "baseline" else _title(r),
                lab.get("sizes", ""), fmt_count(m["params"]), red, lab.get("published", ""),
                lab.get("published_reduction", ""), mark, ref]
        table.add_row(*line[1:], style="yellow" if mark == "no" else None)
        cells.append(line[:-1] + [why])
    out.print(table)
    out.print("agrees: our count, rounded to the digits of the published figure, equals it.")
    for i, n in enumerate(notes, 1):
        out.print(f"[{i}] {n}", highlight=False, markup=False)
    return columns, cells


def _title(row: Row) -> str:
    from rnnbench.cells.registry import get
    return getattr(get(row.cell).cls, "title", row.cell)


def _print_detail(details) -> None:
    for spec, det in details:
        t = Table(title=f"{spec.display} ({spec.form}): parameter tensors")
        for c in ("layer", "name", "symbol", "shape", "count", "meaning"):
            t.add_column(c, justify="right" if c in ("layer", "count") else "left")
        for d in det:
            t.add_row(str(d["layer"]), d["name"], d["symbol"], "×".join(map(str, d["shape"])),
                      fmt_count(d["count"]), d["meaning"])
        out.print(t)


def register(app: typer.Typer) -> None:
    app.command("params")(cli_errors(params))
