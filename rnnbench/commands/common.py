"""What every command shares: the error boundary, consoles, and option parsing."""

from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console

from rnnbench.errors import RnnbenchError

# tables on stdout, progress and messages on stderr, so stdout can be piped
# piped output is not cut to 80 columns: wide tables stay one line per row in logs
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


def cli_errors(fn):
    """Turn a user error into one line on stderr and its exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RnnbenchError as e:
            print(f"rnnbench: error: {e}", file=sys.stderr)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            print("rnnbench: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper


def parse_int_list(text: str, what: str) -> list[int]:
    """'512' or '400,1150,400' into positive integers."""
    parts = [p for p in text.replace(" ", "").split(",") if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise RnnbenchError(f"{what} must be integers separated by commas, got {text!r}")
    values = [int(p) for p in parts]
    if any(v <= 0 for v in values):
        raise RnnbenchError(f"{what} must be positive, got {text!r}")
    return values


def hidden_sizes_option(text: str, layers: int | None) -> list[int]:
    """--hidden-size (one M, or one per layer) with --layers: the per-layer hidden sizes."""
    if layers is not None and layers <= 0:
        raise RnnbenchError(f"--layers must be positive, got {layers}")
    hs = parse_int_list(text, "--hidden-size")
    if len(hs) == 1 and layers:
        return hs * layers
    if layers is not None and layers != len(hs):
        raise RnnbenchError(f"--layers {layers} does not match {len(hs)} hidden sizes")
    return hs


def choose_variants(variant: str, irc: bool, ihc: bool) -> list[str]:
    """--irc/--ihc are shorthands: the baseline is always shown beside them for the ratio."""
    if irc or ihc:
        return ["baseline"] + (["irc"] if irc else []) + (["ihc"] if ihc else [])
    if variant == "all":
        return ["baseline", "irc", "ihc"]
    from rnnbench.cells.registry import VARIANTS
    if variant not in VARIANTS:
        raise RnnbenchError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}, all")
    return [variant] if variant == "baseline" else ["baseline", variant]
