"""The host side of the Triton kernels: the time loops that launch them, step by step.

Each entry point takes ``kt``, the kernel module as kernels._module() returns it (interpreted or
compiled), and one layer's tensors (:class:`kernels.Layer`, :class:`kernels.TwoProduct`). Kernels
are launched by name with named arguments (:func:`_launch`). Nothing here imports Triton.
"""

from __future__ import annotations

import os

import torch


def _launch(kt, name: str, grid, args: dict, *, dummy, **constants) -> None:
    """Launch kernel ``name`` of the kernel module ``kt`` (e.g. "fwd_step") with named arguments.
    A pointer the kernel's flags leave unread (no cell state, no β, ...) may be omitted: it gets
    ``dummy``, a valid tensor never dereferenced."""
    given = {**args, **constants}
    missing = [n for n in getattr(kt, "_" + name).arg_names if n not in given and n not in _TUNED]
    unknown = [n for n in missing if n not in _OPTIONAL]
    if unknown:  # pragma: no cover - a host-side bug
        raise TypeError(f"{name}: missing arguments {unknown}")
    getattr(kt, name)[grid](**given, **{n: dummy for n in missing})


#: constexprs the autotuner (or the interpreter configuration) supplies
_TUNED = {"BLOCK_B", "BLOCK_M", "BLOCK_N", "BLOCK_K"}
#: pointers a kernel reads or writes only under a flag (cell state, β, x, the next step, IHC, ...)
_OPTIONAL = {"CP", "CN", "XT", "BETA", "ZN", "V", "DIRN", "GHD_IN", "GC_IN", "GHD_OUT", "GC_OUT",
             "DXT", "UV", "GAM", "VEC", "HG", "GT", "KT", "Z", "DIR", "C0", "C", "X", "DX", "DC0",
             "DCT"}


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _step_grid(kt, B, width, col="BLOCK_M"):
    if kt.INTERPRET:
        return (_cdiv(B, kt._INTERP_STEP["BLOCK_B"]), _cdiv(width, kt._INTERP_STEP["BLOCK_M"]))
    return lambda meta: (_cdiv(B, meta["BLOCK_B"]), _cdiv(width, meta[col]))


def _persistent_grid(kt, B):
    if kt.INTERPRET:
        return (_cdiv(B, kt._INTERP_PERSISTENT_BLOCK_B),)
    return lambda meta: (_cdiv(B, meta["BLOCK_B"]),)


def _check(*tensors):
    for t in tensors:
        if t is not None and not t.is_contiguous():
            raise ValueError("kernels need contiguous tensors")


def _poison_on() -> bool:
    return os.environ.get("RNNBENCH_POISON", "") not in ("", "0")


def _poisoned(like, *shape, dtype=None):
    """A new output buffer; NaN-filled under RNNBENCH_POISON=1 so an element never written shows."""
    t = torch.empty(*shape, dtype=dtype or like.dtype, device=like.device)
    if _poison_on():
        t.fill_(float("nan"))
    return t


def _repoison(*bufs):
    """Reused scratch: refill before the launch that must write it, so a skipped write still shows."""
    if _poison_on():
        for b in bufs:
            if b is not None:
                b.fill_(float("nan"))




def _interp(kt, extra):
    return extra if kt.INTERPRET else {}


def _persistent_meta(kt, M):
    extra = dict(BLOCK_B=kt._INTERP_PERSISTENT_BLOCK_B) if kt.INTERPRET else {}
    return dict(MP=max(16, 1 << (M - 1).bit_length()), **extra)


