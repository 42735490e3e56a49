"""What every command shares: the error boundary, consoles, and option parsing.

Every flag that takes a comma list, a choice, a dtype or a device is parsed here, so one spelling
works in every command and a bad value is one line on stderr and exit code 2 (a RnnbenchError
through :func:`cli_errors`) everywhere.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Collection, Iterable, Sequence

import typer
from rich.console import Console

from rnnbench.errors import DeviceError, RnnbenchError, UnknownCellError

def out_width() -> int | None:
    """Tables fit COLUMNS when it is set (a terminal or a pipe); piped without it, 200 columns, so
    that wide tables stay one line per row in logs; on a terminal, its width."""
    cols = os.environ.get("COLUMNS", "")
    if cols.isdigit() and int(cols) > 0:
        return int(cols)
    return None if sys.stdout.isatty() else 200


# tables on stdout, progress and messages on stderr, so stdout can be piped
out = Console(width=out_width())
err = Console(stderr=True)


def fit_table(table, drop: Sequence[str], console: Console | None = None):
    """Drop columns, in the order of ``drop`` (the least telling first), until the table fits the
    console without breaking a word (or a value from its unit); then share the width out."""
    console = console or out
    width = console.width
    for name in drop:
        if _widths(table, console)[0] <= width:
            break
        names = [str(c.header) for c in table.columns]
        if name in names:
            del table.columns[names.index(name)]
    minimum, mins, maxs = _widths(table, console)
    if minimum <= width < minimum - sum(mins) + sum(maxs):
        # Rich's own shrinking narrows the widest columns first, words or not: give each column
        # its minimum, and the rest in proportion to what each would like beyond it
        spare, wants = width - minimum, [b - a for a, b in zip(mins, maxs)]
        pad = table.padding[1] + table.padding[3]
        for column, low, want in zip(table.columns, mins, wants):
            column.width = max(1, low - pad + (spare * want) // (sum(wants) or 1))
    return table


def _widths(table, console: Console) -> tuple[int, list[int], list[int]]:
    """The table's least width without a broken word, and each column's least and ideal width
    (padding included). A no_wrap column's least width is its widest cell."""
    # Table._measure_column is Rich's measure of one column; the public one is the whole table's
    measures = [table._measure_column(console, console.options, c) for c in table.columns]
    mins = [m.maximum if c.no_wrap else m.minimum for m, c in zip(measures, table.columns)]
    maxs = [m.maximum for m in measures]
    return table._extra_width + sum(mins), mins, maxs  # _extra_width: the borders


def note(text: str) -> None:
    """One line on stderr. Plain print: Rich would wrap it at 80 columns when stderr is a file."""
    print(f"rnnbench: {text}", file=sys.stderr)


def click_exceptions() -> tuple:
    """(ClickException, UsageError, NoArgsIsHelpError) of the Click that typer runs on: recent
    typer carries its own copy of Click, older typer uses the click package."""
    mod = sys.modules[typer.BadParameter.__module__]
    return mod.ClickException, mod.UsageError, getattr(mod, "NoArgsIsHelpError", ())


