"""TOML suites: expansion order, exclusions, includes, dropped cases, settings, and the one-line
errors for malformed suites (exit 2 through the CLI)."""

import textwrap
import tomllib
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from rnnbench.cells.registry import all_specs
from rnnbench.cli import app
from rnnbench.errors import ConfigError
from rnnbench.results import read_results
from rnnbench.suite import load_suite, measure_kwargs

runner = CliRunner()

BASE = """
[meta]
bench = ["speed", "memory"]

[axes]
cell = ["gru", "lstm"]
variant = ["baseline", "irc"]
batch = [1, 4]
seq_len = [8]
input_equals_hidden = true
hidden_size = [16, 32]
"""


def write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def key_tuple(c):
    return (c.bench, c.cell, c.variant, c.batch, c.input_size, c.hidden_size)


def test_product_in_toml_order_with_bench_innermost(tmp_path):
    s = load_suite(write(tmp_path, BASE))
    assert s.name == "s"
    assert len(s.cases) == 2 * 2 * 2 * 2 * 2  # bench × cell × variant × batch × size
    # first axis varies slowest, [meta] bench fastest: written out by hand
    first = [key_tuple(c) for c in s.cases[:5]]
    assert first == [("speed", "gru", "baseline", 1, 16, 16), ("memory", "gru", "baseline", 1, 16, 16),
                     ("speed", "gru", "baseline", 1, 32, 32), ("memory", "gru", "baseline", 1, 32, 32),
                     ("speed", "gru", "baseline", 4, 16, 16)]
    assert all(c.input_size == c.hidden_size for c in s.cases)
    assert {c.backend for c in s.cases} == {"eager"} and {c.device for c in s.cases} == {"cpu"}
    assert len({c.key for c in s.cases}) == len(s.cases)


def test_reordering_axes_reorders_cases_but_not_the_set(tmp_path):
    a = load_suite(write(tmp_path, BASE, "a.toml"))
    swapped = BASE.replace('cell = ["gru", "lstm"]\n', "").replace(
        "seq_len = [8]\n", 'seq_len = [8]\ncell = ["gru", "lstm"]\n')
    b = load_suite(write(tmp_path, swapped, "b.toml"))
    assert [c.key for c in a.cases] != [c.key for c in b.cases]
    assert sorted(c.key for c in a.cases) == sorted(c.key for c in b.cases)
    # cell now varies inside batch, outside hidden_size × bench (2 × 2 cases per cell)
    assert [c.cell for c in b.cases[:9]] == ["gru"] * 4 + ["lstm"] * 4 + ["gru"]


def test_all_expands_to_the_registry_and_square_cells_are_dropped_with_a_note(tmp_path):
    s = load_suite(write(tmp_path, """
        [meta]
        bench = "speed"
        [axes]
        cell = "all"
        variant = "all"
        batch = 2
        seq_len = 4
        input_size = [8, 16]
        hidden_size = 16
    """))
    paper = [(sp.family, sp.variant) for sp in all_specs() if sp.form == "paper"]
    square = {(sp.family, sp.variant) for sp in all_specs() if sp.form == "paper" and sp.requires_square}
    got = [(c.cell, c.variant, c.input_size) for c in s.cases]
    want = [(f, v, n) for f, v in paper for n in (8, 16) if n == 16 or (f, v) not in square]
    assert got == want
    assert square and any("N ≠ M" in n and "sru/baseline" in n for n in s.notes)


def test_exclude_drops_only_cases_matching_every_key(tmp_path):
    s = load_suite(write(tmp_path, BASE + """
        [[exclude]]
        cell = "lstm"
        batch = 4

        [[exclude]]
        variant = "irc"
        hidden_size = [32]
        bench = "memory"
    """))
    tuples = {key_tuple(c) for c in s.cases}
    assert not any(t[1] == "lstm" and t[3] == 4 for t in tuples)
    assert not any(t[0] == "memory" and t[2] == "irc" and t[5] == 32 for t in tuples)
    assert ("speed", "gru", "irc", 4, 32, 32) in tuples
    assert ("memory", "lstm", "baseline", 1, 32, 32) in tuples
    # of 32 cases the first entry drops lstm × B4 (8), the second memory × irc × M32 (4, one of
    # them dropped already)
    assert len(s.cases) == 32 - 8 - 3


