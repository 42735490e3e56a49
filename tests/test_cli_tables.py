"""Tables at 80 columns: nothing wider, no word or value broken across lines, columns dropped by
priority; COLUMNS honoured when piped; long notes cut to a tag, in full in the JSON."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SPEED_ROWS = '''
from rnnbench.results import Row
from rnnbench.commands.speed import speed_table
m = {"time_s_median": 0.207, "time_s_iqr": 0.0123, "time_s_min": 0.2, "n_samples": 9,
     "inner_repeats": 1, "tokens_per_s": 19800.0, "flop_per_s": 7.87e10}
warn = ["noisy: IQR is 36% of the median (over 10%); is the machine busy?",
        "drift: the machine's speed changed while it was timed (yardstick 1.31x slower after)"]
rows = [Row("speed", "gru", v, backend=b, mode="fwd+bwd", batch=32, seq_len=128, input_size=512,
            hidden_size=512, layers=1, metrics=dict(m), warnings=list(warn))
        for v in ("baseline", "irc") for b in ("eager", "fused")]
rows.append(Row("speed", "gru", "ihc", backend="native", mode="fwd+bwd", batch=32, seq_len=128,
                input_size=512, hidden_size=512, layers=1, status="unsupported",
                reason="native is torch.nn.GRU/LSTM; IHC-GRU has no torch implementation"))
speed_table(rows)
'''


def _stdout(args: list[str], columns: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns:
        env["COLUMNS"] = columns
    r = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def _table_cells(lines: list[str]) -> list[str]:
    """The text of each cell of each table line (between the box-drawing bars)."""
    cells = []
    for ln in lines:
        if "│" in ln or "┃" in ln:
            cells += [c.strip() for c in ln.replace("┃", "│").split("│")[1:-1]]
    return cells


def test_params_table_fits_80_columns():
    lines = _stdout(["-m", "rnnbench.cli", "params", "--cell", "gru", "--irc"], "80")
    assert max(map(len, lines)) <= 80
    assert {"GRU", "IRC-GRU", "1,574,400", "1,049,088", "−33.4%"} <= set(_table_cells(lines))


def test_speed_table_at_80_columns_breaks_no_value():
    lines = _stdout(["-c", SPEED_ROWS], "80")
    assert max(map(len, lines)) <= 80, "\n".join(lines)
    cells = set(_table_cells(lines))
    # the columns that matter stay, whole; the least telling ones went
    assert {"IRC-GRU", "207 ms", "1.00×", "unsupported", "noisy, drift"} <= cells
    header = next(ln for ln in lines if "┃" in ln)
    assert "median" in header and "FLOP/s" not in header
    # no value is split over two lines: every cell is a value, a tag or a whole word
    assert not any(c.endswith("-") or c in ("ms", "µs") for c in cells)


def test_columns_is_honoured_when_piped_and_200_without_it():
    assert max(map(len, _stdout(["-c", SPEED_ROWS], "100"))) <= 100
    wide = _stdout(["-c", SPEED_ROWS], None)
    assert 100 < max(map(len, wide)) <= 200
    assert "FLOP/s" in next(ln for ln in wide if "┃" in ln)


def test_long_notes_become_tags():
    from rnnbench.commands._tables import short_note

    assert short_note(["noisy: IQR is 36% of the median (over 10%); is the machine busy?",
                       "busy: others used 40% of this process's CPUs"]) == "noisy, busy"
    cut = short_note(["unsupported: native is torch.nn.GRU/LSTM; IHC-GRU has no torch implementation"])
    assert cut.startswith("native is torch.nn.GRU/LSTM;") and cut.endswith("…") and len(cut) <= 40
