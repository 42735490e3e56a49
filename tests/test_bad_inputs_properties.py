"""Property-based companions of test_bad_inputs.py (issue #13): random mutations of a valid suite
and of a valid result file, fed to the real command line, must give either a correct result or
one clear line with exit code 2 (3 for a schema compare cannot read), never a traceback or a
hang. The examples are few and small, so the file runs in seconds."""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rnnbench.cli import app
from test_bad_inputs import SUITE, result_json

runner = CliRunner()
FAST = settings(max_examples=50, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def clean_outcome(r, ok_codes=(0,)) -> None:
    """A correct result, or one line on stderr and exit 2 (or 3); nothing raised past the CLI."""
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    if r.exit_code in ok_codes:
        return
    assert r.exit_code in (2, 3), (r.exit_code, r.output)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("rnnbench: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], r.stderr
    assert len([ln for ln in lines if not ln.startswith("rnnbench: note")]) == 1, r.stderr


# -- suites ----------------------------------------------------------------------------------------
TOML_VALUES = ["-1", "0", "1", "2.5", "nan", "inf", "-inf", "1e999", "10000000000", '"two"', '""',
               "true", "false", "[]", "[0]", '[1, "a"]', "[[4, 4]]", "[[]]", "{ a = 1 }",
               '["all"]', '"gru"', "[2.5]", "1979-05-27", '"\\u00e9"']
LINES = textwrap.dedent(SUITE).splitlines()
VALUE_LINES = [i for i, ln in enumerate(LINES) if " = " in ln]


def _byte_mutation():
    return st.tuples(st.integers(0, len(SUITE) - 1), st.sampled_from(["insert", "delete", "replace"]),
                     st.binary(min_size=1, max_size=3))


@FAST
@given(edits=st.lists(st.tuples(st.sampled_from(VALUE_LINES), st.sampled_from(TOML_VALUES)),
                      min_size=1, max_size=3))
def test_a_suite_with_wrong_values_plans_or_says_one_line(edits):
    lines = list(LINES)
    for i, value in edits:
        key = lines[i].split(" = ", 1)[0]
        lines[i] = f"{key} = {value}"
    _plan("\n".join(lines).encode())


@FAST
@given(muts=st.lists(_byte_mutation(), min_size=1, max_size=4))
def test_a_suite_with_random_bytes_changed_plans_or_says_one_line(muts):
    data = bytearray(textwrap.dedent(SUITE).encode())
    for pos, kind, blob in muts:
        pos = min(pos, len(data))
        if kind == "insert":
            data[pos:pos] = blob
        elif kind == "delete":
            del data[pos:pos + len(blob)]
        else:
            data[pos:pos + len(blob)] = blob
    _plan(bytes(data))


def _plan(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "s.toml"
        p.write_bytes(content)
        r = runner.invoke(app, ["plan", str(p), "-q"])
        clean_outcome(r)
        if r.exit_code == 2:
            assert "s.toml" in r.stderr.splitlines()[-1]


# -- result files ----------------------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


BASE = json.loads(result_json())
PATHS = [p for p in _paths(BASE) if p]


@FAST
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), JSON_VALUES), min_size=1, max_size=3),
       command=st.sampled_from(["compare", "merge"]))
def test_a_result_file_with_wrong_values_reads_or_says_one_line(edits, command):
    doc = json.loads(result_json())
    for path, value in edits:
        target = doc
        try:
            for k in path[:-1]:
                target = target[k]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit replaced a parent of this path
    _read(json.dumps(doc, allow_nan=True).encode(), command)


@FAST
@given(muts=st.lists(st.tuples(st.integers(0, 4000), st.binary(min_size=1, max_size=2)),
                     min_size=1, max_size=4),
       command=st.sampled_from(["compare", "merge"]))
def test_a_result_file_with_random_bytes_changed_reads_or_says_one_line(muts, command):
    data = bytearray(result_json().encode())
    for pos, blob in muts:
        pos = min(pos, len(data) - 1)
        data[pos:pos + len(blob)] = blob
    _read(bytes(data), command)


def _read(content: bytes, command: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        bad, good = Path(d) / "bad.json", Path(d) / "good.json"
        bad.write_bytes(content)
        good.write_text(result_json())
        args = (["compare", str(good), str(bad)] if command == "compare"
                else ["merge", str(Path(d) / "m.json"), str(good), str(bad)])
        before = {p.name: p.read_bytes() for p in Path(d).iterdir()}
        r = runner.invoke(app, args)
        # compare: 1 is a verdict (a regression); merge: 0 only
        clean_outcome(r, ok_codes=(0, 1) if command == "compare" else (0,))
        if r.exit_code != 0 or command == "compare":
            assert {p.name: p.read_bytes() for p in Path(d).iterdir()} == before
        if r.exit_code in (2, 3):
            assert "bad.json" in r.stderr.splitlines()[-1] or "conflicting" in r.stderr
        os.environ.pop("RNNBENCH_DEBUG", None)


CSV_CELLS = ["", "fast", "-1", "0", "nan", "inf", "1e999", "True", "2.5", "4-4", "a,b", '"', "x" * 3]


@FAST
@given(edits=st.lists(st.tuples(st.integers(1, 3), st.integers(0, 20), st.sampled_from(CSV_CELLS)),
                      min_size=1, max_size=3))
def test_a_csv_result_file_with_wrong_cells_reads_or_says_one_line(edits):
    from rnnbench.results import to_csv
    from test_bad_inputs import rows

    lines = to_csv(rows()).splitlines()
    table = [ln.split(",") for ln in lines]
    for r, c, value in edits:
        table[r][min(c, len(table[r]) - 1)] = value
    content = "\n".join(",".join(cells) for cells in table) + "\n"
    with tempfile.TemporaryDirectory() as d:
        bad, good = Path(d) / "bad.csv", Path(d) / "good.json"
        bad.write_text(content)
        good.write_text(result_json())
        r = runner.invoke(app, ["compare", str(good), str(bad)])
        clean_outcome(r, ok_codes=(0, 1))
        if r.exit_code == 2:
            assert "bad.csv" in r.stderr.splitlines()[-1]
