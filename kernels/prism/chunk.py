"""Exact chunked PRISM in Triton: forward, backward, autograd Function (SPEC section 2).

Per head, state `h` is K x V (fla's column convention); L solver steps:

    delta = GELU solver of (v, u, p)                      (rebuilt on chip, never stored L times)
    h_t = alpha_t (I - beta1_t k1_t k1_t^T) h_{t-1} + sum_l beta_l,t k_l,t delta_l,t^T
    o_t = h_t^T (scale * q_t)

Kernels (launcher = kernel name without `_kernel`), chunk of BT tokens, N = ceil(T / BT) chunks:

forward
    prism_fwd_prep     parallel over chunks: chunk-local cumsum of g, deltas, A = diag(b1)(G< . K1 K1^T),
                       Tr = (I + A)^-1 (row-wise forward substitution, fp32), W = Tr diag(b1 gamma) K1,
                       Ub = Tr diag(b1) (Delta_1 - sum_{l>=2} (G< . K1 K_l^T) D_l), Sw = sum_{l>=2} (e K_l)^T D_l
    prism_fwd_h        sequential over chunks (parallel over B, H, V blocks): h_c (stored, fp32) and
                       V1 = Ub - W h_c (fla's v_new); h_{c+1} = gamma_C h_c + (e K1)^T V1 + Sw
    prism_fwd_o        parallel over chunks: O = gamma Qs h_c + sum_l (G<= . Qs K_l^T) V_l
backward (prism_bwd.md, phases A, B, C)
    prism_fwd_prep     again (Tr stored, Sw skipped) plus dVloc = P_1^T dO
    prism_bwd_dh       reverse sequential: dH_{c+1} stored, dV1 = dVloc + (e K1) dH_{c+1}, dh0
    prism_bwd_grads    parallel over chunks: dq, dk_l, dbeta_l, dg and, through the solver's chain rule,
                       dv, du, dp_l

Numerics: decays are exp of masked differences of the chunk-local cumulative log-decay (never a division
by gamma); the solve, the state and all intermediate products are float32 (tf32 dots for 16-bit inputs,
ieee for float32 inputs); no dot result is cast to 16 bits and then transposed into another dot (the
Triton 3.4-3.7.0 Hopper miscompile, SPEC section 6).

Status (version 1, NOTES.md): exact on an H100 for K = V = 64 (fwd and bwd, bf16 error <= 2.6e-3 up to
T = 16384) and for the K = V = 128 forward; the K, V > 64 backward raises Unsupported (shared memory);
3-30x slower than the fla peers (the 64-row forward substitution and the one-kernel gradient phase).

Triton reads TRITON_INTERPRET when `@triton.jit` decorates a function (`knobs.runtime.interpret` in
3.6), i.e. when this module is imported. Without CUDA this module therefore sets TRITON_INTERPRET=1
(unless the variable is already set) before defining its kernels, so the kernels run on CPU tensors
through the interpreter (slow: tiny shapes only).
"""
from __future__ import annotations

import os
from typing import Optional

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

__all__ = ["chunk_prism", "PrismChunkFunction", "chunk_prism_fwd", "chunk_prism_bwd"]

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
if INTERPRET:
    # Triton 3.6's interpreter holds kernel scalars as 1-element 1-d numpy arrays and converts them with
    # int(array), which numpy >= 2.4 refuses: `range(NT)` inside a kernel then raises TypeError. Convert
    # through the single element instead (only affects interpreted kernels).
    from triton.runtime import interpreter as _interp

    if not getattr(_interp._patch_lang_tensor, "_prism_patched", False):
        _orig_patch_lang_tensor = _interp._patch_lang_tensor

        def _patch_lang_tensor(tensor, scope):
            _orig_patch_lang_tensor(tensor, scope)
            scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

        _patch_lang_tensor._prism_patched = True
        _interp._patch_lang_tensor = _patch_lang_tensor

    # triton.language's own helpers (tl.sum, tl.cumsum, ...) are @jit functions decorated when triton is
    # first imported: if that happened before TRITON_INTERPRET was set (e.g. fla imported first), they are
    # compiled-mode JITFunctions and an interpreted kernel calling them fails ("Cannot call @triton.jit'd
    # outside of the scope of a kernel"). Re-wrap them for the interpreter.
    import sys as _sys

    from triton.runtime.jit import JITFunction as _JITFunction

    for _name, _mod in list(_sys.modules.items()):
        if _name == "triton.language" or _name.startswith("triton.language."):
            for _attr, _obj in list(vars(_mod).items()):
                if isinstance(_obj, _JITFunction) and not isinstance(_obj, _interp.InterpretedFunction):
                    setattr(_mod, _attr, _interp.InterpretedFunction(_obj.fn))
SQRT1_2 = tl.constexpr(0.7071067811865476)
INV_SQRT_2PI = tl.constexpr(0.3989422804014327)


# ----------------------------------------------------------------------------------------- helpers
@triton.jit
def _gelu(z):
    return 0.5 * z * (1.0 + tl.math.erf(z * SQRT1_2))


@triton.jit
def _gelu_grad(z):
    return 0.5 * (1.0 + tl.math.erf(z * SQRT1_2)) + z * tl.exp(-0.5 * z * z) * INV_SQRT_2PI