def test_exclude_that_matches_nothing_is_noted(tmp_path):
    s = load_suite(write(tmp_path, BASE + "\n[[exclude]]\nhidden_size = 1024\n"))
    assert len(s.cases) == 32 and s.notes == ["exclude #1 matches no case"]


def test_include_takes_the_axes_with_its_keys_replaced_and_escapes_excludes(tmp_path):
    s = load_suite(write(tmp_path, BASE + """
        [[exclude]]
        cell = "lstm"

        [[include]]
        cell = "lstm"
        variant = "baseline"
        form = "canonical"
        backend = ["eager", "native"]
        batch = 64
    """))
    extra = [c for c in s.cases if c.cell == "lstm"]
    assert len(extra) == 2 * 2 * 2  # backend × hidden_size × bench, all at B = 64
    assert {(c.form, c.batch) for c in extra} == {("canonical", 64)}
    assert {c.backend for c in extra} == {"eager", "native"}
    assert {c.hidden_size for c in extra} == {16, 32}


def test_forms_the_zoo_lacks_are_dropped_and_duplicates_kept_once(tmp_path):
    s = load_suite(write(tmp_path, """
        [meta]
        bench = "speed"
        [axes]
        cell = "gru"
        variant = ["baseline", "irc"]
        form = ["paper", "canonical"]
        batch = 1
        seq_len = 2
        input_equals_hidden = true
        hidden_size = 8
        [[include]]
        variant = "baseline"
        form = "paper"
    """))
    assert [(c.variant, c.form) for c in s.cases] == [("baseline", "paper"), ("baseline", "canonical"),
                                                      ("irc", "paper")]
    assert any("no canonical form" in n and "gru/irc" in n for n in s.notes)
    assert any("listed more than once" in n for n in s.notes)


def test_per_layer_stacks_and_options(tmp_path):
    s = load_suite(write(tmp_path, """
        [meta]
        bench = "speed"
        [axes]
        cell = ["lstm"]
        variant = ["baseline", "ihc"]
        batch = 1
        seq_len = 2
        input_size = 400
        hidden_size = [[1150, 1150, 400], 64]
        [options]
        gamma_input = "feedback"
    """))
    stack = [c for c in s.cases if c.layers == 3]
    assert [c.hidden_size for c in stack] == [(1150, 1150, 400)] * 2
    assert all(c.key.endswith("M1150-1150-400-L3") or "gamma_input" in c.key for c in stack)
    ihc = [c for c in s.cases if c.variant == "ihc"]
    assert ihc and all(dict(c.options) == {"gamma_input": "feedback"} for c in ihc)
    assert all(c.options == () for c in s.cases if c.variant == "baseline")  # not an LSTM option


def test_shipped_suites_cover_what_they_promise():
    quick = load_suite("bench_configs/quick.toml")
    paper = {(sp.family, sp.variant) for sp in all_specs() if sp.form == "paper"}
    assert {(c.cell, c.variant) for c in quick.cases} == paper
    assert {c.bench for c in quick.cases} == {"speed", "memory"}
    assert {c.backend for c in quick.cases} == {"eager"}
    assert len(quick.cases) == 2 * len(paper) and quick.notes == []

    cpu = load_suite("bench_configs/cpu.toml")
    assert {c.batch for c in cpu.cases} == {1, 32} and {c.seq_len for c in cpu.cases} == {64}
    assert {(c.input_size, c.hidden_size) for c in cpu.cases} == {(128, 128), (256, 256), (512, 512)}
    assert {(c.cell, c.form) for c in cpu.cases if c.backend == "native"} == {
        ("gru", "canonical"), ("lstm", "canonical")}

    gpu = load_suite("bench_configs/gpu.toml")
    assert {c.device for c in gpu.cases} == {"cuda"}
    assert {c.hidden_size for c in gpu.cases} == {64, 128, 256, 512, 1024, 2048}
    assert {c.batch for c in gpu.cases} == {16, 64} and {c.seq_len for c in gpu.cases} == {25, 256, 1024}
    assert {c.dtype for c in gpu.cases} == {"float32", "bfloat16"}
    assert {"eager", "native", "fused", "triton"} <= {c.backend for c in gpu.cases}