def irc_forward(kt, layer, R, *, mode="step"):
    """Forward time loop of one folded IRC layer. Fills out[t] = h_t and (cell state) C[t+1] = c_t."""
    fam, wx, x, out, C = layer.family, layer.wx, layer.x, layer.out, layer.C
    T, B, W1 = wx.shape
    M = layer.h0.shape[-1]
    h0 = layer.h0.contiguous()
    _check(R, wx, x, C, out)
    consts = dict(kt._forward_constants(fam), **kt._dot_constants())
    optional = dict(BETA=layer.beta) if fam.has_beta else {}
    if mode == "persistent":
        args = dict(H0=h0, WX=wx, R=R, OUT=out, T=T, B=B, M=M, stride_wx=W1, **optional)
        if fam.has_c:
            args.update(C0=C, C=C)
        if fam.reads_x:
            args.update(X=x)
        _launch(kt, "fwd_persistent", _persistent_grid(kt, B), args, dummy=wx, **consts, **_persistent_meta(kt, M))
        return
    grid = _step_grid(kt, B, M)
    for t in range(T):
        hp = h0 if t == 0 else out[t - 1]
        args = dict(HP=hp, PIN=hp, WX=wx[t], W=R, HN=out[t], B=B, M=M, K=M, stride_wx=W1, **optional)
        if fam.has_c:
            args.update(CP=C[t], CN=C[t + 1])
        if fam.reads_x:
            args.update(XT=x[t])
        _launch(kt, "fwd_step", grid, args, dummy=wx, **consts, **_interp(kt, kt._INTERP_STEP))


def irc_backward(kt, layer, R, dout, dcT, dWX, *, mode="step"):
    """Reverse time loop of one folded IRC layer. Fills dWX[..., :GM] = δ_t and dWX[..., GM:] = d a_t.

    Returns (dh0, dc0 or None, dx or None): dx is the direct gradient of x (families reading x).
    """
    fam, wx, x, C, h0 = layer.family, layer.wx, layer.x, layer.C, layer.h0
    T, B, W1 = wx.shape
    M = h0.shape[-1]
    GM = fam.n_gates * M
    dout = dout.contiguous()
    _check(R, wx, x, layer.out, C, dWX)
    Hp = torch.cat((h0.unsqueeze(0), layer.out[:-1]), 0).contiguous()
    consts = dict(kt._backward_constants(fam), **kt._dot_constants())
    gc0 = _gc0(dcT, h0) if fam.has_c else None
    dx = _poisoned(wx, T, B, M) if fam.reads_x else None
    optional = dict(BETA=layer.beta) if fam.has_beta else {}
    if mode == "persistent":
        dh0 = _poisoned(wx, B, M, dtype=torch.float32)
        dc0 = _poisoned(wx, B, M, dtype=torch.float32) if fam.has_c else None
        args = dict(R=R, HPREV=Hp, WX=wx, DOUT=dout, DWX=dWX, DH0=dh0, T=T, B=B, M=M, stride_wx=W1,
                    **optional)
        if fam.has_c:
            args.update(C=C, DCT=gc0, DC0=dc0)
        if fam.reads_x:
            args.update(X=x, DX=dx)
        _launch(kt, "bwd_persistent", _persistent_grid(kt, B), args, dummy=wx, **consts, **_persistent_meta(kt, M))
        return dh0.to(h0.dtype), dc0.to(h0.dtype) if fam.has_c else None, dx
    grid = _step_grid(kt, B, M)
    carry = _Carries(wx, B, M, fam, gc0)
    for t in range(T - 1, -1, -1):
        carry.repoison_next()
        # folded, step t+1 reaches h_t only through δ_{t+1} R: Z = δ_{t+1} (inside dWX), V = R
        args = dict(ZN=dWX[t + 1] if t < T - 1 else dWX[t], V=R, HP=Hp[t], PIN=Hp[t], W=R, WX=wx[t],
                    DOUT=dout[t], DWX=dWX[t], B=B, M=M, K=M, KZ=GM, stride_wx=W1, stride_z=W1,
                    **carry.args(), **optional)
        _step_optional(args, fam, C, x, dx, t)
        _launch(kt, "bwd_step", grid, args, dummy=wx, HAS_NEXT=t < T - 1, NEXT_PRODUCT=True,
                NEXT_DIRECT=False, **consts, **_interp(kt, kt._INTERP_STEP))
        carry.swap()
    base = carry.ghd_now() if fam.h_direct else torch.zeros_like(h0, dtype=torch.float32)
    dh0 = torch.addmm(base, dWX[0, :, :GM].float(), R.float())
    return dh0.to(h0.dtype), carry.gc_now(h0.dtype), dx


