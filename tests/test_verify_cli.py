"""`rnnbench verify`: passes on correct kernels, exits 1 on a wrong one, 2 on bad input."""

import json

import pytest
import torch
from typer.testing import CliRunner

from rnnbench.bench import verify as verify_bench
from rnnbench.cli import app

runner = CliRunner()


def test_fused_passes_and_writes_rows(tmp_path):
    out = tmp_path / "v.json"
    r = runner.invoke(app, ["verify", "--backend", "fused", "--cell", "fastgrnn", "--json", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())["results"]
    # 3 sizes × (IRC: 3 fold paths + IHC: 1)
    assert len(rows) == 12 and all(row["status"] == "ok" for row in rows)
    assert all(row["metrics"]["grad_rel_err"] < 1e-4 for row in rows)


def test_triton_rows_cover_unfolded_and_ihc(tmp_path):
    """Under the Triton interpreter (conftest sets TRITON_INTERPRET=1) on CPU tensors: the unfolded
    (fold=off) and IHC kernels, full (GRU) and diagonal (SRU) feedback; fold=on is the folded path,
    which tests/test_kernels_interpret.py covers."""
    pytest.importorskip("triton")
    import kernels
    ok, why = kernels.available()
    if not ok:
        pytest.skip(why)
    out = tmp_path / "v.json"
    r = runner.invoke(app, ["verify", "--backend", "triton", "--cell", "gru,sru", "--fold", "auto,off",
                            "--json", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())["results"]
    # 2 cells × 3 sizes × (IRC: auto, off + IHC: auto)
    assert len(rows) == 18 and all(row["status"] == "ok" for row in rows), r.output
    paths = {(row["cell"], row["variant"], row["labels"].get("fold", "auto")) for row in rows}
    assert {("gru", "irc", "off"), ("sru", "irc", "off"), ("gru", "ihc", "auto"),
            ("sru", "ihc", "auto")} <= paths
    assert all(row["metrics"]["grad_rel_err"] < 1e-4 for row in rows)


def test_a_wrong_gradient_fails_the_command(monkeypatch):
    real = verify_bench._errors

    def broken(case, seed):
        errs = real(case, seed)
        assert "grad layers.0.W_FA" in errs
        errs["grad layers.0.W_FA"] = 0.5  # what a kernel with a wrong backward would report
        return errs

    monkeypatch.setattr(verify_bench, "_errors", broken)
    r = runner.invoke(app, ["verify", "--backend", "fused", "--cell", "fastgrnn", "--variant", "irc",
                            "--fold", "auto"])
    assert r.exit_code == 1
    assert "FAIL" in r.output and "0 passed, 3 failed" in r.output


def test_nan_fails(monkeypatch):
    monkeypatch.setattr(verify_bench, "_errors", lambda *a, **k: {"out": float("nan")})
    r = runner.invoke(app, ["verify", "--backend", "fused", "--cell", "gru", "--variant", "irc",
                            "--fold", "auto"])
    assert r.exit_code == 1


def test_bad_input_exits_2():
    for args in (["--backend", "eager"], ["--variant", "baseline"], ["--fold", "maybe"],
                 ["--cell", "nope"], ["--sizes", "huge"]):
        r = runner.invoke(app, ["verify", *args])
        assert r.exit_code == 2, (args, r.output)
    if not torch.cuda.is_available():
        r = runner.invoke(app, ["verify", "--device", "cuda"])
        assert r.exit_code == 2 and "cuda" in r.output.lower()
