"""Issue #17: fused (C++ loops), fused-torch and torch.nn.LSTM/GRU on one thread, by CPU time.

Usage: python bench_configs/fused_cpp_cputime.py lstm,gru   (prints a markdown table)

Single-thread CPU time (time.process_time: this process's own CPU seconds, which neighbours on a
shared machine do not inflate the way they inflate wall time), median of reps; fwd under
inference_mode, fwd+bwd = forward + mean-square loss backward, as rnnbench speed times them."""
import statistics, sys, time, torch
from rnnbench.cells import get, get_family
from rnnbench.runner import RecurrentStack
from rnnbench.fused import fused_forward
torch.set_num_threads(1); torch.manual_seed(0)
T = 128
def cpu(f, reps):
    f()
    xs = []
    for _ in range(reps):
        t = time.process_time(); f(); xs.append(time.process_time() - t)
    return statistics.median(xs)
print("| cell | mode | B | M | fused (C++) | fused-torch | native | fused/native | fused-torch/native | fused/fused-torch |")
print("|---|---|---|---|---|---|---|---|---|---|")
for cell in sys.argv[1].split(","):
  for mode in ("fwd", "fwd+bwd"):
    for B, M in [(1, 64), (1, 256), (1, 512), (32, 256), (32, 512)]:
        nat = get_family(cell).native(M, M)     # torch.nn.LSTM / GRU, as the family declares
        st = RecurrentStack(get(cell, "irc"), M, M)
        x = torch.randn(T, B, M)
        reps = 7 if B * M * M >= 32 * 256 * 256 else 21
        def run(f):
            if mode == "fwd":
                with torch.inference_mode(): f()
            else:
                f().float().square().mean().backward()
        tn = cpu(lambda: run(lambda: nat(x)[0]), reps)
        tc = cpu(lambda: run(lambda: fused_forward(st, x, impl="cpp")[0]), reps)
        tt = cpu(lambda: run(lambda: fused_forward(st, x, impl="torch")[0]), reps)
        print(f"| IRC-{cell.upper()} | {mode} | {B} | {M} | {tc*1e3:.2f} ms | {tt*1e3:.2f} ms | {tn*1e3:.2f} ms | **{tc/tn:.2f}×** | {tt/tn:.2f}× | {tc/tt:.2f}× |", flush=True)