def test_with_device_moves_every_case(tmp_path):
    s = load_suite(write(tmp_path, BASE.replace('seq_len = [8]', 'seq_len = [8]\ndevice = ["cuda:1"]')))
    moved = s.with_device("cpu")
    assert [c.key for c in moved.cases] == [c.key for c in s.cases]
    assert {c.device for c in s.cases} == {"cuda:1"} and {c.device for c in moved.cases} == {"cpu"}


def test_two_devices_in_one_suite_are_refused(tmp_path):
    # a case key does not name the device, so the two rows would overwrite each other in one file
    p = write(tmp_path, BASE.replace('seq_len = [8]', 'seq_len = [8]\ndevice = ["cpu", "cuda"]'))
    with pytest.raises(ConfigError, match=r"\[axes\] device: .* both cpu and cuda"):
        load_suite(p)


# -- settings --------------------------------------------------------------------------------------
@dataclass
class FakeSpeed:
    min_run_time: float = 1.0
    warmup: int = 2
    check: bool = True


def fake_measure(case, *, speed: FakeSpeed | None = None, other=None):
    return case.row()


def test_settings_fill_the_dataclass_their_keyword_is_typed_with():
    kw = measure_kwargs(fake_measure, {"speed": {"min_run_time": 2, "check": False}, "other": 3})
    assert kw == {"speed": FakeSpeed(min_run_time=2, check=False), "other": 3}


@pytest.mark.parametrize("settings, message", [
    ({"sped": {}}, "[settings]: unknown key 'sped'; allowed: speed, other"),
    ({"speed": {"min_runtime": 1}},
     "[settings.speed]: unknown key 'min_runtime'; allowed: min_run_time, warmup, check"),
    ({"speed": {"warmup": 1.5}}, "[settings.speed]: warmup = 1.5 is not a int"),
    ({"speed": {"check": 1}}, "[settings.speed]: check = 1 is not a bool"),
    ({"speed": {"min_run_time": "long"}}, "[settings.speed]: min_run_time = 'long' is not a float"),
])
def test_bad_settings_are_named(settings, message):
    with pytest.raises(ConfigError) as e:
        measure_kwargs(fake_measure, settings)
    assert str(e.value) == message


def test_shipped_settings_fit_the_real_measure():
    from rnnbench.bench.dispatch import measure
    from rnnbench.bench.speed import SpeedSettings
    for name in ("quick", "cpu", "gpu"):
        kw = measure_kwargs(measure, load_suite(f"bench_configs/{name}.toml").settings)
        assert isinstance(kw["speed"], SpeedSettings)


