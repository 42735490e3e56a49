"""The CLI starts without torch: importing it, and asking any command for --help or the version,
imports none of the heavy modules. (The time budget itself is measured, not tested: importing
torch alone takes longer than the budget, so its absence is what keeps help fast.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "pandas", "matplotlib", "triton", "numpy")
COMMANDS = ("speed", "memory", "run", "verify", "task", "params", "compare", "plot", "plan",
            "targets", "merge", "list", "env")


def _heavy_after(code: str) -> list[str]:
    probe = code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_importing_the_cli_imports_no_heavy_module():
    assert _heavy_after("import rnnbench.cli") == []


def test_help_of_every_command_imports_no_heavy_module():
    code = "\n".join([
        "import contextlib, io",
        "from typer.main import get_command",
        "import rnnbench.cli as cli",
        "cmd = get_command(cli.app)",
        "for args in [['--help'], ['--version']] + [[c, '--help'] for c in %r]:" % (COMMANDS,),
        "    with contextlib.redirect_stdout(io.StringIO()) as buf:",
        "        cmd.main(args=args, prog_name='rnnbench', standalone_mode=False)",
        "    assert buf.getvalue().strip(), args",
    ])
    assert _heavy_after(code) == []


def test_task_help_defaults_are_train_configs():
    # the task command repeats TrainConfig's defaults so that its help needs no torch
    pytest.importorskip("torch")
    from rnnbench.backends import BACKENDS
    from rnnbench.commands.task import BACKEND_NAMES, TRAIN_DEFAULTS
    from rnnbench.tasks.train import TrainConfig

    cfg = TrainConfig()
    assert TRAIN_DEFAULTS == {k: getattr(cfg, k) for k in TRAIN_DEFAULTS}
    assert set(BACKEND_NAMES) <= set(BACKENDS) and BACKEND_NAMES[0] == "eager"
