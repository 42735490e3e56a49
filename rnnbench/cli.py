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
    app()


if __name__ == "__main__":
    main()
