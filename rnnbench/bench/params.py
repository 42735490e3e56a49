"""Parameter counts, measured from built modules (unique storage), never from formulas.

The modules are built on the meta device: every parameter has its real shape and storage
structure but no memory, so counting a cell with N = M = 10^6 (4·10^12 bytes on a real device)
takes milliseconds and allocates nothing. rnnbench/bench/param_forms.py fits each cell's closed
form from these counts, so that later calls need not import torch at all."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from rnnbench.bench.param_forms import applicable, changed, params_row
from rnnbench.cells.connections import IHC_GAMMA_INPUTS
from rnnbench.cells.registry import CellSpec
from rnnbench.errors import RnnbenchError
from rnnbench.results import Row
from rnnbench.case import layer_sizes


def _storage_id(p: torch.Tensor) -> int:
    st = p.untyped_storage()
    # meta storages have no address (data_ptr is 0 for all of them): their handle tells them apart
    return st.data_ptr() if p.device.type != "meta" else st._cdata


def count_unique(module: nn.Module) -> int:
    """Trainable scalars, each storage counted once even if registered under two names."""
    seen, total = set(), 0
    for p in module.parameters():
        if not p.requires_grad:
            continue
        ident = _storage_id(p)
        if ident in seen:
            continue
        seen.add(ident)
        total += p.untyped_storage().nbytes() // p.element_size()
    return total


def _defaults(cls) -> dict:
    """Constructor defaults along the MRO (a cell may pass options on to its base with **kw)."""
    found = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is not None:
            for name, p in inspect.signature(init).parameters.items():
                if p.default is not p.empty:
                    found[name] = p.default
    return found


def applicable_options(spec: CellSpec, options: dict) -> dict:
    """The options this cell takes: gamma_input only for IHC cells, output_map only for PRU."""
    gamma = options.get("gamma_input")
    if gamma is not None and gamma not in IHC_GAMMA_INPUTS:
        raise RnnbenchError(f"--ihc-gamma must be one of {', '.join(IHC_GAMMA_INPUTS)}, got {gamma!r}")
    return applicable(spec.variant, _defaults(spec.cls), options)


def changed_options(spec: CellSpec, options: dict) -> dict:
    return changed(_defaults(spec.cls), options)


def build_layers(spec: CellSpec, sizes: list[tuple[int, int]], options: dict,
                 device: str = "meta") -> nn.ModuleList:
    """Cells for explicit (N, M) pairs, so a published reading can count layers that do not chain.
    The options must already fit the cell (see applicable_options). On the meta device by
    default: shapes without memory are all a count needs."""
    with torch.device(device):
        return nn.ModuleList(spec.build(n, m, **options) for n, m in sizes)


def detail(layers: nn.ModuleList) -> list[dict]:
    rows = []
    for li, cell in enumerate(layers):
        for name, p in cell.named_parameters():
            info = cell.param_info.get(name.split(".")[-1])
            rows.append({"layer": li, "name": name, "shape": tuple(p.shape), "count": p.numel(),
                         "symbol": info.symbol if info else "", "meaning": info.meaning if info else ""})
    return rows


def measure_params(spec: CellSpec, input_size: int, hidden_sizes, layers: int | None = None, *,
                   sizes: list[tuple[int, int]] | None = None, options: dict | None = None,
                   labels: dict | None = None, want_detail: bool = False) -> tuple[Row, list[dict]]:
    sizes = sizes or layer_sizes(input_size, hidden_sizes, layers)
    opts = applicable_options(spec, options or {})
    built = build_layers(spec, sizes, opts)
    row = params_row(spec.family, spec.variant, spec.form, sizes, count_unique(built), labels,
                     changed_options(spec, opts))
    return row, (detail(built) if want_detail else [])

