"""The command line: a thin Typer app. Each command lives in rnnbench/commands/<name>.py and adds
itself through ``register(app)``; measuring logic lives in rnnbench/bench.

Start-up stays fast: the command modules import torch, pandas, matplotlib and triton only inside
the commands that use them, so ``--help`` and ``--version`` answer in a fraction of a second
(tests/test_cli_fast.py checks that importing this module imports none of them).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Optional

import typer

try:  # typer 0.2x carries its own copy of click; older ones use the click package
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover - depends on the typer installed
    from click import exceptions as _click_errors

app = typer.Typer(
    name="rnnbench",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # help texts are plain text: with Rich markup, "[[target]]" and "[TASK]" would be eaten
    rich_markup_mode=None,
)


def version_text() -> str:
    """'rnnbench 0.1.0', plus the commit (and whether it has local changes) in a git checkout."""
    import rnnbench
    from rnnbench.envinfo import git_info

    git = git_info()
    text = f"rnnbench {rnnbench.__version__}"
    if git.get("commit"):
        text += f" (commit {git['commit'][:12]}{', modified' if git.get('dirty') else ''})"
    return text


def _show_version(value: bool) -> None:
    if value:
        print(version_text())
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", "-V", is_eager=True,
                                           callback=_show_version,
                                           help="print the version (and git commit) and exit"),
    debug: bool = typer.Option(False, "--debug", help="show the traceback behind an error "
                               "(also RNNBENCH_DEBUG=1)"),
) -> None:
    """Count, time and measure recurrent cells: GRU, LSTM, SRU, T-LSTM, FastGRNN, PRU, each as
    baseline, with the input residual connection (IRC) and the input highway connection (IHC).

    Shell completion: rnnbench --install-completion (bash, zsh, fish, PowerShell)."""
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


def _one_line_usage_error(e) -> int:
    """A usage error as one line on stderr (CI logs), with where to find the right spelling."""
    ctx = e.ctx
    where = ctx.command_path if ctx is not None else "rnnbench"
    message = " ".join(e.format_message().split())
    print(f"rnnbench: error: {message} (see {where} --help)", file=sys.stderr)
    return e.exit_code


def main(args: list[str] | None = None) -> None:
    """The console script. On a terminal, usage errors look as click draws them; elsewhere they
    are one line, exit code 2."""
    if sys.stderr.isatty():
        app(args=args)
        return
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="rnnbench", standalone_mode=False)
    except _click_errors.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # a bare `rnnbench`: the help is the answer
            e.show()
            sys.exit(e.exit_code)
        sys.exit(_one_line_usage_error(e))
    except _click_errors.ClickException as e:
        print(f"rnnbench: error: {e.format_message()}", file=sys.stderr)
        sys.exit(e.exit_code)
    except typer.Abort:
        print("rnnbench: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
