"""Correctness of the fast backends on this device: each against the eager runner, at several
sizes, outputs, final states and every gradient. Timing commands rely on the same comparison
(rnnbench.backends.verify) before they time a backend; this is the full report."""

from __future__ import annotations

import math

import torch

from rnnbench.backends import Unsupported, classify, one_line
from rnnbench.case import Case
from rnnbench.devices import parse_dtype, resolve_device
from rnnbench.runner import RecurrentStack

#: relative error ‖got − eager‖/‖eager‖ that passes, per dtype (issue: float32 under 1e-4)
TOLERANCE = {"float64": 1e-10, "float32": 1e-4, "bfloat16": 2e-2, "float16": 1e-2}

#: (T, B, N, M): tiny odd shapes where kernels may be interpreted, real sizes on a GPU.
#: Square-only cells take N = M from the M column.
SIZES = {
    "small": [(1, 1, 5, 7), (7, 3, 6, 9), (5, 2, 8, 8)],
    "gpu": [(16, 8, 100, 160), (64, 16, 256, 256), (32, 64, 512, 512), (8, 64, 1024, 1024)],
}


def verify_cases(specs, backends, dtype: str, device: str, sizes: str, folds) -> list[Case]:
    cases = []
    for spec in specs:
        for backend in backends:
            for T, B, N, M in SIZES[sizes]:
                for fold in folds:
                    if fold != "auto" and spec.variant == "ihc":
                        continue  # IHC never folds: one row is enough
                    cases.append(Case("verify", spec.family, spec.variant, spec.form, backend,
                                      mode=f"fold={fold}", dtype=dtype, device=device, batch=B,
                                      seq_len=T, input_size=M if spec.requires_square else N,
                                      hidden_size=M, layers=1))
    return cases


def verify_case(case: Case, seed: int = 0):
    """One row: errors of every output, state and gradient; 'failed' beyond the tolerance."""
    impl = {"fused": "torch", "triton": "triton"}[case.backend]
    fold = case.mode.removeprefix("fold=")
    fold = {"auto": "auto", "on": True, "off": False}[fold]
    try:
        from rnnbench import fused
        ok, why = fused.supports(case.spec, impl=impl)
        if not ok:
            raise Unsupported(why)
        device, dtype = resolve_device(case.device), parse_dtype(case.dtype)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            stack = RecurrentStack(case.spec, case.input_size, case.hidden_sizes)
            x = torch.randn(case.seq_len, case.batch, case.input_size)
        stack = stack.to(device=device, dtype=dtype)
        errs = fused.compare_with_eager(stack, x.to(device=device, dtype=dtype), fold=fold,
                                        impl=impl, seed=seed)
    except Exception as e:  # a refusal or a crash is this case's result, not the command's
        status, reason = classify(e) if not isinstance(e, ImportError) else ("unsupported", one_line(e))
        return case.row(status=status, reason=reason)
    tol = TOLERANCE[case.dtype]
    grads = [v for k, v in errs.items() if k.startswith("grad")]
    states = [v for k, v in errs.items() if k.startswith("final")]
    metrics = {"out_rel_err": errs["out"], "state_rel_err": max(states, default=0.0),
               "grad_rel_err": max(grads, default=0.0), "tolerance": tol}
    metrics["max_rel_err"] = max(metrics["out_rel_err"], metrics["state_rel_err"],
                                 metrics["grad_rel_err"])
    worst = max(errs, key=lambda k: errs[k] if not math.isnan(errs[k]) else math.inf)
    if not metrics["max_rel_err"] <= tol:  # NaN fails too
        return case.row(metrics=metrics, status="failed",
                        reason=f"{worst} differs from eager by {errs[worst]:.2g} (tolerance {tol:g})")
    return case.row(metrics=metrics, labels={"worst": worst})