def debugging() -> bool:
    """--debug (a global option) or RNNBENCH_DEBUG=1: show the traceback behind an error."""
    return os.environ.get("RNNBENCH_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def cli_errors(fn):
    """Turn any error into one line on stderr and exit code 2 (a RnnbenchError: its own code),
    never a traceback; with --debug the traceback follows the line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from rnnbench.outputs import command_scope

        try:
            with command_scope():
                return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click_exceptions()[0]):
            raise
        except RnnbenchError as e:
            _report(f"error: {_one_line(e)}")
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            print("rnnbench: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        except UnicodeError as e:
            _report(f"error: a file is not UTF-8 text ({_one_line(e)})")
            raise typer.Exit(2) from None
        except OSError as e:
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            _report(f"error: {where}{_one_line(e.strerror or e)}")
            raise typer.Exit(2) from None
        except MemoryError:
            _report("error: out of memory; try smaller sizes")
            raise typer.Exit(2) from None
        except Exception as e:  # noqa: BLE001 - the boundary: no exception reaches the user raw
            _report(f"error: {type(e).__name__}: {_one_line(e)[:300]} (an rnnbench bug? "
                    "--debug shows the traceback)")
            raise typer.Exit(2) from None

    return wrapper


def _report(line: str) -> None:
    if debugging():
        traceback.print_exc()
    print(f"rnnbench: {line}", file=sys.stderr)


# -- lists and choices -----------------------------------------------------------------------------
def split_list(text: str, what: str) -> list[str]:
    """'a, b,,a' into ['a', 'b']: blanks dropped, a repeat kept once, the order kept."""
    items = list(dict.fromkeys(p.strip() for p in str(text).split(",") if p.strip()))
    if not items:
        raise RnnbenchError(f"{what} needs at least one value, got {text!r}")
    return items


def parse_choices(text: str, what: str, choices: Sequence[str], *, noun: str,
                  known: Collection[str] = (), why: str = "") -> list[str]:
    """A comma list of ``choices`` (any case), or 'all' for every one of them. A value in
    ``known`` but not in ``choices`` exists elsewhere in rnnbench: the message says ``why`` it
    cannot be had here instead of calling it unknown."""
    items = list(dict.fromkeys(p.lower() for p in split_list(text, what)))
    if items == ["all"]:
        return list(choices)
    listing = f"choose from {', '.join(choices)}, all (comma lists allowed)"
    for v in items:
        if v in choices:
            continue
        if v in known:
            raise RnnbenchError(f"{what} {v}: {why}; {listing}")
        raise RnnbenchError(f"unknown {noun} {v!r}; {listing}")
    return items


def parse_one(text: str, what: str, choices: Sequence[str]) -> str:
    """One value of ``choices`` (any case)."""
    value = str(text).strip().lower()
    if value not in choices:
        raise RnnbenchError(f"{what} must be one of {', '.join(choices)}, got {text!r}")
    return value


def parse_int_list(text: str, what: str, *, minimum: int = 1) -> list[int]:
    """'512' or '400,1150,400' into integers of at least ``minimum`` (repeats kept: they are
    per-layer sizes)."""
    parts = [p for p in text.replace(" ", "").split(",") if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise RnnbenchError(f"{what} must be integers separated by commas, got {text!r}")
    values = [int(p) for p in parts]
    if any(v < minimum for v in values):
        raise RnnbenchError(f"{what} must be {'positive' if minimum == 1 else f'at least {minimum}'}, "
                            f"got {text!r}")
    return values


def require_positive(*flags: tuple[str, float | None]) -> None:
    """Each (flag, value) pair that has a value must be a finite number above zero (NaN too is
    refused: see rnnbench/validate.py)."""
    from rnnbench.validate import POSITIVE, flag

    for what, v in flags:
        flag(what, v, POSITIVE)


def hidden_sizes_option(text: str, layers: int | None) -> list[int]:
    """--hidden-size (one M, or one per layer) with --layers: the per-layer hidden sizes."""
    require_positive(("--layers", layers))
    hs = parse_int_list(text, "--hidden-size")
    if len(hs) == 1 and layers:
        return hs * layers
    if layers is not None and layers != len(hs):
        raise RnnbenchError(f"--layers {layers} does not match {len(hs)} hidden sizes")
    return hs


# -- what to measure -------------------------------------------------------------------------------
def parse_cells(text: str) -> tuple[list[str] | str, bool]:
    """--cell: ('all', False) or (the named families, True). The registry checks the names when
    the cells are selected, so its message, which lists the families, is the one users see."""
    names = split_list(text, "--cell")
    if names == ["all"]:
        return "all", False
    return names, True


def select_cells(text: str, variants: list[str], form: str = "paper") -> tuple[list, bool]:
    """--cell with the variants and form: the cell specs, and whether the cells were named.
    'all' means every family that has the form (a note on stderr names those left out);
    naming a family that lacks it is an error."""
    from rnnbench.cells.registry import families, get, select

    cells, named = parse_cells(text)
    if not named and form != "paper" and "baseline" in variants:
        have, lack = [], []
        for fam in families():
            try:
                get(fam, "baseline", form)
                have.append(fam)
            except UnknownCellError:
                lack.append(fam)
        if lack:
            err.print(f"note: {', '.join(lack)} have no {form} form; left out", highlight=False,
                      markup=False)
        cells = have
    return select(cells, variants, form), named


def parse_variants(text: str, *, irc: bool = False, ihc: bool = False,
                   allowed: Sequence[str] | None = None, why: str = "",
                   baseline_beside: bool = False) -> list[str]:
    """--variant: baseline, irc, ihc, a comma list, or all (every variant in ``allowed``, by
    default all three). --irc/--ihc, where a command has them, name those variants instead.

    ``baseline_beside``: the commands that report each variant as a ratio to its baseline measure
    the baseline too, first, whether or not it was named."""
    from rnnbench.cells.registry import VARIANTS

    if irc or ihc:
        chosen = [v for v, on in (("irc", irc), ("ihc", ihc)) if on]
    else:
        chosen = parse_choices(text, "--variant", tuple(allowed or VARIANTS), noun="variant",
                               known=VARIANTS, why=why)
    if baseline_beside:
        chosen = ["baseline"] + [v for v in chosen if v != "baseline"]
    return chosen


def parse_backends(text: str) -> list[str]:
    """--backend: eager, compile, native, fused, triton (or another registered one), a comma
    list, or all."""
    from rnnbench.backends import BACKENDS, renamed_note

    for name in split_list(text, "--backend"):
        if note := renamed_note(name.lower()):
            raise RnnbenchError(note)
    return parse_choices(text, "--backend", tuple(BACKENDS), noun="backend")


def parse_folds(text: str) -> list[str]:
    """--fold: auto, on, off, or a comma list (IRC cells on the fused backends; others: auto)."""
    from rnnbench.case import FOLDS

    return parse_choices(text, "--fold", FOLDS, noun="fold")


def parse_modes(text: str) -> list[str]:
    """--mode: fwd, fwd+bwd, bwd, a comma list, or all."""
    from rnnbench.bench.speed import MODES

    return parse_choices(text, "--mode", MODES, noun="mode")


# -- dtype and device ------------------------------------------------------------------------------
def dtype_option(text: str) -> str:
    """--dtype: a name or alias (fp32, bf16, half) into its canonical name (float32, ...)."""
    from rnnbench.devices import dtype_name, parse_dtype

    return dtype_name(parse_dtype(text))


def device_option(text: str):
    """--device: cpu, cuda, cuda:N (or mps) into a torch.device this machine has, or one line
    saying why not."""
    from rnnbench.devices import resolve_device

    return resolve_device(text)


def check_devices(devices: Iterable[str], *, what: str = "the suite") -> str:
    """Fail early, not once per case, when ``what`` (a suite, a task config) wants a device this
    machine lacks. Returns the device the environment is recorded for."""
    from rnnbench.suite import check_device

    devices = sorted(set(devices))
    for d in devices:
        check_device(d, what)
    cuda = [d for d in devices if d.startswith("cuda")]
    if cuda or "mps" in devices:
        import torch
        if cuda and not torch.cuda.is_available():
            raise DeviceError(f"{what} runs on {cuda[0]}, but torch sees no CUDA device "
                              f"(torch {torch.__version__}); --device cpu runs it here")
        if "mps" in devices and not torch.backends.mps.is_available():
            raise DeviceError(f"{what} runs on mps, which this torch cannot use; "
                              "--device cpu runs it here")
    return cuda[0] if cuda else ("mps" if "mps" in devices else "cpu")


def form_for_backends(form: str | None, backends: Sequence[str]) -> str:
    """--form, given or not, with --backend: native is torch.nn.GRU/LSTM, which compute the
    canonical form, so without --form it measures that form (and says so); with --form paper it
    would measure nothing, which is refused."""
    if form is not None:
        form = parse_one(form, "--form", ("paper", "canonical"))
        if form == "paper" and list(backends) == ["native"]:
            raise RnnbenchError("--backend native computes the canonical form (torch.nn.GRU/LSTM), "
                                "not the paper's: use --form canonical")
        return form
    if "native" in backends:
        note("--backend native computes the canonical form of GRU and LSTM: measuring --form "
             "canonical")
        return "canonical"
    return "paper"
