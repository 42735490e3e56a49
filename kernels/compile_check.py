"""Compile every Triton kernel for a GPU target without a GPU: front end, TTGIR, LLVM, PTX, ptxas.

    python -m kernels.compile_check [--arch 90] [--families gru,lstm] [--all-configs]

Catches what the interpreter cannot (typing of loop-carried values, constexpr branches, tl.dot
shapes, register spills, compiler crashes) on a machine without a GPU. Prints registers and spill
stack per kernel (from cuobjdump). Must run without TRITON_INTERPRET. An LLVM assertion aborts the
process: the last line printed names the kernel being compiled.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--families", default="all", help="comma-separated, or all (every declared family)")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--precision", default="ieee", choices=["ieee", "tf32"])
    ap.add_argument("--all-configs", action="store_true", help="every autotuning configuration")
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "") not in ("", "0"):
        print("unset TRITON_INTERPRET: this compiles the kernels", file=sys.stderr)
        return 2

    import triton
    from triton.backends.compiler import GPUTarget

    import kernels
    import kernels.irc_triton as kt
    from rnnbench.cells import declared_families, get_family

    target = GPUTarget("cuda", args.arch, 32)
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    f32_ptrs = {"GHD_IN", "GC_IN", "GHD_OUT", "GC_OUT", "DCT", "DH0", "DC0", "DIRN", "DIR"}
    int_args = {"B", "M", "T", "N", "K", "KZ", "GM"}

    def compile_one(fn, dt, consts, warps):
        sig = {}
        for name in fn.arg_names:
            if name in consts:
                sig[name] = "constexpr"
            elif name in int_args or name.startswith("stride"):
                sig[name] = "i32"
            else:
                sig[name] = "*fp32" if name in f32_ptrs else "*" + dt
        k = triton.compile(triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=consts),
                           target=target, options=dict(num_warps=warps))
        usage = "?"
        if os.path.exists(tool):
            with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
                f.write(k.asm["cubin"])
                f.flush()
                out = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True,
                                     text=True).stdout
            usage = " ".join(w for w in out.split() if w.startswith(("REG:", "STACK:")))
        return usage

    step_cfgs = kt._STEP_CONFIGS if args.all_configs else kt._STEP_CONFIGS[:1]
    mps = sorted({16, max(16, triton.next_power_of_2(kernels.PERSISTENT_MAX_M))})
    fams = ([f for f in declared_families() if f.has_triton] if args.families == "all"
            else [get_family(n) for n in args.families.split(",")])
    for family in fams:
        fam = family.name
        fwd = dict(kt._forward_constants(family), PREC=args.precision, UPCAST=False)
        bwd = dict(kt._backward_constants(family), PREC=args.precision, UPCAST=False)
        for dt in args.dtypes.split(","):
            for bb, bm, bk, w in step_cfgs:
                blocks = dict(BLOCK_B=bb, BLOCK_M=bm, BLOCK_K=bk)
                print(f"{fam} {dt} _fwd_step {blocks} warps={w}: ", end="", flush=True)
                print(compile_one(kt._fwd_step, dt, {**fwd, **blocks}, w), flush=True)
                # (HAS_NEXT, NEXT_PRODUCT, NEXT_DIRECT): folded and full feedback send δ_{t+1} back
                # through a product; diagonal feedback (SRU, T-LSTM) unfolded IRC through a direct
                # term only, IHC through both
                variants = [(True, True, False), (False, True, False)]
                if family.diagonal_feedback:
                    variants += [(True, False, True), (True, True, True)]
                for has_next, prod, direct in variants:
                    print(f"{fam} {dt} _bwd_step {blocks} HAS_NEXT={has_next} NEXT_PRODUCT={prod} "
                          f"NEXT_DIRECT={direct} warps={w}: ", end="", flush=True)
                    consts = {**bwd, **blocks, "HAS_NEXT": has_next, "NEXT_PRODUCT": prod,
                              "NEXT_DIRECT": direct}
                    print(compile_one(kt._bwd_step, dt, consts, w), flush=True)
            for mp in mps:
                cfgs = [triton.Config(dict(BLOCK_B=bb), num_warps=w) for bb, w in kt._PERSISTENT_CONFIGS]
                cfgs = kt._prune_persistent(cfgs, {}, MP=mp)
                if not args.all_configs:
                    cfgs = cfgs[:1]
                for c in cfgs:
                    bb, w = c.kwargs["BLOCK_B"], c.num_warps
                    for fn, consts in ((kt._fwd_persistent, fwd), (kt._bwd_persistent, bwd)):
                        print(f"{fam} {dt} {fn.__name__} MP={mp} BLOCK_B={bb} warps={w}: ", end="",
                              flush=True)
                        print(compile_one(fn, dt, {**consts, "BLOCK_B": bb, "MP": mp}, w),
                              flush=True)
    # the first product of the two-product steps: independent of the family
    for dt in args.dtypes.split(","):
        for bb, bn, bk, w in step_cfgs:
            blocks = dict(BLOCK_B=bb, BLOCK_N=bn, BLOCK_K=bk)
            for ihc in (False, True):
                for diag in (False, True):
                    consts = {**blocks, "IHC": ihc, "DIAG": diag, "PREC": args.precision,
                              "UPCAST": False}
                    for fn in (kt._mix_step, kt._dd_step):
                        print(f"{'ihc' if ihc else 'irc'}{' diag' if diag else ''} {dt} {fn.__name__} "
                              f"{blocks} warps={w}: ", end="", flush=True)
                        print(compile_one(fn, dt, consts, w), flush=True)
    print("all compiled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
