"""Instructions per call of each CPU case, counted under valgrind's callgrind: the one measure of a
CPU that does not drift, so it can gate CI with a tolerance of a fraction of a percent and needs
no rounds (`speed --instructions`, `ab --instructions`).

One valgrind process counts a whole list of cases, so torch is imported (slowly, under valgrind)
once. The process starts with instrumentation off, which keeps the import at about 20 s instead of
70; once the first case is built it asks callgrind to instrument (`callgrind_control -i on`), and
for each case it warms up, then switches collection on around a fixed number of calls only
(torch's own valgrind hooks), and dumps a counter file per case. Hash seeds, threads and inputs are
fixed so that the same code gives the same count to well under 0.1%.

    python -m rnnbench.bench.instructions CASES_JSON OUT_JSON     (the child, under valgrind)
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rnnbench.errors import RnnbenchError

CALLS = 3        # calls counted per case (the count is per call)
WARMUP = 2       # calls before counting, with instrumentation on (first-call work is not the case's)
INSTALL = ("valgrind is not installed; on Debian or Ubuntu: apt-get install valgrind "
           "(instruction counts need callgrind)")


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def require() -> None:
    if not available():
        raise RnnbenchError(INSTALL)


def count(cases, *, path_first: Path | None = None, workdir: Path | None = None,
          timeout: float = 3600) -> dict[str, float]:
    """Instructions per call for each CPU case (case key -> count); cases on other devices and
    cases that fail to build are left out. ``path_first`` goes first on the child's Python path
    (a side of `rnnbench ab`)."""
    require()
    cases = [c for c in cases if str(c.device).startswith("cpu")]
    if not cases:
        return {}
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="rnnbench-callgrind-")) if own else workdir
    work.mkdir(parents=True, exist_ok=True)
    try:
        spec = work / "cases.json"
        result = work / "counted.json"
        spec.write_text(json.dumps([c.to_dict() for c in cases]), encoding="utf-8")
        env = dict(os.environ)
        paths = [str(path_first)] if path_first else []
        env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(
            os.pathsep) if p])
        env.update(PYTHONHASHSEED="0", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no",
               f"--callgrind-out-file={work}/callgrind.out", sys.executable, "-m",
               "rnnbench.bench.instructions", str(spec), str(result)]
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0 or not result.exists():
            tail = [ln for ln in proc.stderr.splitlines() if ln and not ln.startswith("==")]
            raise RnnbenchError("counting instructions failed: "
                                + (tail[-1] if tail else f"valgrind exited {proc.returncode}"))
        done = json.loads(result.read_text(encoding="utf-8"))
        return {key: _total(work / f"callgrind.out.{i}") / calls
                for i, (key, calls) in enumerate(done, 1)}
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def _total(path: Path) -> int:
    m = re.search(r"^summary:\s*(\d+)", path.read_text(encoding="utf-8", errors="replace"), re.M)
    if not m:
        raise RnnbenchError(f"counting instructions failed: no total in {path}")
    return int(m.group(1))


# -- the child, under valgrind ---------------------------------------------------------------------
def _child(spec_path: str, out_path: str) -> int:
    import torch

    from rnnbench import backends
    from rnnbench.case import Case

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cases = [Case(**{**d, "hidden_size": tuple(d["hidden_size"]) if isinstance(d["hidden_size"], list)
                     else d["hidden_size"], "options": tuple(tuple(o) for o in d["options"])})
             for d in json.loads(Path(spec_path).read_text(encoding="utf-8"))]
    done: list[tuple[str, int]] = []
    instrumenting = False
    for case in cases:
        try:
            x = backends.make_inputs(case, 1, seed=1)[0]
            runnable = backends.build(case, check=False, example=x)
        except Exception as e:  # noqa: BLE001 - a case that cannot run is left out, not fatal
            print(f"rnnbench: {case.key}: not counted ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        params = runnable.parameters()

        def call():
            if case.mode == "fwd":
                with torch.inference_mode():
                    runnable.forward(x)
            else:
                with torch.enable_grad():
                    torch.autograd.grad(backends.training_loss(runnable.forward(x)), params)

        call()
        if not instrumenting:
            subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            instrumenting = True
        for _ in range(WARMUP):
            call()
        # a garbage collection lands in whichever case's counted calls cross its threshold (any
        # change in what was imported moves it): collect before, and none while counting
        gc.collect()
        gc.disable()
        torch._C._valgrind_toggle()
        for _ in range(CALLS):
            call()
        torch._C._valgrind_toggle_and_dump_stats()
        gc.enable()
        done.append((case.key, CALLS))
    Path(out_path).write_text(json.dumps(done), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:3]))