@triton.jit
def _rows(ptr, i_b, i_h, i_t, T, H: tl.constexpr, F: tl.constexpr, BT: tl.constexpr, BF: tl.constexpr):
    """Block pointer on rows [i_t*BT, i_t*BT+BT) of the (b, h) slice of a [B, T, H, F] tensor."""
    return tl.make_block_ptr(ptr + (i_b * T * H + i_h).to(tl.int64) * F, (T, F), (H * F, 1),
                             (i_t * BT, 0), (BT, BF), (1, 0))


@triton.jit
def _rows_t(ptr, i_b, i_h, i_t, T, H: tl.constexpr, F: tl.constexpr, BT: tl.constexpr, BF: tl.constexpr):
    """Transposed block pointer ([BF, BT]) on the same rows as `_rows` (loads X^T by pointer)."""
    return tl.make_block_ptr(ptr + (i_b * T * H + i_h).to(tl.int64) * F, (F, T), (1, H * F),
                             (0, i_t * BT), (BF, BT), (0, 1))


@triton.jit
def _vec(ptr, i_b, i_h, i_t, T, H: tl.constexpr, BT: tl.constexpr):
    """Block pointer on entries [i_t*BT, i_t*BT+BT) of the (b, h) slice of a [B, T, H] tensor."""
    return tl.make_block_ptr(ptr + (i_b * T * H + i_h).to(tl.int64), (T,), (H,), (i_t * BT,), (BT,), (0,))


@triton.jit
def _state(ptr, i_b, i_h, i_t, NT, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
           BK: tl.constexpr, BV: tl.constexpr, i_v):
    """Block pointer on the [BK, BV] state block of chunk i_t in a [B, NT, H, K, V] tensor."""
    return tl.make_block_ptr(ptr + ((i_b * NT + i_t) * H + i_h).to(tl.int64) * K * V, (K, V), (V, 1),
                             (0, i_v * BV), (BK, BV), (1, 0))


