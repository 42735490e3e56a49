"""Compile every Triton kernel for a GPU target without a GPU: front end, TTGIR, LLVM, PTX, ptxas.

    python -m kernels.compile_check [--arch 90] [--families gru,lstm] [--all-configs]

Catches what the interpreter cannot (typing of loop-carried values, constexpr branches, tl.dot
shapes, register spills, compiler crashes) on a machine without a GPU. Prints registers and spill
stack per kernel (from cuobjdump). Must run without TRITON_INTERPRET. An LLVM assertion aborts the
process: the last line printed names the kernel being compiled. The families are the declared ones
(rnnbench/cells/); each is compiled into the generic kernels as it will run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import kernels
from rnnbench.cells import declared_families, get_family

F32_POINTERS = {"GHD_IN", "GC_IN", "GHD_OUT", "GC_OUT", "DCT", "DH0", "DC0", "DIRN", "DIR"}
INT_ARGS = {"B", "M", "T", "N", "K", "KZ", "GM"}


class Compiler:
    """Compiles one kernel at a time for ``arch`` and reports its registers and spill stack."""

    def __init__(self, arch: int):
        import triton
        from triton.backends.compiler import GPUTarget
        self.triton = triton
        self.target = GPUTarget("cuda", arch, 32)
        self.tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin",
                                 "cuobjdump")

    def signature(self, fn, dt, consts) -> dict:
        sig = {}
        for name in fn.arg_names:
            if name in consts:
                sig[name] = "constexpr"
            elif name in INT_ARGS or name.startswith("stride"):
                sig[name] = "i32"
            else:
                sig[name] = "*fp32" if name in F32_POINTERS else "*" + dt
        return sig

    def usage(self, label: str, fn, dt, consts, warps) -> None:
        print(f"{label}: ", end="", flush=True)
        source = self.triton.compiler.ASTSource(fn=fn, signature=self.signature(fn, dt, consts),
                                                constexprs=consts)
        k = self.triton.compile(source, target=self.target, options=dict(num_warps=warps))
        usage = "?"
        if os.path.exists(self.tool):
            with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
                f.write(k.asm["cubin"])
                f.flush()
                out = subprocess.run([self.tool, "--dump-resource-usage", f.name],
                                     capture_output=True, text=True).stdout
            usage = " ".join(w for w in out.split() if w.startswith(("REG:", "STACK:")))
        print(usage, flush=True)


def _step_kernels(cc: Compiler, kt, family, dt, fwd, bwd, step_cfgs) -> None:
    fam = family.name
    for bb, bm, bk, w in step_cfgs:
        blocks = dict(BLOCK_B=bb, BLOCK_M=bm, BLOCK_K=bk)
        cc.usage(f"{fam} {dt} _fwd_step {blocks} warps={w}", kt._fwd_step, dt, {**fwd, **blocks}, w)
        # (HAS_NEXT, NEXT_PRODUCT, NEXT_DIRECT): folded and full feedback send δ_{t+1} back
        # through a product; diagonal feedback unfolded IRC through a direct term only, IHC both
        variants = [(True, True, False), (False, True, False)]
        if family.diagonal_feedback:
            variants += [(True, False, True), (True, True, True)]
        for has_next, prod, direct in variants:
            consts = {**bwd, **blocks, "HAS_NEXT": has_next, "NEXT_PRODUCT": prod,
                      "NEXT_DIRECT": direct}
            cc.usage(f"{fam} {dt} _bwd_step {blocks} HAS_NEXT={has_next} NEXT_PRODUCT={prod} "
                     f"NEXT_DIRECT={direct} warps={w}", kt._bwd_step, dt, consts, w)


def _persistent_kernels(cc: Compiler, kt, family, dt, fwd, bwd, mps, all_configs) -> None:
    for mp in mps:
        cfgs = [cc.triton.Config(dict(BLOCK_B=bb), num_warps=w) for bb, w in kt._PERSISTENT_CONFIGS]
        cfgs = kt._prune_persistent(cfgs, {}, MP=mp)
        for c in cfgs if all_configs else cfgs[:1]:
            bb, w = c.kwargs["BLOCK_B"], c.num_warps
            for fn, consts in ((kt._fwd_persistent, fwd), (kt._bwd_persistent, bwd)):
                cc.usage(f"{family.name} {dt} {fn.__name__} MP={mp} BLOCK_B={bb} warps={w}", fn, dt,
                         {**consts, "BLOCK_B": bb, "MP": mp}, w)


def _two_product_kernels(cc: Compiler, kt, dt, precision, step_cfgs) -> None:
    """The first product of the two-product steps: independent of the family."""
    for bb, bn, bk, w in step_cfgs:
        blocks = dict(BLOCK_B=bb, BLOCK_N=bn, BLOCK_K=bk)
        for ihc in (False, True):
            for diag in (False, True):
                consts = {**blocks, "IHC": ihc, "DIAG": diag, "PREC": precision, "UPCAST": False}
                for fn in (kt._mix_step, kt._dd_step):
                    cc.usage(f"{'ihc' if ihc else 'irc'}{' diag' if diag else ''} {dt} {fn.__name__} "
                             f"{blocks} warps={w}", fn, dt, consts, w)


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
    # imported here: Triton must see TRITON_INTERPRET unset (checked above) when first imported
    import kernels.irc_triton as kt

    cc = Compiler(args.arch)
    step_cfgs = kt._STEP_CONFIGS if args.all_configs else kt._STEP_CONFIGS[:1]
    mps = sorted({16, max(16, cc.triton.next_power_of_2(kernels.PERSISTENT_MAX_M))})
    fams = ([f for f in declared_families() if f.has_triton] if args.families == "all"
            else [get_family(n) for n in args.families.split(",")])
    for family in fams:
        fwd = dict(kt._forward_constants(family), PREC=args.precision, UPCAST=False)
        bwd = dict(kt._backward_constants(family), PREC=args.precision, UPCAST=False)
        for dt in args.dtypes.split(","):
            _step_kernels(cc, kt, family, dt, fwd, bwd, step_cfgs)
            _persistent_kernels(cc, kt, family, dt, fwd, bwd, mps, args.all_configs)
    for dt in args.dtypes.split(","):
        _two_product_kernels(cc, kt, dt, args.precision, step_cfgs)
    print("all compiled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
