"""Correctness of the fast backends on this device: each against the eager runner, at several
sizes, outputs, final states and every gradient. Timing commands rely on the same comparison
(rnnbench.agreement, through rnnbench.backends.verify) before they time a backend; this is the full
report, one row per case."""

from __future__ import annotations

import torch

from rnnbench import agreement, fused
from rnnbench.backends import fused_runnable
from rnnbench.case import Case
from rnnbench.devices import parse_dtype, resolve_device
from rnnbench.outcome import Unsupported, classify
from rnnbench.runner import RecurrentStack

#: (T, B, N, M): tiny odd shapes where kernels may be interpreted, real sizes on a GPU.
#: Square-only cells take N = M from the M column.
SIZES = {
    "small": [(1, 1, 5, 7), (7, 3, 6, 9), (5, 2, 8, 8)],
    "gpu": [(16, 8, 100, 160), (64, 16, 256, 256), (32, 64, 512, 512), (8, 64, 1024, 1024)],
}
#: the backends verify checks, and the impl each runs ("auto": rnnbench.fused.pick_impl, as `fused`)
IMPLS = {"fused": "auto", "fused-torch": "torch", "fused-cpp": "cpp", "triton": "triton"}


def verify_cases(specs, backends, dtype: str, device: str, sizes: str, folds) -> list[Case]:
    cases = []
    for spec in specs:
        for backend in backends:
            for T, B, N, M in SIZES[sizes]:
                for fold in folds:
                    if fold != "auto" and spec.variant == "ihc":
                        continue  # IHC never folds: one row is enough
                    cases.append(Case("verify", spec.family, spec.variant, spec.form, backend,
                                      mode="fwd+bwd", dtype=dtype, device=device, batch=B,
                                      seq_len=T, input_size=M if spec.requires_square else N,
                                      hidden_size=M, layers=1, fold=fold))
    return cases


def _errors(case: Case, seed: int) -> dict[str, float]:
    device, dtype = resolve_device(case.device), parse_dtype(case.dtype)
    impl = IMPLS[case.backend]
    if impl == "auto":
        impl = fused.pick_impl(case.spec, device, dtype)
    ok, why = fused.supports(case.spec, impl=impl)
    if not ok:
        raise Unsupported(why)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        stack = RecurrentStack(case.spec, case.input_size, case.hidden_sizes)
        x = torch.randn(case.seq_len, case.batch, case.input_size)
    stack = stack.to(device=device, dtype=dtype)
    runnable = fused_runnable(stack, case.backend, impl=impl, fold=case.fold)
    return agreement.errors(runnable.run, stack, x.to(device=device, dtype=dtype), train=True,
                            params=list(stack.parameters()),
                            reference_params=list(stack.parameters()),
                            names=[n for n, _ in stack.named_parameters()], seed=seed)


def verify_case(case: Case, seed: int = 0):
    """One row: errors of every output, state and gradient; 'failed' beyond the tolerance."""
    try:
        errs = _errors(case, seed)
    except Exception as e:  # a refusal or a crash is this case's result, not the command's
        status, reason = classify(e)
        return case.row(status=status, reason=reason)
    tol = agreement.tolerance(case.dtype)
    grads = [v for k, v in errs.items() if k.startswith("grad")]
    states = [v for k, v in errs.items() if k.startswith("final")]
    metrics = {"out_rel_err": errs["out"], "state_rel_err": max(states, default=0.0),
               "grad_rel_err": max(grads, default=0.0), "tolerance": tol}
    worst, err = agreement.worst(errs)
    metrics["max_rel_err"] = err
    if not agreement.passes(errs, case.dtype):
        return case.row(metrics=metrics, status="failed",
                        reason=f"{worst} differs from eager by {err:.2g} (tolerance {tol:g})")
    return case.row(metrics=metrics, labels={"worst": worst})