# ----------------------------------------------------------------------------------------- forward (i)
@triton.jit(do_not_specialize=["T"])
def prism_fwd_prep_kernel(
    k, v, u, p, beta, g, q, do,
    gc_out, w_out, ub_out, sw_out, tr_out, dvloc_out,
    scale, T,
    B: tl.constexpr, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, L: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    STORE_SW: tl.constexpr, STORE_TR: tl.constexpr, DVLOC: tl.constexpr, PREC: tl.constexpr,
):
    """State-independent chunk preparation (forward phase i / backward phase A).

    Grid (N, B*H). Writes gc [B,T,H] (chunk-local cumsum of g), W [B,T,H,K], Ub [B,T,H,V],
    optionally Sw [B,N,H,K,V] (fp32), Tr [B,T,H,BT] (fp32) and dVloc = P_1^T dO [B,T,H,V] (fp32).
    """
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NT = (T + BT - 1) // BT
    sk = B * T * H * K      # stride of the L axis of k / p
    sp = B * T * H * V
    sb = B * T * H
    o_i = tl.arange(0, BT)
    m_s = o_i[:, None] > o_i[None, :]

    b_g = tl.load(_vec(g, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
    b_gc = tl.cumsum(b_g, axis=0)
    tl.store(_vec(gc_out, i_b, i_h, i_t, T, H, BT), b_gc, boundary_check=(0,))
    b_gl = tl.sum(tl.where(o_i == BT - 1, b_gc, 0.), axis=0)        # log gamma_C (padding has g = 0)
    b_gam = tl.exp(b_gc)
    b_e = tl.exp(b_gl - b_gc)
    b_Gs = tl.where(m_s, tl.exp(tl.where(m_s, b_gc[:, None] - b_gc[None, :], 0.)), 0.)

    b_k1 = tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
    b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
    b_v = tl.load(_rows(v, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
    b_u = tl.load(_rows(u, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)

    # A = diag(b1) (G< . K1 K1^T); Tr = (I + A)^-1 by forward substitution, row by row
    b_S = tl.dot(b_k1, tl.trans(b_k1), input_precision=PREC)
    b_Tr = -tl.where(m_s, b_Gs * b_S * b_b1[:, None], 0.)
    for i in range(1, BT):
        b_a = tl.sum(tl.where((o_i == i)[:, None], b_Tr, 0.), axis=0)
        b_a = b_a + tl.sum(b_a[:, None] * b_Tr, axis=0)
        b_Tr = tl.where((o_i == i)[:, None], b_a[None, :], b_Tr)
    b_Tr = b_Tr + (o_i[:, None] == o_i[None, :]).to(tl.float32)

    # deltas and the intra-chunk writes of keys l >= 2
    b_r = b_v - b_u
    b_X = tl.zeros([BT, BV], dtype=tl.float32)
    b_Sw = tl.zeros([BK, BV], dtype=tl.float32)
    for l in tl.static_range(L):
        b_p = tl.load(_rows(p + l * sp, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
        b_d = _gelu(b_p * b_r)
        b_r = b_r - b_d
        if l == 0:
            b_X += b_d
        else:
            b_kl = tl.load(_rows(k + l * sk, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
            b_bl = tl.load(_vec(beta + l * sb, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
            b_D = b_d * b_bl[:, None]
            b_Bl = b_Gs * tl.dot(b_k1, tl.trans(b_kl), input_precision=PREC)
            b_X -= tl.dot(b_Bl, b_D, input_precision=PREC)
            if STORE_SW:
                b_Sw += tl.dot(tl.trans(b_kl * b_e[:, None]), b_D, input_precision=PREC)

    b_Ub = tl.dot(b_Tr, b_X * b_b1[:, None], input_precision=PREC)
    b_W = tl.dot(b_Tr, b_k1 * (b_b1 * b_gam)[:, None], input_precision=PREC)
    tl.store(_rows(ub_out, i_b, i_h, i_t, T, H, V, BT, BV), b_Ub.to(ub_out.dtype.element_ty), boundary_check=(0, 1))
    tl.store(_rows(w_out, i_b, i_h, i_t, T, H, K, BT, BK), b_W.to(w_out.dtype.element_ty), boundary_check=(0, 1))
    if STORE_SW:
        tl.store(_state(sw_out, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), b_Sw, boundary_check=(0, 1))
    if STORE_TR:
        tl.store(_rows(tr_out, i_b, i_h, i_t, T, H, BT, BT, BT), b_Tr, boundary_check=(0, 1))
    if DVLOC:
        # dVloc = P_1^T dO, P_1^T[i, t] = scale G_ti (q_t . k1_i) for i <= t
        b_qt = tl.load(_rows_t(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
        b_do = tl.load(_rows(do, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
        m_it = o_i[:, None] <= o_i[None, :]
        b_Pt = tl.dot(b_k1, b_qt, input_precision=PREC)
        b_Pt = tl.where(m_it, b_Pt * tl.exp(tl.where(m_it, b_gc[None, :] - b_gc[:, None], 0.)), 0.) * scale
        b_dv = tl.dot(b_Pt, b_do, input_precision=PREC)
        tl.store(_rows(dvloc_out, i_b, i_h, i_t, T, H, V, BT, BV), b_dv, boundary_check=(0, 1))


# ----------------------------------------------------------------------------------------- forward (ii)
@triton.jit(do_not_specialize=["T"])
def prism_fwd_h_kernel(
    k, w, ub, sw, gc, h0, hs_out, vnew_out, ht_out, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_H0: tl.constexpr, STORE_HT: tl.constexpr, PREC: tl.constexpr,
):
    """Sequential pass over chunks. Grid (cdiv(V, BV), B*H).

    Stores h_c (chunk-start state, fp32) in hs [B,N,H,K,V] and V1 = Ub - W h_c in vnew [B,T,H,V].
    """
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NT = (T + BT - 1) // BT
    o_i = tl.arange(0, BT)
    if USE_H0:
        p_h0 = tl.make_block_ptr(h0 + i_bh.to(tl.int64) * K * V, (K, V), (V, 1), (0, i_v * BV), (BK, BV), (1, 0))
        b_h = tl.load(p_h0, boundary_check=(0, 1)).to(tl.float32)
    else:
        b_h = tl.zeros([BK, BV], dtype=tl.float32)
    for i_t in range(NT):
        tl.store(_state(hs_out, i_b, i_h, i_t, NT, H, K, V, BK, BV, i_v), b_h, boundary_check=(0, 1))
        b_w = tl.load(_rows(w, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
        p_ub = tl.make_block_ptr(ub + (i_b * T * H + i_h).to(tl.int64) * V, (T, V), (H * V, 1),
                                 (i_t * BT, i_v * BV), (BT, BV), (1, 0))
        b_v1 = tl.load(p_ub, boundary_check=(0, 1)).to(tl.float32) - tl.dot(b_w, b_h, input_precision=PREC)
        p_vn = tl.make_block_ptr(vnew_out + (i_b * T * H + i_h).to(tl.int64) * V, (T, V), (H * V, 1),
                                 (i_t * BT, i_v * BV), (BT, BV), (1, 0))
        tl.store(p_vn, b_v1.to(vnew_out.dtype.element_ty), boundary_check=(0, 1))
        b_gc = tl.load(_vec(gc, i_b, i_h, i_t, T, H, BT), boundary_check=(0,))
        b_gl = tl.load(gc + (i_b * T * H + i_h).to(tl.int64) + (tl.minimum(i_t * BT + BT, T) - 1) * H)
        b_e = tl.where(i_t * BT + o_i < T, tl.exp(b_gl - b_gc), 0.)
        b_k = tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
        b_sw = tl.load(_state(sw, i_b, i_h, i_t, NT, H, K, V, BK, BV, i_v), boundary_check=(0, 1))
        b_h = b_h * tl.exp(b_gl) + tl.dot(tl.trans(b_k * b_e[:, None]), b_v1, input_precision=PREC) + b_sw
    if STORE_HT:
        p_ht = tl.make_block_ptr(ht_out + i_bh.to(tl.int64) * K * V, (K, V), (V, 1), (0, i_v * BV), (BK, BV), (1, 0))
        tl.store(p_ht, b_h, boundary_check=(0, 1))


# ----------------------------------------------------------------------------------------- forward (iii)
@triton.jit(do_not_specialize=["T"])
def prism_fwd_o_kernel(
    q, k, v, u, p, beta, gc, hs, vnew, o, scale, T,
    B: tl.constexpr, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, L: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    """Outputs, parallel over chunks. Grid (N, B*H). o [B,T,H,V] in q's dtype."""
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NT = (T + BT - 1) // BT
    sk = B * T * H * K
    sp = B * T * H * V
    sb = B * T * H
    o_i = tl.arange(0, BT)
    m_a = o_i[:, None] >= o_i[None, :]

    b_gc = tl.load(_vec(gc, i_b, i_h, i_t, T, H, BT), boundary_check=(0,))
    b_Gi = tl.where(m_a, tl.exp(tl.where(m_a, b_gc[:, None] - b_gc[None, :], 0.)), 0.) * scale
    b_q = tl.load(_rows(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
    b_h = tl.load(_state(hs, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), boundary_check=(0, 1))
    b_o = tl.dot(b_q, b_h, input_precision=PREC) * (tl.exp(b_gc) * scale)[:, None]
    b_k1 = tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
    b_v1 = tl.load(_rows(vnew, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
    b_P = b_Gi * tl.dot(b_q, tl.trans(b_k1), input_precision=PREC)
    b_o += tl.dot(b_P, b_v1, input_precision=PREC)
    if L > 1:
        b_v = tl.load(_rows(v, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
        b_u = tl.load(_rows(u, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
        b_r = b_v - b_u
        for l in tl.static_range(L):
            b_p = tl.load(_rows(p + l * sp, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
            b_d = _gelu(b_p * b_r)
            if l < L - 1:
                b_r = b_r - b_d
            if l > 0:
                b_kl = tl.load(_rows(k + l * sk, i_b, i_h, i_t, T, H, K, BT, BK),
                               boundary_check=(0, 1)).to(tl.float32)
                b_bl = tl.load(_vec(beta + l * sb, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
                b_P = b_Gi * tl.dot(b_q, tl.trans(b_kl), input_precision=PREC)
                b_o += tl.dot(b_P, b_d * b_bl[:, None], input_precision=PREC)
    tl.store(_rows(o, i_b, i_h, i_t, T, H, V, BT, BV), b_o.to(o.dtype.element_ty), boundary_check=(0, 1))


# ----------------------------------------------------------------------------------------- backward (B)
@triton.jit(do_not_specialize=["T"])
def prism_bwd_dh_kernel(
    q, k, w, gc, do, dv, dht, dhs_out, dh0_out, scale, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_DHT: tl.constexpr, STORE_DH0: tl.constexpr, PREC: tl.constexpr,
):
    """Reverse pass over chunks. Grid (cdiv(V, BV), B*H).

    dv [B,T,H,V] holds dVloc on entry and dV1 = dVloc + (e K1) dH_{c+1} on exit (in place);
    dhs [B,N,H,K,V] gets dH_{c+1} = dL/d(state at the end of chunk c); dh0 [B,H,K,V] = dH_0.
    """
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NT = (T + BT - 1) // BT
    o_i = tl.arange(0, BT)
    if USE_DHT:
        p_dht = tl.make_block_ptr(dht + i_bh.to(tl.int64) * K * V, (K, V), (V, 1), (0, i_v * BV), (BK, BV), (1, 0))
        b_dh = tl.load(p_dht, boundary_check=(0, 1)).to(tl.float32)
    else:
        b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    for j in range(NT):
        i_t = NT - 1 - j
        tl.store(_state(dhs_out, i_b, i_h, i_t, NT, H, K, V, BK, BV, i_v), b_dh, boundary_check=(0, 1))
        b_gc = tl.load(_vec(gc, i_b, i_h, i_t, T, H, BT), boundary_check=(0,))
        b_gl = tl.load(gc + (i_b * T * H + i_h).to(tl.int64) + (tl.minimum(i_t * BT + BT, T) - 1) * H)
        m_t = i_t * BT + o_i < T
        b_e = tl.where(m_t, tl.exp(b_gl - b_gc), 0.)
        b_gam = tl.where(m_t, tl.exp(b_gc), 0.) * scale
        b_k = tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
        p_dv = tl.make_block_ptr(dv + (i_b * T * H + i_h).to(tl.int64) * V, (T, V), (H * V, 1),
                                 (i_t * BT, i_v * BV), (BT, BV), (1, 0))
        b_dv = tl.load(p_dv, boundary_check=(0, 1)) + tl.dot(b_k * b_e[:, None], b_dh, input_precision=PREC)
        tl.store(p_dv, b_dv, boundary_check=(0, 1))
        b_qt = tl.load(_rows_t(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
        b_wt = tl.load(_rows_t(w, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
        p_do = tl.make_block_ptr(do + (i_b * T * H + i_h).to(tl.int64) * V, (T, V), (H * V, 1),
                                 (i_t * BT, i_v * BV), (BT, BV), (1, 0))
        b_do = tl.load(p_do, boundary_check=(0, 1)).to(tl.float32)
        b_dh = (b_dh * tl.exp(b_gl) + tl.dot(b_qt * b_gam[None, :], b_do, input_precision=PREC)
                - tl.dot(b_wt, b_dv, input_precision=PREC))
    if STORE_DH0:
        p_dh0 = tl.make_block_ptr(dh0_out + i_bh.to(tl.int64) * K * V, (K, V), (V, 1), (0, i_v * BV), (BK, BV), (1, 0))
        tl.store(p_dh0, b_dh, boundary_check=(0, 1))


# ----------------------------------------------------------------------------------------- backward (C)
@triton.jit(do_not_specialize=["T"])
def prism_bwd_grads_kernel(
    q, k, v, u, p, beta, gc, hs, dhs, do, dv1, w, ub, tr,
    dq, dk, dv, du, dp, dbeta, dg, scale, T,
    B: tl.constexpr, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, L: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    """All input gradients of one chunk (prism_bwd.md phase C). Grid (N, B*H).

    Writes dq, dk [L,...], dv, du, dp [L,...], dbeta [L,...] (fp32 buffers) and dg [B,T,H] (fp32).
    """
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NT = (T + BT - 1) // BT
    sk = B * T * H * K
    sp = B * T * H * V
    sb = B * T * H
    o_i = tl.arange(0, BT)
    m_s = o_i[:, None] > o_i[None, :]
    m_a = o_i[:, None] >= o_i[None, :]

    # ---- decays
    b_gc = tl.load(_vec(gc, i_b, i_h, i_t, T, H, BT), boundary_check=(0,))
    b_gl = tl.load(gc + (i_b * T * H + i_h).to(tl.int64) + (tl.minimum(i_t * BT + BT, T) - 1) * H)
    m_t = i_t * BT + o_i < T
    b_gam = tl.where(m_t, tl.exp(b_gc), 0.)
    b_e = tl.where(m_t, tl.exp(b_gl - b_gc), 0.)
    b_Gi = tl.where(m_a, tl.exp(tl.where(m_a, b_gc[:, None] - b_gc[None, :], 0.)), 0.)
    b_Gs = tl.where(m_s, b_Gi, 0.)

    # ---- loads
    b_qs = tl.load(_rows(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32) * scale
    b_k1 = tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
    b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
    b_h = tl.load(_state(hs, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), boundary_check=(0, 1))
    b_dhn = tl.load(_state(dhs, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), boundary_check=(0, 1))
    b_do = tl.load(_rows(do, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
    b_dv1 = tl.load(_rows(dv1, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1))
    b_w = tl.load(_rows(w, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
    b_ub = tl.load(_rows(ub, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
    b_trt = tl.load(_rows_t(tr, i_b, i_h, i_t, T, H, BT, BT, BT), boundary_check=(0, 1))   # Tr^T
    b_ht = tl.trans(b_h)
    b_dhnt = tl.trans(b_dhn)

    b_v1 = b_ub - tl.dot(b_w, b_h, input_precision=PREC)                     # V1 = Ub - W h
    b_dqs = tl.dot(b_do, b_ht, input_precision=PREC) * b_gam[:, None]        # from diag(gamma) Qs h
    b_rho = tl.sum(b_qs * b_dqs, axis=1)
    b_dbh = tl.exp(b_gl) * tl.sum(tl.sum(b_h * b_dhn, axis=1), axis=0)       # from gamma_C h
    b_s = tl.zeros([BT], dtype=tl.float32)

    # ---- WY part: V1 = Ub - W h, Ub = Tr Y, W = Tr Z, Tr = (I + A)^-1
    b_dw = -tl.dot(b_dv1, b_ht, input_precision=PREC)
    b_dY = tl.dot(b_trt, b_dv1, input_precision=PREC)
    b_dZ = tl.dot(b_trt, b_dw, input_precision=PREC)
    b_dA = -tl.where(m_s, tl.dot(b_dY, tl.trans(b_ub), input_precision=PREC)
                     + tl.dot(b_dZ, tl.trans(b_w), input_precision=PREC), 0.)
    b_dX = b_dY * b_b1[:, None]
    b_S = tl.dot(b_k1, tl.trans(b_k1), input_precision=PREC)
    b_db1 = tl.sum(b_dA * b_Gs * b_S, axis=1) + b_gam * tl.sum(b_k1 * b_dZ, axis=1)
    b_dk1 = b_dZ * (b_b1 * b_gam)[:, None]
    b_rho += tl.sum(b_k1 * b_dk1, axis=1)                                     # Z . dZ
    b_dSA = b_dA * b_Gs * b_b1[:, None]
    b_dk1 += tl.dot(b_dSA + tl.trans(b_dSA), b_k1, input_precision=PREC)
    b_M = b_dSA * b_S
    b_rho += tl.sum(b_M, axis=1) - tl.sum(b_M, axis=0)

    # ---- read-out and state write of the first key (V_1 = V1)
    b_E = tl.dot(b_qs, tl.trans(b_k1), input_precision=PREC)
    b_dE = b_Gi * tl.dot(b_do, tl.trans(b_v1), input_precision=PREC)
    b_dqs += tl.dot(b_dE, b_k1, input_precision=PREC)
    b_dk1 += tl.dot(tl.trans(b_dE), b_qs, input_precision=PREC)
    b_M = tl.where(m_s, b_dE * b_E, 0.)
    b_rho += tl.sum(b_M, axis=1) - tl.sum(b_M, axis=0)
    b_dKd = tl.dot(b_v1, b_dhnt, input_precision=PREC)
    b_dk1 += b_dKd * b_e[:, None]
    b_s += b_e * tl.sum(b_k1 * b_dKd, axis=1)

    # ---- extra keys l = L-1 .. 1 (code index), then the solver's chain rule in the same order
    b_v = tl.load(_rows(v, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
    b_u = tl.load(_rows(u, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
    b_r1 = b_v - b_u
    b_dr = tl.zeros([BT, BV], dtype=tl.float32)
    for l in tl.static_range(L - 1, 0, -1):
        # recompute r_l, z_l, Delta_l
        b_r = b_r1
        for m in tl.static_range(l):
            b_pm = tl.load(_rows(p + m * sp, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
            b_r = b_r - _gelu(b_pm * b_r)
        b_p = tl.load(_rows(p + l * sp, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
        b_z = b_p * b_r
        b_d = _gelu(b_z)
        b_kl = tl.load(_rows(k + l * sk, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
        b_bl = tl.load(_vec(beta + l * sb, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
        b_D = b_d * b_bl[:, None]
        # read-out
        b_E = tl.dot(b_qs, tl.trans(b_kl), input_precision=PREC)
        b_dE = b_Gi * tl.dot(b_do, tl.trans(b_D), input_precision=PREC)
        b_dqs += tl.dot(b_dE, b_kl, input_precision=PREC)
        b_dkl = tl.dot(tl.trans(b_dE), b_qs, input_precision=PREC)
        b_M = tl.where(m_s, b_dE * b_E, 0.)
        b_rho += tl.sum(b_M, axis=1) - tl.sum(b_M, axis=0)
        b_dD = tl.dot(tl.trans(b_Gi * b_E), b_do, input_precision=PREC)
        # state write
        b_dKd = tl.dot(b_D, b_dhnt, input_precision=PREC)
        b_dkl += b_dKd * b_e[:, None]
        b_s += b_e * tl.sum(b_kl * b_dKd, axis=1)
        b_dD += tl.dot(b_kl * b_e[:, None], b_dhn, input_precision=PREC)
        # intra-chunk write into X = Delta_1 - sum_l (G< . K1 K_l^T) D_l
        b_F = tl.dot(b_k1, tl.trans(b_kl), input_precision=PREC)
        b_GF = b_Gs * b_F
        b_db1 -= tl.sum(tl.dot(b_GF, b_D, input_precision=PREC) * b_dY, axis=1)
        b_dF = -b_Gs * tl.dot(b_dX, tl.trans(b_D), input_precision=PREC)
        b_dk1 += tl.dot(b_dF, b_kl, input_precision=PREC)
        b_dkl += tl.dot(tl.trans(b_dF), b_k1, input_precision=PREC)
        b_M = b_dF * b_F
        b_rho += tl.sum(b_M, axis=1) - tl.sum(b_M, axis=0)
        b_dD -= tl.dot(tl.trans(b_GF), b_dX, input_precision=PREC)
        tl.store(_rows(dk + l * sk, i_b, i_h, i_t, T, H, K, BT, BK), b_dkl.to(dk.dtype.element_ty),
                 boundary_check=(0, 1))
        tl.store(_vec(dbeta + l * sb, i_b, i_h, i_t, T, H, BT), tl.sum(b_d * b_dD, axis=1).to(dbeta.dtype.element_ty),
                 boundary_check=(0,))
        # solver: r_{l+1} = r_l - Delta_l, Delta_l = GELU(p_l r_l)
        b_dz = (b_dD * b_bl[:, None] - b_dr) * _gelu_grad(b_z)
        tl.store(_rows(dp + l * sp, i_b, i_h, i_t, T, H, V, BT, BV), (b_dz * b_r).to(dp.dtype.element_ty),
                 boundary_check=(0, 1))
        b_dr += b_dz * b_p

    # ---- first step of the solver (dDelta_1 = dX) and X's Delta_1 term of dbeta1
    b_p = tl.load(_rows(p, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
    b_z = b_p * b_r1
    b_db1 += tl.sum(_gelu(b_z) * b_dY, axis=1)
    b_dz = (b_dX - b_dr) * _gelu_grad(b_z)
    tl.store(_rows(dp, i_b, i_h, i_t, T, H, V, BT, BV), (b_dz * b_r1).to(dp.dtype.element_ty), boundary_check=(0, 1))
    b_dr += b_dz * b_p
    tl.store(_rows(dv, i_b, i_h, i_t, T, H, V, BT, BV), b_dr.to(dv.dtype.element_ty), boundary_check=(0, 1))
    tl.store(_rows(du, i_b, i_h, i_t, T, H, V, BT, BV), (-b_dr).to(du.dtype.element_ty), boundary_check=(0, 1))
    tl.store(_rows(dq, i_b, i_h, i_t, T, H, K, BT, BK), (b_dqs * scale).to(dq.dtype.element_ty), boundary_check=(0, 1))
    tl.store(_rows(dk, i_b, i_h, i_t, T, H, K, BT, BK), b_dk1.to(dk.dtype.element_ty), boundary_check=(0, 1))
    tl.store(_vec(dbeta, i_b, i_h, i_t, T, H, BT), b_db1.to(dbeta.dtype.element_ty), boundary_check=(0,))
    # dg_j = sum_{t >= j} rho_t + sum_{t < j} s_t + gamma_C <h, dH'>  (split form, exact under strong decay)
    b_dg = tl.cumsum(b_rho, axis=0, reverse=True) + (tl.cumsum(b_s, axis=0) - b_s) + b_dbh
    tl.store(_vec(dg, i_b, i_h, i_t, T, H, BT), b_dg, boundary_check=(0,))


# ----------------------------------------------------------------------------------------- launchers
def _block(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def _prec(dtype: torch.dtype) -> str:
    return "ieee" if dtype in (torch.float32, torch.float64) else "tf32"


def _warps(BK: int, BV: int) -> int:
    return 4 if max(BK, BV) <= 64 else 8


def prism_fwd_prep(k, v, u, p, beta, g, BT, q=None, do=None, scale=1.0, store_sw=True, store_tr=False):
    """Phase (i)/(A) launcher. Returns gc [B,T,H] fp32, W [B,T,H,K], Ub [B,T,H,V], Sw [B,N,H,K,V] fp32 or None,
    Tr [B,T,H,BT] fp32 or None, dVloc [B,T,H,V] fp32 or None (when q and do are given)."""
    L, B, T, H, K = k.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, BT)
    BK, BV = _block(K), _block(V)
    dev = k.device
    gc = torch.empty(B, T, H, device=dev, dtype=torch.float32)
    w = torch.empty(B, T, H, K, device=dev, dtype=torch.float32)
    ub = torch.empty(B, T, H, V, device=dev, dtype=torch.float32)
    sw = torch.empty(B, NT, H, K, V, device=dev, dtype=torch.float32) if store_sw else None
    tr = torch.empty(B, T, H, BT, device=dev, dtype=torch.float32) if store_tr else None
    dvloc = torch.empty(B, T, H, V, device=dev, dtype=torch.float32) if do is not None else None
    prism_fwd_prep_kernel[(NT, B * H)](
        k, v, u, p, beta, g, q, do, gc, w, ub, sw, tr, dvloc, scale, T,
        B=B, H=H, K=K, V=V, L=L, BT=BT, BK=BK, BV=BV,
        STORE_SW=store_sw, STORE_TR=store_tr, DVLOC=do is not None, PREC=_prec(k.dtype),
        num_warps=_warps(BK, BV),
    )
    return gc, w, ub, sw, tr, dvloc


def prism_fwd_h(k, w, ub, sw, gc, BT, initial_state=None, output_final_state=False):
    """Phase (ii) launcher. Returns hs [B,N,H,K,V] fp32, V1 [B,T,H,V] (v dtype), final state or None."""
    L, B, T, H, K = k.shape
    V = ub.shape[-1]
    NT = triton.cdiv(T, BT)
    BK = _block(K)
    BV = min(_block(V), 32 if BK <= 64 else 16) if not INTERPRET else _block(V)
    hs = torch.empty(B, NT, H, K, V, device=k.device, dtype=torch.float32)
    vnew = torch.empty_like(ub)
    ht = torch.empty(B, H, K, V, device=k.device, dtype=torch.float32) if output_final_state else None
    prism_fwd_h_kernel[(triton.cdiv(V, BV), B * H)](
        k, w, ub, sw, gc, initial_state, hs, vnew, ht, T,
        H=H, K=K, V=V, BT=BT, BK=BK, BV=BV, USE_H0=initial_state is not None, STORE_HT=output_final_state,
        PREC=_prec(k.dtype), num_warps=4,
    )
    return hs, vnew, ht


def prism_fwd_o(q, k, v, u, p, beta, gc, hs, vnew, scale, BT):
    L, B, T, H, K = k.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, BT)
    BK, BV = _block(K), _block(V)
    o = torch.empty(B, T, H, V, device=q.device, dtype=q.dtype)
    prism_fwd_o_kernel[(NT, B * H)](
        q, k, v, u, p, beta, gc, hs, vnew, o, scale, T,
        B=B, H=H, K=K, V=V, L=L, BT=BT, BK=BK, BV=BV, PREC=_prec(k.dtype), num_warps=_warps(BK, BV),
    )
    return o


def chunk_prism_fwd(q, k, v, u, p, beta, g, scale, initial_state, output_final_state, BT):
    """Forward: returns o [B,T,H,V], final state [B,H,K,V] fp32 or None, hs [B,N,H,K,V] fp32."""
    gc, w, ub, sw, _, _ = prism_fwd_prep(k, v, u, p, beta, g, BT)
    hs, vnew, ht = prism_fwd_h(k, w, ub, sw, gc, BT, initial_state, output_final_state)
    o = prism_fwd_o(q, k, v, u, p, beta, gc, hs, vnew, scale, BT)
    return o, ht, hs


def chunk_prism_bwd(q, k, v, u, p, beta, g, scale, initial_state, hs, do, dht, BT):
    """Backward: returns dq, dk, dv, du, dp, dbeta, dg (fp32), dh0 (fp32 or None)."""
    L, B, T, H, K = k.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, BT)
    BK, BV = _block(K), _block(V)
    if max(BK, BV) > 64 and not INTERPRET:
        from prismbench.registry import Unsupported

        # measured on an H100 (NOTES.md, version 1): the one-kernel gradient phase needs 480-576 KB of
        # shared memory at K = V = 128 (227 KB available); the forward runs.
        raise Unsupported(f"chunk_prism backward: K={K}, V={V} > 64 is not supported by the version-1 "
                          "gradient kernel (shared memory); the forward is supported")
    gc, w, ub, _, tr, dv1 = prism_fwd_prep(k, v, u, p, beta, g, BT, q=q, do=do, scale=scale,
                                           store_sw=False, store_tr=True)
    dhs = torch.empty(B, NT, H, K, V, device=q.device, dtype=torch.float32)
    dh0 = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32) if initial_state is not None else None
    BVs = min(BV, 32 if BK <= 64 else 16) if not INTERPRET else BV
    prism_bwd_dh_kernel[(triton.cdiv(V, BVs), B * H)](
        q, k, w, gc, do, dv1, dht, dhs, dh0, scale, T,
        H=H, K=K, V=V, BT=BT, BK=BK, BV=BVs, USE_DHT=dht is not None, STORE_DH0=dh0 is not None,
        PREC=_prec(k.dtype), num_warps=4,
    )
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    du = torch.empty_like(u)
    dp = torch.empty_like(p)
    dbeta = torch.empty_like(beta)
    dg = torch.empty(B, T, H, device=q.device, dtype=torch.float32)
    prism_bwd_grads_kernel[(NT, B * H)](
        q, k, v, u, p, beta, gc, hs, dhs, do, dv1, w, ub, tr,
        dq, dk, dv, du, dp, dbeta, dg, scale, T,
        B=B, H=H, K=K, V=V, L=L, BT=BT, BK=BK, BV=BV, PREC=_prec(k.dtype), num_warps=_warps(BK, BV),
    )
    return dq, dk, dv, du, dp, dbeta, dg, dh0


class PrismChunkFunction(torch.autograd.Function):
    """Autograd wrapper: saves the inputs and the chunk-start states h_c (fp32); the backward
    recomputes Tr, W, Ub (state-free) and runs phases B and C."""

    @staticmethod
    def forward(ctx, q, k, v, u, p, beta, g, scale, initial_state, output_final_state, chunk_size):
        o, ht, hs = chunk_prism_fwd(q, k, v, u, p, beta, g, scale, initial_state, output_final_state, chunk_size)
        ctx.save_for_backward(q, k, v, u, p, beta, g, initial_state, hs)
        ctx.scale, ctx.chunk_size = scale, chunk_size
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, u, p, beta, g, initial_state, hs = ctx.saved_tensors
        dq, dk, dv, du, dp, dbeta, dg, dh0 = chunk_prism_bwd(
            q, k, v, u, p, beta, g, ctx.scale, initial_state, hs, do.contiguous(),
            dht.contiguous() if dht is not None else None, ctx.chunk_size)
        if dh0 is not None:
            dh0 = dh0.to(initial_state.dtype)
        return dq, dk, dv, du, dp, dbeta, dg.to(g.dtype), None, dh0, None, None


def _check(q, k, v, u, p, beta, g, initial_state):
    try:
        from prismbench.kernels.prism.naive import check_prism_inputs
    except ImportError:  # pragma: no cover - the reference module is written in parallel
        check_prism_inputs = None
    if check_prism_inputs is not None:
        return check_prism_inputs(q, k, v, u, p, beta, g, initial_state, check_values=False)
    if q.dim() != 4 or k.dim() != 5:
        raise ValueError(f"q must be [B, T, H, K] and k [L, B, T, H, K], got q.shape={tuple(q.shape)}, "
                         f"k.shape={tuple(k.shape)}")
    B, T, H, K = q.shape
    return B, T, H, K, v.shape[-1], k.shape[0]


def chunk_prism(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    u: torch.Tensor,
    p: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor,
    scale: Optional[float] = None,
    initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Exact chunked PRISM (Triton), differentiable in every input.

    Args:
        q: queries `[B, T, H, K]` (bf16, fp16 or fp32).
        k: keys `[L, B, T, H, K]`, L2-normalised; k[0] is also the erase key.
        v: values `[B, T, H, V]`.
        u: anchor slice `[B, T, H, V]` (solver seed r_1 = v - u).
        p: solver gains `[L, B, T, H, V]`.
        beta: step sizes `[L, B, T, H]` in (0, 1).
        g: log-decay `[B, T, H]` (float32 recommended), <= 0.
        scale: query scale, default `K ** -0.5`.
        initial_state: `[B, H, K, V]` or None (zeros).
        output_final_state: also return the final state.
        chunk_size: tokens per chunk, a power of two >= 16 (default 64).

    Returns:
        o: `[B, T, H, V]` in q.dtype.
        final_state: `[B, H, K, V]` float32, or None.

    Example::

        >>> from prismbench.registry import Shape
        >>> from prismbench.kernels.prism.inputs import make_prism_inputs
        >>> x = make_prism_inputs(Shape(1, 100, 2, 64, 64, 3, torch.bfloat16, torch.device("cuda")), seed=0)
        >>> o, ht = chunk_prism(**x, output_final_state=True)   # o [1, 100, 2, 64], ht [1, 2, 64, 64]
    """
    B, T, H, K, V, L = _check(q, k, v, u, p, beta, g, initial_state)
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two >= 16, got chunk_size={chunk_size}")
    if q.dtype == torch.float64:
        raise ValueError("chunk_prism: q.dtype=torch.float64 is not supported by the Triton kernel "
                         "(use chunk_prism_torch or naive_recurrent_prism)")
    for name, t in (("k", k), ("v", v), ("u", u), ("p", p), ("beta", beta)):
        if t.dtype != q.dtype:
            raise ValueError(f"{name}.dtype={t.dtype} must equal q.dtype={q.dtype}")
    if max(K, V) > 256:
        raise ValueError(f"chunk_prism: K={K}, V={V}; widths above 256 are not supported")
    if scale is None:
        scale = K ** -0.5
    q, k, v, u, p, beta = (t.contiguous() for t in (q, k, v, u, p, beta))
    g = g.contiguous()
    if initial_state is not None:
        initial_state = initial_state.contiguous()
    return PrismChunkFunction.apply(q, k, v, u, p, beta, g, float(scale), initial_state,
                                    bool(output_final_state), int(chunk_size))
