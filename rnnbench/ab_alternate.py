"""One round of `rnnbench ab --mode alternate`: both sides' cells in ONE process, sampled in turn.

Where base and head differ only in a user's cell module (each side a folder holding it, rnnbench
itself shared), both versions can live in one process: each side's module is imported from its
own folder, and the two are timed sample by sample in alternation (the order of each pair drawn
at random). A slow spell of the machine then falls on both sides alike, at the scale of one
sample rather than one process, which is what a noisy shared machine needs. Several rounds (fresh
processes) still guard against a bias that one process could give one side, such as where its
weights landed in memory.

    python -m rnnbench.ab_alternate SUITE BASE_DIR HEAD_DIR BASE_JSON HEAD_JSON SEED

writes one ordinary result file per side, as `rnnbench run` would.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch

from rnnbench import backends, envinfo
from rnnbench.bench.timing import TimingStats, Timer, clock_for
from rnnbench.case import Case
from rnnbench.errors import RnnbenchError
from rnnbench.results import ResultFile, write_outputs
from rnnbench.runner import RecurrentStack
from rnnbench.usercell import is_user_cell, spec_for_class, user_class

SIDES = ("base", "head")


def _forget(dirs: list[Path]) -> None:
    """Drop the modules imported from the side folders, so the next import reads the other's."""
    real = [d.resolve() for d in dirs]
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if f and any(Path(f).resolve().is_relative_to(d) for d in real):
            del sys.modules[name]


def side_specs(cell: str, dirs: dict[str, Path]) -> dict:
    """Each side's CellSpec of ``cell``, its module imported from that side's folder only."""
    out = {}
    folders = list(dirs.values())
    for side, d in dirs.items():
        _forget(folders)
        sys.path.insert(0, str(d))
        try:
            out[side] = spec_for_class(cell, user_class(cell))
        finally:
            sys.path.remove(str(d))
    return out


def _call(stack: RecurrentStack, mode: str):
    params = [p for p in stack.parameters() if p.requires_grad]
    if mode == "fwd":
        def fwd(x):
            with torch.inference_mode():
                return stack(x)[0]
        return fwd
    if mode == "fwd+bwd":
        def step(x):
            with torch.enable_grad():
                return torch.autograd.grad(backends.training_loss(stack(x)[0]), params)
        return step
    raise RnnbenchError(f"--mode alternate times fwd and fwd+bwd, not {mode}")


def measure_pair(case: Case, specs: dict, settings: dict, rng: random.Random) -> dict:
    """Both sides' samples of one case, taken in alternation; the rows' metrics per side."""
    s = {"min_run_time": 1.0, "input_sets": 4, "seed": 0, **settings}
    xs = backends.make_inputs(case, s["input_sets"], seed=s["seed"] + 1)
    fns, inner = {}, {}
    for side in SIDES:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s["seed"])
            stack = RecurrentStack(specs[side], case.input_size, case.hidden_sizes)
        fns[side] = _call(stack.to(dtype=xs[0].dtype), case.mode)
        # warm-up and autorange once per side: the calls per sample stay fixed from here on
        inner[side] = Timer(min_run_time=0.05, min_samples=3).measure(fns[side], xs).inner
    clock = clock_for(case.device)
    samples = {side: [] for side in SIDES}
    k = 0
    spent = 0.0
    while spent < s["min_run_time"] or len(samples["base"]) < 5:
        order = list(SIDES)
        rng.shuffle(order)
        for side in order:
            fn, n = fns[side], inner[side]
            chunk = [xs[(k + i) % len(xs)] for i in range(n)]
            clock.start()
            for x in chunk:
                fn(x)
            dt = clock.stop()
            samples[side].append(dt / n)
            spent += dt
        k += 1
    out = {}
    for side in SIDES:
        stats = TimingStats(samples[side], inner=inner[side], input_sets=len(xs))
        m = stats.metrics()
        m["tokens_per_s"] = case.batch * case.seq_len / stats.median
        m["threads"] = torch.get_num_threads()
        out[side] = m
    return out


def main(argv: list[str]) -> int:
    from rnnbench.suite import parse_suite, read_toml

    suite, base_dir, head_dir, base_json, head_json, seed = argv
    # as given, not resolved: the two sides' links are paths of one length (ab.Plan.side_path)
    dirs = {"base": Path(base_dir).absolute(), "head": Path(head_dir).absolute()}
    rng = random.Random(int(seed))
    sys.path.insert(0, str(dirs["head"]))  # the suite names the cells; they import as the head's
    s = parse_suite(read_toml(suite), suite)
    sys.path.remove(str(dirs["head"]))
    cases = list(s.cases)
    rng.shuffle(cases)
    speed = s.settings.get("speed") if isinstance(s.settings.get("speed"), dict) else {}
    rows = {side: [] for side in SIDES}
    for case in cases:
        if case.bench != "speed" or not is_user_cell(case.cell):
            continue
        specs = side_specs(case.cell, dirs)
        per_side = measure_pair(case, specs, speed, rng)
        for side in SIDES:
            rows[side].append(case.row(metrics=per_side[side]))
    env = envinfo.collect("cpu")
    for side, path in (("base", base_json), ("head", head_json)):
        prov = {**envinfo.provenance(), "ab_side": side, "ab_mode": "alternate",
                "cell_folder": str(dirs[side])}
        write_outputs(ResultFile(env, prov, rows[side]), json_path=Path(path))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except RnnbenchError as e:
        print(f"rnnbench: error: {e}", file=sys.stderr)
        sys.exit(2)
