"""Memory of one training step (forward, loss, gradients of every parameter).

- ``saved_bytes``: what autograd keeps for backward, counted exactly on any device with
  ``torch.autograd.graph.saved_tensors_hooks``: the distinct storages of every saved tensor, each
  counted once at its full size (a saved view keeps its whole storage alive), leaving out the
  parameters and the input batch, which exist whether or not backward runs.
  ``saved_tensors`` is how many tensors were saved (one storage may be saved many times).
- ``param_bytes``: the distinct parameter storages.
- CUDA: ``peak_allocated_bytes`` / ``peak_reserved_bytes``: ``max_memory_allocated`` /
  ``max_memory_reserved`` during one step after ``reset_peak_memory_stats``, minus what was
  allocated / reserved just before it (model, inputs, one warm-up step already done).
- CPU: ``peak_rss_bytes``: the step's peak resident memory over a baseline, in a fresh process
  (``python -m rnnbench.bench.memory --case-json ...``): build, one warm-up step, reset the
  high-water mark (``/proc/self/clear_refs``), read VmRSS as the baseline, one step, read VmHWM.
  The child runs with a fixed glibc mmap threshold, so freed tensors go back to the system and the
  baseline does not hide memory that the warm-up step left in malloc's free lists.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass

import torch

from rnnbench import backends
from rnnbench.backends import training_loss
from rnnbench.case import Case
from rnnbench.devices import resolve_device, set_threads, synchronize
from rnnbench.outcome import guarded, one_line
from rnnbench.results import Row


@dataclass
class MemorySettings:
    rss: bool = True            # CPU: measure peak RSS in a fresh subprocess
    rss_timeout_s: float = 600.0
    check: bool = True          # verify non-eager backends against eager first
    seed: int = 0
    threads: int | None = None  # CPU threads in the subprocess (default: this process's)


@dataclass
class Saved:
    bytes: int
    tensors: int
    storages: int


def _storage_key(t: torch.Tensor):
    try:
        st = t.untyped_storage()
        return (t.device.type, t.device.index, st.data_ptr()), st.nbytes()
    except (RuntimeError, NotImplementedError):  # tensors without a storage of their own
        return ("id", id(t)), t.numel() * t.element_size()


def saved_tensor_bytes(fn, *, exclude=()) -> tuple[Saved, object]:
    """Run ``fn()`` with autograd recording; count what it saves for backward.

    Storages of the tensors in ``exclude`` (parameters, inputs) are left out. Returns the count
    and ``fn``'s result (keep it alive as long as the graph is needed)."""
    excluded = {_storage_key(t)[0] for t in exclude}
    seen: dict = {}
    count = 0

    def pack(t):
        nonlocal count
        count += 1
        key, nbytes = _storage_key(t)
        if key not in excluded:
            seen[key] = nbytes
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    return Saved(sum(seen.values()), count, len(seen)), result


def unique_bytes(tensors) -> int:
    seen = {}
    for t in tensors:
        key, nbytes = _storage_key(t)
        seen[key] = nbytes
    return sum(seen.values())


def measure_memory(case: Case, settings: MemorySettings | None = None) -> Row:
    settings = settings or MemorySettings()
    return guarded(case, lambda: _measure(case, settings))


def _measure(case: Case, s: MemorySettings) -> Row:
    device = resolve_device(case.device)
    set_threads(s.threads)
    x = backends.make_inputs(case, 1, seed=s.seed + 1)[0]
    train_case = case if case.mode != "fwd" else _with(case, mode="fwd+bwd")
    runnable = backends.build(train_case, check=s.check, seed=s.seed, example=x)
    params = runnable.parameters()
    saved, out = saved_tensor_bytes(lambda: runnable.forward(x), exclude=[*params, x])
    del out
    metrics = {"saved_bytes": saved.bytes, "saved_tensors": saved.tensors,
               "saved_bytes_per_token": saved.bytes / (case.batch * case.seq_len),
               "param_bytes": unique_bytes(params)}
    warnings: list[str] = []
    if device.type == "cuda":
        metrics.update(cuda_step_peak(runnable, x, device))
    elif s.rss and device.type == "cpu":
        rss = peak_rss_subprocess(case, s)
        if "error" in rss:
            warnings.append(f"peak RSS not measured: {rss['error']}")
        else:
            metrics.update(rss)
            if not rss.get("hwm_reset", True):
                warnings.append("could not reset the RSS high-water mark; peak is over the "
                                "high-water mark before the step (an underestimate)")
            metrics.pop("hwm_reset", None)
            if metrics["peak_rss_bytes"] < saved.bytes:
                warnings.append("peak RSS below the saved bytes: small tensors reuse memory malloc "
                                "kept from the warm-up step, so RSS resolves only large cases")
    return case.row(metrics=metrics, warnings=warnings)


