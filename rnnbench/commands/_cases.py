"""The cases `speed` and `memory` measure, from their flags."""

from __future__ import annotations

from rnnbench.case import Case
from rnnbench.commands.common import (hidden_sizes_option, parse_variants, require_positive,
                                      select_cells)


def make_cases(bench: str, *, cell: str, variant: str, irc: bool, ihc: bool, form: str,
               backends: list[str], modes: list[str], device: str, dtype: str, batch: int,
               seq_len: int, input_size: int, hidden_size: str, layers: int | None,
               ihc_gamma: str, pru_output_map: bool) -> list[Case]:
    # torch-heavy: imported when cases are made, not when the CLI starts
    from rnnbench.bench.params import applicable_options, changed_options
    from rnnbench.runner import layer_sizes

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
            for mode in modes:
                cases.append(Case(bench=bench, cell=spec.family, variant=spec.variant,
                                  form=spec.form, backend=backend, mode=mode, dtype=dtype,
                                  device=device, batch=batch, seq_len=seq_len,
                                  input_size=input_size,
                                  hidden_size=hs[0] if len(set(hs)) == 1 else tuple(hs),
                                  layers=len(hs), options=options))
    return cases