def _step_optional(args, fam, C, x, dx, t):
    """The per-step pointers a family reads only under its flags, added to a _bwd_step launch."""
    if fam.has_c:
        args.update(CP=C[t], CN=C[t + 1])
    if fam.reads_x:
        args.update(XT=x[t], DXT=dx[t])


def _gc0(dcT, h0):
    return dcT.float().contiguous() if dcT is not None else torch.zeros_like(h0, dtype=torch.float32)


class _Carries:
    """float32 ping-pong pairs for the direct part of dh and for dc: a launch reads one, writes the
    other, then they swap."""

    def __init__(self, like, B, M, fam, gc0):
        self.fam, self.cur = fam, 0
        self.ghd = [_poisoned(like, B, M, dtype=torch.float32) for _ in range(2)] if fam.h_direct else None
        self.gcs = [gc0, _poisoned(like, B, M, dtype=torch.float32)] if fam.has_c else None

    def args(self) -> dict:
        cur, nxt = self.cur, 1 - self.cur
        a = {}
        if self.ghd is not None:
            a.update(GHD_IN=self.ghd[cur], GHD_OUT=self.ghd[nxt])
        if self.gcs is not None:
            a.update(GC_IN=self.gcs[cur], GC_OUT=self.gcs[nxt])
        return a

    def repoison_next(self):
        nxt = 1 - self.cur
        _repoison(self.ghd[nxt] if self.ghd else None, self.gcs[nxt] if self.gcs else None)

    def swap(self):
        self.cur = 1 - self.cur

    def ghd_now(self):
        return self.ghd[self.cur]

    def gc_now(self, dtype):
        return self.gcs[self.cur].to(dtype) if self.gcs is not None else None


def _mix_args(ops, hp, t, x, D, B, M, N) -> dict:
    args = dict(HP=hp, D=D, B=B, M=M, N=N)
    if not ops.diagonal:
        args.update(UV=ops.UV)
    if ops.vec is not None:
        args.update(VEC=ops.vec)
    if ops.ihc:
        args.update(GAM=ops.Gam, HG=ops.hg[t], XT=x[t])
    return args


def two_product_forward(kt, layer, ops):
    """Forward time loop of one unfolded-IRC or IHC layer: per step _mix_step (h_{t-1} → d_t) then
    _fwd_step (d_t W_gᵀ, gates, update). Fills out and C as :func:`irc_forward`."""
    fam, wx, x, out, C = layer.family, layer.wx, layer.x, layer.out, layer.C
    T, B, W1 = wx.shape
    M, N = layer.h0.shape[-1], ops.Wg.shape[1]
    h0 = layer.h0.contiguous()
    _check(wx, x, C, out, ops.Wg, ops.UV, ops.vec, ops.Gam, ops.hg)
    consts = dict(kt._forward_constants(fam), **kt._dot_constants())
    mix_consts = dict(IHC=ops.ihc, DIAG=ops.diagonal, **kt._dot_constants(), **_interp(kt, kt._INTERP_MIX))
    optional = dict(BETA=layer.beta) if fam.has_beta else {}
    D = _poisoned(wx, B, N)                    # d_t: written by _mix_step, read by _fwd_step
    grid, grid_n = _step_grid(kt, B, M), _step_grid(kt, B, N, "BLOCK_N")
    for t in range(T):
        hp = h0 if t == 0 else out[t - 1]
        _repoison(D)
        _launch(kt, "mix_step", grid_n, _mix_args(ops, hp, t, x, D, B, M, N), dummy=wx, **mix_consts)
        args = dict(HP=hp, PIN=D, WX=wx[t], W=ops.Wg, HN=out[t], B=B, M=M, K=N, stride_wx=W1,
                    **optional)
        if fam.has_c:
            args.update(CP=C[t], CN=C[t + 1])
        if fam.reads_x:
            args.update(XT=x[t])
        _launch(kt, "fwd_step", grid, args, dummy=wx, **consts, **_interp(kt, kt._INTERP_STEP))