# -- malformed suites through the CLI: one line, exit 2 --------------------------------------------
BAD = [
    ("[meta]\nbench='speed'\n[axis]\ncell='gru'\n", "unknown table 'axis'; allowed: meta, axes"),
    (BASE.replace("cell =", "cells ="), "[axes]: unknown key 'cells'; allowed: bench, cell, variant"),
    (BASE.replace('"lstm"', '"lstmm"'), "[axes] cell: unknown value 'lstmm'; allowed: gru, lstm, sru"),
    (BASE.replace("batch = [1, 4]", "batch = [1, -4]"), "[axes] batch: -4 is not a positive integer"),
    (BASE.replace("batch = [1, 4]", "batch = [1, 4]\ndevice = 'gpu'"),
     "[axes] device: unknown value 'gpu'; allowed: cpu, cuda, cuda:N, mps"),
    (BASE.replace("batch = [1, 4]", "batch = [1, 4]\nbackend = 'cudnn'"),
     "[axes] backend: unknown value 'cudnn'; allowed: eager, compile, native, fused, triton"),
    (BASE.replace("batch = [1, 4]", "batch = [1, 4]\nmode = 'train'"),
     "[axes] mode: unknown value 'train'"),
    (BASE.replace("batch = [1, 4]", "batch = [1, 4]\ndtype = 'fp32'"),
     "[axes] dtype: unknown value 'fp32'"),
    (BASE.replace('["speed", "memory"]', '["speed", "latency"]'),
     "[meta] bench: unknown value 'latency'"),
    (BASE.replace("hidden_size = [16, 32]\n", ""), "[axes]: missing 'hidden_size'"),
    (BASE.replace("input_equals_hidden = true", "input_equals_hidden = 'yes'"),
     "[axes] input_equals_hidden: 'yes' is not true or false"),
    (BASE.replace("input_equals_hidden = true", "input_equals_hidden = false"),
     "[axes]: missing 'input_size' (or input_equals_hidden = true)"),
    (BASE + "input_size = [3]\n", "[axes] input_size: given with input_equals_hidden = true"),
    (BASE + "[[include]]\nlayers = 2\nhidden_size = [[4, 8]]\n",
     "[[include]] #1 layers: given with per-layer hidden sizes"),
    (BASE + "[[exclude]]\nceil = 'gru'\n", "[[exclude]] #1: unknown key 'ceil'"),
    (BASE + "[[exclude]]\n", "[[exclude]] #1: is empty (it would drop every case)"),
    (BASE + "[[include]]\nbatch = 0\n", "[[include]] #1 batch: 0 is not a positive integer"),
    (BASE + "[options]\ngama_input = 'h'\n",
     "[options]: unknown cell option 'gama_input'; allowed: gamma_input"),
    (BASE.replace("[meta]", "[meta]\nnmae = 'x'"),
     "[meta]: unknown key 'nmae'; allowed: name, description"),
    ("[meta]\nbench = 'speed'\n[axes\n", "not valid TOML"),
]


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize("text, message", BAD)
def test_malformed_suites_are_one_line_and_exit_2(tmp_path, command, text, message):
    p = write(tmp_path, text, "bad.toml")
    extra = ["--json", str(tmp_path / "o.json")] if command == "run" else []
    r = runner.invoke(app, [command, str(p), *extra])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    assert lines[0].startswith(f"rnnbench: error: {p}")
    if message:
        assert message in lines[0], lines[0]
    assert not (tmp_path / "o.json").exists()


def test_layers_with_a_stack_and_bench_given_twice_say_why(tmp_path):
    text = BASE.replace("hidden_size = [16, 32]", "hidden_size = [[16, 32]]") + "layers = [2]\n"
    with pytest.raises(ConfigError, match=r"\[axes\] layers: given with per-layer hidden sizes"):
        load_suite(write(tmp_path, text))
    text = BASE.replace("[axes]", "[axes]\nbench = 'speed'")
    with pytest.raises(ConfigError, match=r"\[meta\] bench: given in both \[meta\] and \[axes\]"):
        load_suite(write(tmp_path, text))


def test_missing_suite_file_is_exit_2(tmp_path):
    r = runner.invoke(app, ["plan", str(tmp_path / "nope.toml")])
    assert r.exit_code == 2
    assert r.stderr.strip() == f"rnnbench: error: no such suite file: {tmp_path / 'nope.toml'}"


def test_plan_lists_every_case_and_the_count(tmp_path):
    p = write(tmp_path, BASE)
    r = runner.invoke(app, ["plan", str(p)])
    assert r.exit_code == 0, r.output
    s = load_suite(p)
    assert all(c.key in r.stdout for c in s.cases)
    assert r.stdout.strip().splitlines()[-1].startswith("32 cases;")


def test_run_evaluates_a_parameter_table(tmp_path):
    out = tmp_path / "t.json"
    r = runner.invoke(app, ["run", "bench_configs/paper_table2.toml", "--json", str(out)])
    assert r.exit_code == 0, r.output
    with open("bench_configs/paper_table2.toml", "rb") as f:
        ids = [row["id"] for row in tomllib.load(f)["rows"]]
    rows = read_results(out).results
    assert [row.labels["id"] for row in rows] == ids
    assert all(row.bench == "params" and row.metrics["params"] > 0 for row in rows)
    r = runner.invoke(app, ["run", "bench_configs/paper_table2.toml", "--shard", "1/2"])
    assert r.exit_code == 2 and "parameter table" in r.stderr
