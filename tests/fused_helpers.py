"""What the fused-backend and Triton-kernel tests share: a stack with every α different, and one
loss whose gradients reach every output, final state, parameter, input and initial state."""

from __future__ import annotations

import torch

from rnnbench.runner import RecurrentStack


def perturbed_stack(spec, N, Ms, dtype, seed=0, **opts):
    """The stack, with θ_α moved off its constant initial value so that every α differs (a bug
    that mixes up α's entries would otherwise go unseen)."""
    torch.manual_seed(seed)
    stack = RecurrentStack(spec, N, Ms, **opts).to(dtype)
    with torch.no_grad():
        for cell in stack.layers:
            if hasattr(cell.connection, "theta_alpha"):
                cell.connection.theta_alpha.add_(torch.randn_like(cell.connection.theta_alpha))
    return stack


def run_with_grads(stack, x, state, fn):
    """Outputs, finals and gradients of a fixed random projection of outputs and final states."""
    x = x.detach().clone().requires_grad_(True)
    state = [tuple(s.detach().clone().requires_grad_(True) for s in st) for st in state]
    stack.zero_grad(set_to_none=True)
    out, finals = fn(stack, x, state)
    g = torch.Generator().manual_seed(1)
    loss = (out.double() * torch.randn(out.shape, generator=g, dtype=torch.float64)).sum()
    for st in finals:
        for s in st:
            loss = loss + (s.double() * torch.randn(s.shape, generator=g, dtype=torch.float64)).sum()
    loss.backward()
    res = {"out": out.detach()}
    for l, st in enumerate(finals):
        for i, s in enumerate(st):
            res[f"final{l}.{i}"] = s.detach()
    res["grad x"] = x.grad
    for l, st in enumerate(state):
        for i, s in enumerate(st):
            res[f"grad state{l}.{i}"] = s.grad
    for name, p in stack.named_parameters():
        res[f"grad {name}"] = p.grad
    return res
