"""Whether a backend agrees with the eager runner: one comparison, one metric, one tolerance table.

The check before timing (:func:`rnnbench.backends.verify`) and `rnnbench verify`
(rnnbench/bench/verify.py) both call :func:`errors`: the backend and the eager reference run on the
same input, and each result is compared as ``‖got − eager‖ / ‖eager‖`` over the whole tensor: the
output, every final state and, when training, the gradient of the input and of every parameter, of
a loss that reaches all of them (a fixed random projection of the outputs and final states, so no
path is weighted away).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from rnnbench.devices import dtype_name

#: the largest relative error that passes, per dtype. float32: the issue's 1e-4. Lower precisions
#: get room for a sequence's worth of roundings fed from step to step.
TOLERANCE = {"float64": 1e-10, "float32": 1e-4, "bfloat16": 2e-2, "float16": 1e-2}

Run = Callable[[torch.Tensor], tuple]   # x -> (output, final states per layer, or None)


def tolerance(dtype: torch.dtype | str) -> float:
    name = dtype if isinstance(dtype, str) else dtype_name(dtype)
    return TOLERANCE.get(name, TOLERANCE["float32"])


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """‖got − want‖ / ‖want‖ in float64; inf for a shape mismatch or a non-finite result."""
    if got.shape != want.shape:
        return float("inf")
    got, want = got.detach().double(), want.detach().double()
    if not torch.isfinite(got).all():
        return float("inf")
    return float((got - want).norm() / want.norm().clamp_min(1e-30))


def _loss(out: torch.Tensor, finals, seed: int) -> torch.Tensor:
    g = torch.Generator(device="cpu").manual_seed(seed)
    loss = (out.double() * torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.device)).sum()
    for st in finals or ():
        for s in st:
            w = torch.randn(s.shape, generator=g, dtype=torch.float64).to(s.device)
            loss = loss + (s.double() * w).sum()
    return loss


def _states(finals) -> list[torch.Tensor]:
    return [s for st in finals or () for s in st]


def _grads(run: Run, x, params, *, seed: int):
    x = x.detach().requires_grad_(True)
    out, finals = run(x)
    grads = torch.autograd.grad(_loss(out, finals, seed), [x, *params], allow_unused=True)
    return out.detach(), [s.detach() for s in _states(finals)], grads


def errors(run: Run, reference: Run, x: torch.Tensor, *, train: bool,
           params: Sequence[torch.Tensor] = (), reference_params: Sequence[torch.Tensor] = (),
           names: Sequence[str] = (), seed: int = 0) -> dict[str, float]:
    """{"out": e, "final[i]": e, "grad x": e, "grad <name>": e, ...}: relative errors of ``run``
    against ``reference`` on input ``x``; gradients only when ``train`` (params aligned one to
    one with reference_params, named by names). A gradient present on one side only is inf; final
    states are compared when both sides return them."""
    if not train:
        with torch.no_grad():
            got, want = run(x), reference(x)
        errs = {"out": rel_err(got[0], want[0])}
        if got[1] is not None and want[1] is not None:
            errs.update(_state_errors(_states(got[1]), _states(want[1])))
        return errs
    if len(params) != len(reference_params):
        return {"parameter count": float("inf")}
    with torch.enable_grad():
        out, states, grads = _grads(run, x, list(params), seed=seed)
        r_out, r_states, r_grads = _grads(reference, x, list(reference_params), seed=seed)
    errs = {"out": rel_err(out, r_out)}
    if states and r_states:
        errs.update(_state_errors(states, r_states))
    for name, a, b in zip(["x", *names], grads, r_grads):
        if a is None and b is None:
            continue
        errs[f"grad {name}"] = float("inf") if a is None or b is None else rel_err(a, b)
    return errs


def _state_errors(got, want) -> dict[str, float]:
    if len(got) != len(want):
        return {"final states": float("inf")}
    return {f"final[{i}]": rel_err(a, b) for i, (a, b) in enumerate(zip(got, want))}


def worst(errs: dict[str, float]) -> tuple[str, float]:
    """The largest error and what it is of; NaN counts as the largest."""
    key = max(errs, key=lambda k: math.inf if math.isnan(errs[k]) else errs[k])
    return key, errs[key]


def passes(errs: dict[str, float], dtype) -> bool:
    return worst(errs)[1] <= tolerance(dtype)   # NaN fails too
