"""The cases a command measures: `speed` and `memory` from their flags, `run` and `plan` from a
suite."""

from __future__ import annotations

from pathlib import Path

from rnnbench.case import Case
from rnnbench.commands.common import (hidden_sizes_option, note, parse_variants, require_positive,
                                      select_cells)
from rnnbench.shard import parse_shard, shard_cases


def make_cases(bench: str, *, cell: str, variant: str, irc: bool, ihc: bool, form: str,
               backends: list[str], modes: list[str], device: str, dtype: str, batch: int,
               seq_len: int, input_size: int, hidden_size: str, layers: int | None,
               ihc_gamma: str, pru_output_map: bool, folds: list[str] = ("auto",)) -> list[Case]:
    # torch-heavy: imported when cases are made, not when the CLI starts
    from rnnbench.backends import folds_for
    from rnnbench.bench.params import applicable_options, changed_options
    from rnnbench.case import layer_sizes

    require_positive(("--batch", batch), ("--seq-len", seq_len), ("--input-size", input_size))
    hs = hidden_sizes_option(hidden_size, layers)
    variants = parse_variants(variant, irc=irc, ihc=ihc, baseline_beside=True)
    specs, explicit = select_cells(cell, variants, form)
    sizes = layer_sizes(input_size, hs)
    cases = []
    for spec in specs:
        if explicit:
            # asked for by name: sizes it cannot take are the user's mistake, not a result
            for n, m in sizes:
                spec.check_sizes(n, m)
        opts = applicable_options(spec, {"gamma_input": ihc_gamma, "output_map": pru_output_map})
        options = tuple(sorted(changed_options(spec, opts).items()))
        for backend in backends:
            for fold in folds_for(backend, spec.variant, folds):
                for mode in modes:
                    cases.append(Case(bench=bench, cell=spec.family, variant=spec.variant,
                                      form=spec.form, backend=backend, mode=mode, dtype=dtype,
                                      device=device, batch=batch, seq_len=seq_len,
                                      input_size=input_size,
                                      hidden_size=hs[0] if len(set(hs)) == 1 else tuple(hs),
                                      layers=len(hs), options=options, fold=fold))
    return cases


def selected_cases(data: dict, suite: Path, device: str | None, shard: str | None):
    """The suite, its shard (or None) and the cases this worker runs; the suite's notes printed."""
    from rnnbench.suite import default_measure, measure_kwargs, parse_suite

    s = parse_suite(data, suite)
    # settings the measure function does not take fail here, so `plan` refuses what `run` would
    measure_kwargs(default_measure(), s.settings, f"{suite}: [settings]")
    if device:
        s = s.with_device(device)
    for n in s.notes:
        note(n)
    where = parse_shard(shard) if shard else None
    return s, where, (shard_cases(s.cases, *where) if where else s.cases)


def ordered_cases(cases: list[Case], bench: str | None, shuffle: int | None) -> list[Case]:
    """--bench and --shuffle: a subset of the benches, and an order that is not the suite's, so
    that a slow spell of the machine does not always fall on the same cases."""
    if bench is not None:
        from rnnbench.commands.common import split_list
        wanted = split_list(bench, "--bench")
        cases = [c for c in cases if c.bench in wanted]
    if shuffle is not None:
        import random
        cases = list(cases)
        random.Random(shuffle).shuffle(cases)
    return cases
