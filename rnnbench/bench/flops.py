"""FLOPs as torch.utils.flop_counter counts them: matrix products (mm, addmm, bmm, conv, sdpa) at
2 FLOPs per multiply-add; elementwise work (sigmoid, tanh, ⊙) is not counted.

Counted on the eager reference of a case, whatever backend is timed: torch.nn.GRU/LSTM on oneDNN
or cuDNN and fused kernels hide their products from the counter, and every backend computes the
same function, so one count gives comparable FLOP/s.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn: Callable, *args, **kwargs) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def flops_by_op(fn: Callable, *args, **kwargs) -> dict[str, int]:
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
