"""Parameter counts as closed forms, so that `params` answers without importing torch.

Every parameter of a cell is a vector or a matrix whose sides are c·N, c·M or constants, so one
layer's count is a polynomial of degree two in its input width N and hidden width M:

    count(N, M) = a·N·M + b·M² + c·N² + d·N + e·M + f

Its six integer coefficients follow exactly from the counts of six modules built on the meta
device at small sizes (rnnbench.bench.params counts them, from unique storage, as it always did);
three more sizes check that the cell really is such a polynomial, and a cell that is not gets no
form and is counted from its modules. A cell whose feedback is elementwise (N = M) has a form in M
alone. So the forms are measured from the cells the equations build, never written by hand.

The forms, with the zoo's listing (names, display names, options and their defaults), are kept in
one cache file whose name carries a hash of the cell sources and of the rnnbench and torch versions:
the first `params` after an install or an edit of a cell builds them (torch imported, about a
second), every later one reads them and imports no torch, whatever the sizes. Anything the cache
cannot answer (an unknown name, another form, a user's cell, --detail) takes the measured path,
whose messages are the ones users see.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import metadata
from pathlib import Path

from rnnbench.results import Row

#: the sizes a form is fitted at, and checked at (general N, M; then N = M)
FIT = ((2, 3), (3, 2), (4, 7), (7, 4), (5, 11), (6, 5))
CHECK = ((13, 9), (8, 17), (29, 31))
FIT_SQUARE = (3, 5, 8)
CHECK_SQUARE = (13, 21, 34)
#: the monomials of a form, in the order of its coefficients
TERMS = (lambda n, m: n * m, lambda n, m: m * m, lambda n, m: n * n, lambda n, m: n,
         lambda n, m: m, lambda n, m: 1)
_FORMAT = 1  # bump when the cache's layout changes


# -- the options a cell takes (shared with the measured path, rnnbench.bench.params) ---------------
def applicable(variant: str, defaults: dict, options: dict) -> dict:
    """The options this cell takes: those its constructor has (``defaults``), gamma_input only for
    IHC cells, and none left at None."""
    return {k: v for k, v in options.items()
            if v is not None and k in defaults and not (k == "gamma_input" and variant != "ihc")}


def changed(defaults: dict, options: dict) -> dict:
    """The options that differ from the constructor's defaults (what a row's label names)."""
    return {k: v for k, v in options.items() if defaults.get(k, object()) != v}


def params_row(family: str, variant: str, form: str, sizes: list[tuple[int, int]], count: int,
               labels: dict | None = None, options_changed: dict | None = None) -> Row:
    """The row of one count, the same whichever way the count was had."""
    labels = dict(labels or {})
    if options_changed:
        labels["options"] = ",".join(f"{k}={v}" for k, v in sorted(options_changed.items()))
    return Row(bench="params", cell=family, variant=variant, form=form, input_size=sizes[0][0],
               hidden_size=[m for _, m in sizes], layers=len(sizes),
               metrics={"params": count, "param_bytes_float32": 4 * count}, labels=labels)


# -- fitting ----------------------------------------------------------------------------------------
def _solve(rows: list[list[int]], values: list[int]) -> list[Fraction] | None:
    """Gaussian elimination in exact fractions; None when the sizes do not pin the terms down."""
    a = [[Fraction(x) for x in r] + [Fraction(v)] for r, v in zip(rows, values)]
    n = len(a[0]) - 1
    for col in range(n):
        pivot = next((r for r in range(col, len(a)) if a[r][col] != 0), None)
        if pivot is None:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(len(a)):
            if r != col and a[r][col] != 0:
                f = a[r][col] / a[col][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[col])]
    return [a[i][n] / a[i][i] for i in range(n)]


def fit(count, square: bool) -> list[int] | None:
    """The integer coefficients of ``count(n, m)`` over :data:`TERMS` (N = M cells: n = m), or None
    when the counts are not such a polynomial."""
    fit_at = [(m, m) for m in FIT_SQUARE] if square else list(FIT)
    check_at = [(m, m) for m in CHECK_SQUARE] if square else list(CHECK)
    # with N = M only three terms are independent: N·M, N² and M² merge, as do N and M
    terms = (TERMS[1], TERMS[4], TERMS[5]) if square else TERMS
    coefs = _solve([[t(n, m) for t in terms] for n, m in fit_at], [count(n, m) for n, m in fit_at])
    if coefs is None or any(c.denominator != 1 for c in coefs):
        return None
    ints = [int(c) for c in coefs]
    full = [0, ints[0], 0, 0, ints[1], ints[2]] if square else ints
    if any(evaluate(full, n, m) != count(n, m) for n, m in check_at):
        return None
    return full


def evaluate(coefs: list[int], n: int, m: int) -> int:
    return sum(c * t(n, m) for c, t in zip(coefs, TERMS))


# -- the cache --------------------------------------------------------------------------------------
def cache_dir() -> Path:
    if d := os.environ.get("RNNBENCH_CACHE_DIR"):
        return Path(d)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnbench"


def cache_path() -> Path:
    """One file per version of the cells: their sources, rnnbench's and torch's versions."""
    import rnnbench
    h = hashlib.sha256(f"{_FORMAT} {rnnbench.__version__} ".encode())
    try:
        h.update(metadata.version("torch").encode())
    except metadata.PackageNotFoundError:
        h.update(b"no torch")
    cells = Path(rnnbench.__file__).resolve().parent / "cells"
    for src in sorted(cells.glob("*.py")):
        h.update(src.name.encode() + b"\0" + src.read_bytes())
    return cache_dir() / f"param-forms-{h.hexdigest()[:16]}.json"


@dataclass(frozen=True)
class Listed:
    """A zoo cell as the cache lists it: what `params` needs of a CellSpec, without its class."""
    family: str
    variant: str
    form: str
    display: str
    requires_square: bool
    defaults: dict = field(default_factory=dict, hash=False, compare=False)
    #: options_key(options that differ from the defaults) -> coefficients, or None (no form)
    forms: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.family}/{self.variant}/{self.form}"


def options_key(options: dict) -> str:
    return json.dumps(options, sort_keys=True)


def read_cache() -> tuple[dict[str, Listed], list[str]] | None:
    """The listing with its forms, and the IHC gate inputs there are; None when this version of
    the cells has no usable cache."""
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
        return ({d["family"] + "/" + d["variant"] + "/" + d["form"]: Listed(**d)
                 for d in data["cells"]}, list(data["gamma_inputs"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, unreadable or from another layout: the measured path rebuilds it


def write_cache(listing: dict[str, Listed], gamma_inputs) -> None:
    """Kept atomically; a cache that cannot be written costs time, never a result."""
    from rnnbench.results import atomic_write_text
    cells = [{"family": s.family, "variant": s.variant, "form": s.form, "display": s.display,
              "requires_square": s.requires_square, "defaults": s.defaults, "forms": s.forms}
             for s in listing.values()]
    try:
        atomic_write_text(cache_path(), json.dumps({"format": _FORMAT, "cells": cells,
                                                    "gamma_inputs": list(gamma_inputs)}, indent=0))
    except Exception:  # noqa: BLE001 - see above: an unwritable cache folder is not an error
        pass


# -- the two paths ----------------------------------------------------------------------------------
def counts_from_cache(cells, variants: list[str], form: str, sizes: list[tuple[int, int]],
                      options: dict):
    """(rows, listed specs) for `params` from the cache alone, or None where it cannot answer
    (then the measured path runs and says whatever there is to say). ``cells``: "all" or the
    named families, as rnnbench.commands.common.parse_cells gives them."""
    cached = read_cache()
    if cached is None or form != "paper":
        return None
    listing, gamma_inputs = cached
    if options.get("gamma_input") not in (None, *gamma_inputs):
        return None  # the measured path refuses it, in its words
    order = list(dict.fromkeys(s.family for s in listing.values()))
    fams = order if cells == "all" else [c.lower().replace("-", "").replace("_", "") for c in cells]
    rows, specs = [], []
    for fam in fams:
        for variant in variants:
            spec = listing.get(f"{fam}/{variant}/paper")
            if spec is None:
                return None
            opts = applicable(variant, spec.defaults, options)
            coefs = spec.forms.get(options_key(changed(spec.defaults, opts)))
            if coefs is None or (spec.requires_square and any(n != m for n, m in sizes)):
                return None
            count = sum(evaluate(coefs, n, m) for n, m in sizes)
            rows.append(params_row(fam, variant, "paper", sizes, count,
                                   options_changed=changed(spec.defaults, opts)))
            specs.append(spec)
    return rows, specs


def remember(specs, options: dict) -> None:
    """After a measured `params`: list the whole zoo and fit the forms of ``specs`` at
    ``options`` (and of every cell at its defaults), so the next call needs no torch."""
    from rnnbench.bench.params import _defaults, build_layers, count_unique
    from rnnbench.cells.connections import IHC_GAMMA_INPUTS
    from rnnbench.cells.registry import all_specs

    listing = (read_cache() or ({}, []))[0]
    for spec in all_specs():
        defaults = {k: v for k, v in _defaults(spec.cls).items()
                    if k not in ("input_size", "hidden_size")}
        key = f"{spec.family}/{spec.variant}/{spec.form}"
        old = listing.get(key)
        entry = Listed(spec.family, spec.variant, spec.form, spec.display, spec.requires_square,
                       defaults, dict(old.forms) if old else {})
        # keyed by the options that differ from the constructor's: what decides the module
        wanted = [{}]
        if any(spec is s for s in specs):
            wanted.append(applicable(spec.variant, defaults, options))
        for opts in wanted:
            k = options_key(changed(defaults, opts))
            if k not in entry.forms:
                def count(n, m, spec=spec, opts=opts):
                    return count_unique(build_layers(spec, [(n, m)], opts))
                entry.forms[k] = fit(count, spec.requires_square)
        listing[key] = entry
    write_cache(listing, IHC_GAMMA_INPUTS)
