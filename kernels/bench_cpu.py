"""CPU timing of one training step (forward + backward): eager IRC-GRU, fused IRC-GRU, torch.nn.GRU.

    python -m kernels.bench_cpu [--threads 2] [--n 512] [--m 512] [--batch 32] [--steps 128] [--repeat 7]

Median wall time over `repeat` interleaved rounds after one warm-up, float32, the loss is out.sum().
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _time_interleaved(cases: dict, repeat: int) -> dict[str, list[float]]:
    """Run every case once per round, rounds `repeat` times, so load from other processes spreads
    over all cases alike. One warm-up run each first."""
    for fn in cases.values():
        fn()
    times = {name: [] for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv=None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--m", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--cell", default="gru")
    args = ap.parse_args(argv)

    from rnnbench.cells import get
    from rnnbench.fused import choose_fold, fused_forward, FAMILIES
    from rnnbench.runner import RecurrentStack

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    N, M, B, T = args.n, args.m, args.batch, args.steps
    x = torch.randn(T, B, N, requires_grad=True)
    stack = RecurrentStack(get(args.cell, "irc"), N, M)

    def step(fn):
        def run():
            out = fn()
            out.sum().backward()
        return run

    cases = {"eager IRC": step(lambda: stack(x)[0])}
    for fold in (True, False):
        cases[f"fused IRC fold={fold}"] = step(lambda fold=fold: fused_forward(stack, x, fold=fold)[0])
    if args.cell in ("gru", "lstm"):
        ref_cls = torch.nn.GRU if args.cell == "gru" else torch.nn.LSTM
        ref = ref_cls(N, M)
        cases[f"torch.nn.{ref_cls.__name__}"] = step(lambda: ref(x)[0])
    times = _time_interleaved(cases, args.repeat)
    results = {name: statistics.median(ts) for name, ts in times.items()}

    G = FAMILIES[args.cell].n_gates
    auto = choose_fold(G, N, M, tokens=T * B)
    print(f"{args.cell} N={N} M={M} B={B} T={T} threads={args.threads} float32, fwd+bwd, "
          f"median (min) of {args.repeat} interleaved rounds; fold='auto' picks fold={auto}")
    base = results["eager IRC"]
    for name, sec in results.items():
        print(f"  {name:24s} {sec * 1e3:9.1f} ms ({min(times[name]) * 1e3:7.1f})   "
              f"{base / sec:5.2f}x vs eager IRC")
    return results


if __name__ == "__main__":
    main()
