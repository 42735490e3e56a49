"""The command line: a thin Typer app. Each command lives in rnnbench/commands/<name>.py and adds
itself through ``register(app)``; measuring logic lives in rnnbench/bench."""

from __future__ import annotations

import importlib
import pkgutil

import typer

app = typer.Typer(
    name="rnnbench",
    help="Count, time and measure recurrent cells: GRU, LSTM, SRU, T-LSTM, FastGRNN, PRU, "
         "each as baseline, with the input residual connection (IRC) and the input highway "
         "connection (IHC).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="show the traceback behind an "
                                        "error (also RNNBENCH_DEBUG=1)")) -> None:
    if debug:
        import os
        os.environ["RNNBENCH_DEBUG"] = "1"


def _load_commands() -> None:
    import rnnbench.commands as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not mod.name.startswith("_") and mod.name != "common":
            module = importlib.import_module(f"{pkg.__name__}.{mod.name}")
            module.register(app)


_load_commands()


def main() -> None:
    """The console script. A usage mistake Click catches itself (`--dpi abc`, an unknown flag) is
    one line and exit 2 like every other bad input, instead of Click's usage block."""
    import sys

    from rnnbench.commands.common import click_exceptions

    click_error, usage_error, no_args = click_exceptions()
    try:
        code = app(standalone_mode=False)
    except no_args as e:
        e.show()
        code = 2
    except click_error as e:
        hint = "; --help lists the options" if isinstance(e, usage_error) else ""
        print(f"rnnbench: error: {' '.join(e.format_message().split())}{hint}", file=sys.stderr)
        code = e.exit_code
    except typer.Abort:
        print("rnnbench: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