def _next_operand(ops, N):
    """What step t+1 sends back to h_t: Z·V (a product, V and the width KZ of Z), and DIR
    (elementwise, diagonal feedback), or both."""
    if ops.ihc:
        return (ops.Gam, N) if ops.diagonal else (ops.V, 2 * N)
    return (None, 0) if ops.diagonal else (ops.UV, N)


def two_product_backward(kt, layer, ops, dout, dcT, dWX):
    """Reverse time loop of one unfolded-IRC or IHC layer: per step _dd_step (δ_{t+1} → DD_{t+1} and
    the rows Z, DIR) then _bwd_step. Fills dWX as :func:`irc_backward` and ops.DD = δ_t W_g."""
    fam, wx, x, C, h0 = layer.family, layer.wx, layer.x, layer.C, layer.h0
    T, B, W1 = wx.shape
    M, N = h0.shape[-1], ops.Wg.shape[1]
    GM = fam.n_gates * M
    dout = dout.contiguous()
    _check(wx, x, layer.out, C, dWX, ops.DD, ops.Wg, ops.D, ops.UV, ops.vec, ops.Gam, ops.V, ops.g,
           ops.Kgp)
    Hp = torch.cat((h0.unsqueeze(0), layer.out[:-1]), 0).contiguous()
    consts = dict(kt._backward_constants(fam), **kt._dot_constants())
    gc0 = _gc0(dcT, h0) if fam.has_c else None
    dx = _poisoned(wx, T, B, M) if fam.reads_x else None
    Vz, KZ = _next_operand(ops, N)
    Z = _poisoned(wx, B, KZ) if Vz is not None else None
    DIR = _poisoned(wx, B, M, dtype=torch.float32) if ops.diagonal else None
    dd_consts = dict(IHC=ops.ihc, DIAG=ops.diagonal, **kt._dot_constants(), **_interp(kt, kt._INTERP_MIX))
    grid, grid_n = _step_grid(kt, B, M), _step_grid(kt, B, N, "BLOCK_N")
    optional = dict(BETA=layer.beta) if fam.has_beta else {}

    def dd_launch(t):
        _repoison(Z, DIR)
        args = dict(DP=dWX[t], WG=ops.Wg, DD=ops.DD[t], B=B, N=N, GM=GM, stride_dp=W1)
        args.update({k: v for k, v in dict(VEC=ops.vec, Z=Z, DIR=DIR).items() if v is not None})
        if ops.ihc:
            args.update(GT=ops.g[t], KT=ops.Kgp[t])
        _launch(kt, "dd_step", grid_n, args, dummy=wx, **dd_consts)

    carry = _Carries(wx, B, M, fam, gc0)
    for t in range(T - 1, -1, -1):
        has_next = t < T - 1
        if has_next:
            dd_launch(t + 1)
        carry.repoison_next()
        args = dict(HP=Hp[t], PIN=ops.D[t], W=ops.Wg, WX=wx[t], DOUT=dout[t], DWX=dWX[t], B=B, M=M,
                    K=N, KZ=KZ, stride_wx=W1, stride_z=KZ, **carry.args(), **optional)
        args.update({k: v for k, v in dict(ZN=Z, V=Vz, DIRN=DIR).items() if v is not None})
        _step_optional(args, fam, C, x, dx, t)
        _launch(kt, "bwd_step", grid, args, dummy=wx, HAS_NEXT=has_next, NEXT_PRODUCT=Vz is not None,
                NEXT_DIRECT=ops.diagonal, **consts, **_interp(kt, kt._INTERP_STEP))
        carry.swap()
    # step 0 sends its gradient to h_0: the same two launches' worth, the second in torch
    dd_launch(0)
    dh0 = carry.ghd_now().clone() if fam.h_direct else torch.zeros_like(h0, dtype=torch.float32)
    if Vz is not None:
        dh0.addmm_(Z.float(), Vz.float())
    if ops.diagonal:
        dh0 += DIR
    return dh0.to(h0.dtype), carry.gc_now(h0.dtype), dx