def _with(case: Case, **changes) -> Case:
    return Case(**{**asdict(case), **changes})


def _train_step(runnable, x):
    return torch.autograd.grad(training_loss(runnable.forward(x)), runnable.parameters())


def cuda_step_peak(runnable, x, device) -> dict:
    with torch.enable_grad():
        grads = _train_step(runnable, x)  # warm-up: cuBLAS workspaces, cuDNN plans
    del grads
    gc.collect()
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base_alloc = torch.cuda.memory_allocated(device)
    base_reserved = torch.cuda.memory_reserved(device)
    with torch.enable_grad():
        grads = _train_step(runnable, x)
    synchronize(device)
    peak_alloc = torch.cuda.max_memory_allocated(device)
    peak_reserved = torch.cuda.max_memory_reserved(device)
    del grads
    return {"peak_allocated_bytes": peak_alloc - base_alloc,
            "peak_reserved_bytes": peak_reserved - base_reserved,
            "allocated_baseline_bytes": base_alloc, "reserved_baseline_bytes": base_reserved}


# -- CPU: peak RSS in a fresh process --------------------------------------------------------------
def _proc_status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # 5: reset the peak RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def case_to_json(case: Case) -> str:
    return json.dumps(asdict(case))


def case_from_json(text: str) -> Case:
    d = json.loads(text)
    if isinstance(d.get("hidden_size"), list):
        d["hidden_size"] = tuple(d["hidden_size"])
    d["options"] = tuple(tuple(kv) for kv in d.get("options", ()))
    return Case(**d)


def peak_rss_subprocess(case: Case, s: MemorySettings) -> dict:
    """Peak RSS of one training step, in a fresh interpreter; {'error': ...} when it cannot."""
    env = dict(os.environ)
    # a fixed threshold turns off glibc's adaptive one, so large blocks are always mmap'd and
    # returned on free: RSS then follows the live tensors
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(128 * 1024))
    env.setdefault("MALLOC_TRIM_THRESHOLD_", str(128 * 1024))
    cmd = [sys.executable, "-m", "rnnbench.bench.memory", "--case-json", case_to_json(case),
           "--seed", str(s.seed), "--threads", str(s.threads or torch.get_num_threads())]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=s.rss_timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"the subprocess took over {s.rss_timeout_s:g} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        if proc.returncode < 0:
            return {"error": f"the subprocess was killed by signal {-proc.returncode}"
                    + (" (out of memory?)" if proc.returncode == -9 else "")}
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        try:
            return {"error": json.loads(lines[-1])["error"]} if lines else {"error": tail[:300]}
        except (ValueError, KeyError):
            return {"error": tail[:300]}
    return json.loads(lines[-1])


def _child(case: Case, seed: int) -> dict:
    case = _with(case, mode="fwd+bwd")
    x = backends.make_inputs(case, 1, seed=seed + 1)[0]
    runnable = backends.build(case, check=False, seed=seed, example=x)
    with torch.enable_grad():
        grads = _train_step(runnable, x)
    del grads
    gc.collect()
    reset = _reset_hwm()
    base = _proc_status_kib("VmRSS")
    hwm_before = _proc_status_kib("VmHWM")
    with torch.enable_grad():
        grads = _train_step(runnable, x)
    hwm = _proc_status_kib("VmHWM")
    del grads
    if base is None or hwm is None:
        raise RuntimeError("/proc/self/status has no VmRSS/VmHWM here")
    ref = base if reset else max(base, hwm_before or 0)
    return {"peak_rss_bytes": max(0, hwm - ref) * 1024, "rss_baseline_bytes": base * 1024,
            "rss_hwm_bytes": hwm * 1024, "hwm_reset": reset}


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m rnnbench.bench.memory",
                                 description="peak RSS of one training step (used by rnnbench memory)")
    ap.add_argument("--case-json", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = _child(case_from_json(args.case_json), args.seed)
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        print(json.dumps({"error": one_line(e)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
