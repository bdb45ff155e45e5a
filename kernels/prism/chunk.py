"""Exact chunked PRISM in Triton: forward, backward, autograd Function (SPEC section 2).

Per head, state `h` is K x V (fla's column convention); L solver steps:

    delta = GELU solver of (v, u, p)                      (rebuilt on chip, never stored L times)
    h_t = alpha_t (I - beta1_t k1_t k1_t^T) h_{t-1} + sum_l beta_l,t k_l,t delta_l,t^T
    o_t = h_t^T (scale * q_t)

Kernels (launcher = kernel name without `_kernel`), chunk of BT in {16, 32, 64} tokens (K or V > 64: at most
32), N = ceil(T / BT) chunks:

forward
    prism_fwd_prep     (PREP_IMPL="fused", version 2) parallel over chunks: chunk-local cumsum of g, deltas, A = diag(b1)(G< . K1 K1^T),
                       Tr = (I + A)^-1 (blocked solve `_solve_tril`: 16 x 16 diagonal blocks by substitution,
                       merged with dots; the Tr buffer is its workspace), W = Tr diag(b1 gamma) K1,
                       Ub = Tr diag(b1) (Delta_1 - sum_{l>=2} (G< . K1 K_l^T) D_l), Sw = sum_{l>=2} (e K_l)^T D_l
    prism_fwd_solve    (SPLIT_SOLVE only, off by default) the solve as its own kernel before prep
    (TR_SOLVER="fla", the default) Tr from fla's kernels instead (the prep reads it: SOLVED=True): since
                       version 4 fla's fused kkt + solve kernel at chunk 64 (TR_FLA_IMPL="fused"), else
                       chunk_local_cumsum / chunk_scaled_dot_kkt_fwd / solve_tril
    (PREP_IMPL="split", the default) prep as small kernels: Tr (fla's, or prism_fwd_solve), prism_prep_w (gc, W),
                       prism_prep_u (Ub, Sw; BV-wide column blocks of V), prism_prep_dvloc (backward only:
                       dVloc); used by the forward and the backward prep alike
    prism_fwd_h        sequential over chunks (parallel over B, H, V blocks): h_c (stored; bf16 under FWD_16 "hs") and
                       V1 = Ub - W h_c (fla's v_new); h_{c+1} = gamma_C h_c + (e K1)^T V1 + Sw
    prism_fwd_o        parallel over chunks: O = gamma Qs h_c + sum_l (G<= . Qs K_l^T) V_l
backward (prism_bwd.md, phases A, B, C)
    prism_fwd_prep     again (Sw skipped) plus dVloc = P_1^T dO
    prism_bwd_dh       reverse sequential: dH_{c+1} stored, dV1 = dVloc + (e K1) dH_{c+1}, dh0
    prism_bwd_wy       parallel over chunks: the WY part and the first key (partial dq, dk1, dbeta1, dg; dY).
                       (WY_IMPL="split2", the default since version 4) three kernels:
                       prism_bwd_wy2_cols_kernel (dY over Ub and V1 over dV1, per column block of V),
                       prism_bwd_wy2_erase_kernel (WY part from dY, V1, h; state write; dk1 over W) and
                       prism_bwd_wy2_read_kernel (read-out: dq, dk1 +=, dg +=); 4 warps at K, V <= 64;
                       (WY_IMPL="fused", version 2) prism_bwd_wy_kernel
    prism_bwd_keys     keys l >= 2 and the solver's chain rule; finishes dq, dk_l, dbeta_l, dg, dv, du, dp_l.
                       (KEYS_IMPL="kinds", the default since version 5) prism_bwd_key_kernel three times per extra
                       key, l = L-1 .. 1, one launch per program kind (constexpr KIND), grid (1, N, B*H) each;
                       (KEYS_IMPL="split", version 3) once per extra key, grid (3, N, B*H). Three program kinds per
                       chunk (rows: dq, dk1, dbeta1, dg partials; columns: dk_l; values: dD_l, dbeta_l, dp_l, the
                       running dr), each adding in place to fp32
                       buffers (its own rows only: no atomics, deterministic; dr lives in the dead dV1 buffer);
                       then prism_bwd_keys_tail_kernel (first solver step, dv, du, final stores), or, at L > 1
                       with KEYS_TAIL="fused" (version 7), that tail inside the l = 1 launches (LAST).
                       (KEYS_LOOP, version 10) the rows and the columns programs of every key in one launch
                       each, after the per-key values launches: prism_bwd_key_rows_kernel and
                       prism_bwd_key_columns_kernel, loops over the keys (prism_bwd_key_values_kernel likewise
                       for the values kind, opt-in: measured slower).
                       (KEYS_BF16, version 10) the kinds read bf16 copies of dH' (stored by prism_bwd_dh) and
                       D_l (stored by each key's values launch, run first).
                       (KEYS_IMPL="fused", version 2) prism_bwd_keys_kernel: all keys in one program per chunk

Numerics: decays are exp of masked differences of the chunk-local cumulative log-decay (never a division
by gamma); the solve, the state and all intermediate products are float32 (tf32 dots for 16-bit inputs,
ieee for float32 inputs, ieee for the solve's 16 x 16 merges), except that for bf16 inputs the launchers named in
DOT16 round their dots' fp32 operands to bf16 (fp32 accumulation, as fla's kernels do; version 9); dots of two raw
16-bit inputs (K K^T, Q K^T) take bf16/fp16 operands (exact products, fp32 accumulation); no dot result is cast to
16 bits and then transposed into another dot (the Triton 3.4-3.7.0 Hopper miscompile, SPEC section 6): such products
are built transposed instead (`_gmat_t`).

Version 14 (NOTES.md): version 13 with the WY kernels' dots in bf16 at L > 1 (DOT16 "wy") and V1 in a bf16 buffer
(WY_V1_16). H100, harness run 23 (one process with the peers), T = 2048 / 16384: L=3 fwd+bwd 4.850 / 5.483 ms =
0.64x / 0.73x fla chunk_gla, L=3 fwd 1.204 / 1.459 ms = 1.81x / 2.13x fla GDP n=3: still short of those two targets;
release grid 32/32 within 5e-3 (worst 3.46e-3).
Version 13: version 12 with prep_u's extra-key dots in bf16 (DOT16 "prep_u") and the WY erase kernel on the bf16 dH'
(DH16_WY; the reverse pass stores dH' once).
Version 12: version 11 with the forward's intermediates in bf16 for bf16 inputs (FWD_16: Tr, W, Sw and the
chunk states; TR16_DOTS: prep_u's W and Ub dots take the bf16 Tr as bf16 dots). H100, harness run 21 (one process with
the peers), T = 2048 / 16384: L=3 fwd 1.317 / 1.573 ms = 1.65x / 1.98x fla GDP n=3, L=3 fwd+bwd 5.252 / 5.927 ms =
0.59x / 0.67x fla chunk_gla: still short of those two targets; release grid 32/32 within 5e-3 (worst 3.45e-3).
Version 11: version 10 with the forward's D_l stash (FWD_STASH_D): at L > 1 with bf16 inputs prep_u also
stores each extra key's D_l in bf16 and the output kernel reads it instead of recomputing the solver chain.
Version 10: TR_SOLVER="fla" with TR_FLA_IMPL="fused" (Tr's buffer unfilled: readers mask it),
PREP_IMPL="split" (PREP_BV 64), KEYS_IMPL="kinds" with the tail fused into the last per-key launch
(KEYS_TAIL="fused"), every key's rows and columns programs in one launch each (KEYS_LOOP) and the kinds reading bf16
copies of dH' and D_l (KEYS_BF16), WY_IMPL="split2"; at L = 1 the forward is fla's GDN kernels around prism_wu1_kernel, which
builds delta_1 in-kernel (FWD_IMPL="fla_parts"); the autograd forward keeps its prep for the backward (KEEP_PREP); the
state and dh passes size their V column block to the grid at 4 warps (SEQ_BV rule); prep_u, o, prep_dvloc and wu1 run
at their measured num_warps (MEASURED_WARPS), the output kernel under a measured register cap (MEASURED_MAXNREG);
prep_u also computes gc and W (PREP_W="fused"); the output kernel loops over the extra keys at run time; bf16 dots in
the state pass, the output kernel, the reverse pass and the per-key kinds (DOT16). Status (version 11): every gradient
within 5e-3 on an H100 (bf16; release grid 22/22, worst 3.45e-3); K = V = 64, 32768 tokens, H=16, T = 2048 (harness,
one process with the peers, run 18): L=3 fwd 1.51 ms = 1.46x fla GDP n=3, L=3 fwd+bwd 5.54 ms = 0.56x fla chunk_gla,
short of those two speed targets; L=1 (unchanged since version 10) fwd 0.59-0.67 ms = 0.85-0.97x fla GDN (target
0.9x; run 17: 0.97x, met at every T; run 18's 0.85x at T=2048 spans 15% between p20 and p80, a disturbed
timing most likely, NOTES.md).

Without CUDA the kernels run only in Triton's interpreter, which must be switched on
(TRITON_INTERPRET=1) before Python imports Triton: see prismbench/triton_support.py (the tests do it
in tests/conftest.py). Tiny shapes only.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from prismbench.triton_support import interpreting, patch_interpreter

__all__ = ["chunk_prism", "PrismChunkFunction", "chunk_prism_fwd", "chunk_prism_bwd"]

INTERPRET = interpreting()
patch_interpreter()

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
def _mm(a, b, PREC: tl.constexpr, D16: tl.constexpr):
    """tl.dot(a, b): with D16 (`DOT16`, bf16 inputs: `_d16`), both operands rounded to bf16 first, fp32 accumulation
    (as fla's kernels take their dots): D16 = 1 a bf16 tensor-core dot; D16 = 2 (the interpreter, whose dots of raw
    bf16 multiply the bits) the same roundings as an fp32 dot. D16 = 0: at input precision PREC. No dot result is
    transposed into these (`tl.trans` of a dot result rounded to bf16 feeding a dot: the Hopper miscompile, SPEC
    section 6): the kernels build such products transposed instead (`_gmat_t`)."""
    if D16 == 1:
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    elif D16 == 2:
        return tl.dot(a.to(tl.bfloat16).to(tl.float32), b.to(tl.bfloat16).to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b, input_precision=PREC)


@triton.jit
def _dot16(a16, b, D16: tl.constexpr):
    """tl.dot of a 16-bit tile a16 (Tr kept in bf16, FWD_16 "tr") and b rounded to a16's dtype, fp32 accumulation:
    D16 = 1 a tensor-core dot of the two; D16 = 2 (the interpreter) the same roundings as an fp32 dot."""
    if D16 == 1:
        return tl.dot(a16, b.to(a16.dtype))
    else:
        return tl.dot(a16.to(tl.float32), b.to(a16.dtype).to(tl.float32), input_precision="ieee")


@triton.jit
def _rows(ptr, i_b, i_h, i_t, T, H, F: tl.constexpr, BT: tl.constexpr, BF: tl.constexpr):
    """Block pointer on rows [i_t*BT, i_t*BT+BT) of the (b, h) slice of a [B, T, H, F] tensor."""
    return tl.make_block_ptr(ptr + (i_b * T * H + i_h).to(tl.int64) * F, (T, F), (H * F, 1),
                             (i_t * BT, 0), (BT, BF), (1, 0))


@triton.jit
def _rows_t(ptr, i_b, i_h, i_t, T, H, F: tl.constexpr, BT: tl.constexpr, BF: tl.constexpr):
    """Transposed block pointer ([BF, BT]) on the same rows as `_rows` (loads X^T by pointer)."""
    return tl.make_block_ptr(ptr + (i_b * T * H + i_h).to(tl.int64) * F, (F, T), (1, H * F),
                             (0, i_t * BT), (BF, BT), (0, 1))


@triton.jit
def _vec(ptr, i_b, i_h, i_t, T, H, BT: tl.constexpr):
    """Block pointer on entries [i_t*BT, i_t*BT+BT) of the (b, h) slice of a [B, T, H] tensor."""
    return tl.make_block_ptr(ptr + (i_b * T * H + i_h).to(tl.int64), (T,), (H,), (i_t * BT,), (BT,), (0,))


@triton.jit
def _state(ptr, i_b, i_h, i_t, NT, H, K: tl.constexpr, V: tl.constexpr,
           BK: tl.constexpr, BV: tl.constexpr, i_v):
    """Block pointer on the [BK, BV] state block of chunk i_t in a [B, NT, H, K, V] tensor."""
    return tl.make_block_ptr(ptr + ((i_b * NT + i_t) * H + i_h).to(tl.int64) * K * V, (K, V), (V, 1),
                             (0, i_v * BV), (BK, BV), (1, 0))


@triton.jit
def _raw(x, RAW: tl.constexpr):
    """A loaded 16-bit input as a dot operand: as is on the GPU (exact products, fp32 accumulation, twice
    the tf32 rate); cast to fp32 when RAW is False (Triton 3.6's interpreter multiplies the raw bf16 bits)."""
    if RAW:
        return x
    else:
        return x.to(tl.float32)


@triton.jit
def _tile16(ptr, i_b, i_h, i_t, T, H, BT: tl.constexpr, r: tl.constexpr, c: tl.constexpr):
    """Block pointer on the 16 x 16 tile (row block r, column block c) of chunk i_t's [BT, BT] slab
    of a [B, T, H, BT] tensor."""
    return tl.make_block_ptr(ptr + (i_b * T * H + i_h).to(tl.int64) * BT, (T, BT), (H * BT, 1),
                             (i_t * BT + r * 16, c * 16), (16, 16), (1, 0))


@triton.jit
def _tr_load(p_tr, BT: tl.constexpr, TRANS: tl.constexpr = False):
    """Tr's [BT, BT] tile from a block pointer (Tr^T's with TRANS, from `_rows_t`), zero above Tr's diagonal: fla's
    fused kkt + solve kernel writes only the 16 x 16 blocks on and below the diagonal, into an unfilled buffer."""
    o = tl.arange(0, BT)
    m = (o[:, None] <= o[None, :]) if TRANS else (o[:, None] >= o[None, :])
    return tl.where(m, tl.load(p_tr, boundary_check=(0, 1)).to(tl.float32), 0.)


@triton.jit
def _tr_masked(tr, base, o_t, o_i, m_t, H, BT: tl.constexpr):
    """Tr's [BT, BT] tile of the chunk whose rows are o_t (m_t: within T) by a masked pointer load in tr's dtype, zero
    above its diagonal (fla's fused kernel leaves those blocks unwritten); base = (b * T * H + h), int64."""
    return tl.load(tr + base * BT + o_t[:, None] * (H * BT) + o_i[None, :],
                   mask=m_t[:, None] & (o_i[:, None] >= o_i[None, :]), other=0.)


@triton.jit
def _solve_tril(tr, b_A, i_b, i_h, i_t, T, H, BT: tl.constexpr):
    """Tr = (I + A)^-1 for a strictly lower [BT, BT] block A (fp32), BT in {16, 32, 64}.

    The chunk's [BT, BT] slab of tr ([B, T, H, BT], fp32) is the workspace and holds Tr on return.
    1. A is stored to the slab; its NB = BT/16 diagonal 16 x 16 blocks are inverted together by row
       substitution on an [NB, 16, 16] tile (15 steps; v1 took BT - 1 steps on [BT, BT]).
    2. Off-diagonal 16 x 16 blocks: Tr_ij = -Tr_ii sum_{j <= m < i} A_im Tr_mj (fp32 ieee dots).
    3. The slab is read back as one [BT, BT] tile. Rows at or past T stay zero (never stored).
    """
    NB: tl.constexpr = BT // 16
    tl.store(tl.make_block_ptr(tr + (i_b * T * H + i_h).to(tl.int64) * BT, (T, BT), (H * BT, 1),
                               (i_t * BT, 0), (BT, BT), (1, 0)), b_A, boundary_check=(0, 1))
    tl.debug_barrier()
    # ---- diagonal blocks, all at once: X[b, r, c] = -A[16 b + r, 16 b + c]
    o_b = tl.arange(0, NB)
    o_r = tl.arange(0, 16)
    rows = i_t * BT + o_b[:, None, None] * 16 + o_r[None, :, None]                      # [NB, 16, 1]
    cols = o_b[:, None, None] * 16 + o_r[None, None, :]                                 # [NB, 1, 16]
    p_d = tr + (i_b * T * H + i_h).to(tl.int64) * BT + rows * (H * BT) + cols
    m_d = (rows < T) & (cols >= 0)
    b_X = -tl.load(p_d, mask=m_d, other=0.)
    for s in tl.static_range(1, 16):
        m_row = (o_r == s)[None, :, None]
        b_a = tl.sum(tl.where(m_row, b_X, 0.), axis=1)                                 # [NB, 16]
        b_a = b_a + tl.sum(b_a[:, :, None] * b_X, axis=1)
        b_X = tl.where(m_row, b_a[:, None, :], b_X)
    b_X = b_X + (o_r[:, None] == o_r[None, :]).to(tl.float32)[None, :, :]
    tl.debug_barrier()
    tl.store(p_d, b_X, mask=m_d)
    tl.debug_barrier()
    # ---- off-diagonal blocks (block rows 2..NB), from the diagonal inverses and A's blocks
    if NB >= 2:
        b_T11 = tl.load(_tile16(tr, i_b, i_h, i_t, T, H, BT, 0, 0), boundary_check=(0, 1))
        b_T22 = tl.load(_tile16(tr, i_b, i_h, i_t, T, H, BT, 1, 1), boundary_check=(0, 1))
        b_A21 = tl.load(_tile16(tr, i_b, i_h, i_t, T, H, BT, 1, 0), boundary_check=(0, 1))
        b_T21 = -tl.dot(b_T22, tl.dot(b_A21, b_T11, input_precision="ieee"), input_precision="ieee")
        if NB == 4:
            b_T33 = tl.load(_tile16(tr, i_b, i_h, i_t, T, H, BT, 2, 2), boundary_check=(0, 1))
            b_T44 = tl.load(_tile16(tr, i_b, i_h, i_t, T, H, BT, 3, 3), boundary_check=(0, 1))
            b_A31 = tl.load(_tile16(tr, i_b, i_h, i_t, T, H, BT, 2, 0), boundary_check=(0, 1))
            b_A32 = tl.load(_tile16(tr, i_b, i_h, i_t, T, H, BT, 2, 1), boundary_check=(0, 1))
            b_A41 = tl.load(_tile16(tr, i_b, i_h, i_t, T, H, BT, 3, 0), boundary_check=(0, 1))
            b_A42 = tl.load(_tile16(tr, i_b, i_h, i_t, T, H, BT, 3, 1), boundary_check=(0, 1))
            b_A43 = tl.load(_tile16(tr, i_b, i_h, i_t, T, H, BT, 3, 2), boundary_check=(0, 1))
            b_T32 = -tl.dot(b_T33, tl.dot(b_A32, b_T22, input_precision="ieee"), input_precision="ieee")
            b_T31 = -tl.dot(b_T33, tl.dot(b_A31, b_T11, input_precision="ieee")
                            + tl.dot(b_A32, b_T21, input_precision="ieee"), input_precision="ieee")
            b_T43 = -tl.dot(b_T44, tl.dot(b_A43, b_T33, input_precision="ieee"), input_precision="ieee")
            b_T42 = -tl.dot(b_T44, tl.dot(b_A42, b_T22, input_precision="ieee")
                            + tl.dot(b_A43, b_T32, input_precision="ieee"), input_precision="ieee")
            b_T41 = -tl.dot(b_T44, tl.dot(b_A41, b_T11, input_precision="ieee")
                            + tl.dot(b_A42, b_T21, input_precision="ieee")
                            + tl.dot(b_A43, b_T31, input_precision="ieee"), input_precision="ieee")
        tl.debug_barrier()
        tl.store(_tile16(tr, i_b, i_h, i_t, T, H, BT, 1, 0), b_T21, boundary_check=(0, 1))
        if NB == 4:
            tl.store(_tile16(tr, i_b, i_h, i_t, T, H, BT, 2, 0), b_T31, boundary_check=(0, 1))
            tl.store(_tile16(tr, i_b, i_h, i_t, T, H, BT, 2, 1), b_T32, boundary_check=(0, 1))
            tl.store(_tile16(tr, i_b, i_h, i_t, T, H, BT, 3, 0), b_T41, boundary_check=(0, 1))
            tl.store(_tile16(tr, i_b, i_h, i_t, T, H, BT, 3, 1), b_T42, boundary_check=(0, 1))
            tl.store(_tile16(tr, i_b, i_h, i_t, T, H, BT, 3, 2), b_T43, boundary_check=(0, 1))
        tl.debug_barrier()
    return tl.load(tl.make_block_ptr(tr + (i_b * T * H + i_h).to(tl.int64) * BT, (T, BT), (H * BT, 1),
                                     (i_t * BT, 0), (BT, BT), (1, 0)), boundary_check=(0, 1))


# ----------------------------------------------------------------------------------------- forward (i)
@triton.jit(do_not_specialize=["T", "H"])
def prism_fwd_solve_kernel(
    k, beta, g, tr_out, T, H,
    K: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr,
):
    """Tr = (I + A)^-1, A = diag(b1) (G< . K1 K1^T), alone (SPLIT_SOLVE). Grid (N, B*H).

    A small kernel (one [BT, BK] and two [BT, BT] tiles live), so several CTAs share an SM and hide the
    solve's barrier and global round-trip latencies, which the fused prep kernel (1 CTA per SM) cannot.
    Writes Tr [B,T,H,BT] (fp32).
    """
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    o_i = tl.arange(0, BT)
    m_s = o_i[:, None] > o_i[None, :]
    b_gc = tl.cumsum(tl.load(_vec(g, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32), axis=0)
    b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
    b_k1r = _raw(tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
    b_A = tl.dot(b_k1r, tl.trans(b_k1r), input_precision=PREC) * b_b1[:, None]
    b_A = tl.where(m_s, b_A * tl.exp(tl.where(m_s, b_gc[:, None] - b_gc[None, :], 0.)), 0.)
    _solve_tril(tr_out, b_A, i_b, i_h, i_t, T, H, BT)


@triton.jit(do_not_specialize=["T", "H", "B"])
def prism_fwd_prep_kernel(
    k, v, u, p, beta, g, q, do,
    gc_out, w_out, ub_out, sw_out, tr_out, dvloc_out,
    scale, T,
    B, H, K: tl.constexpr, V: tl.constexpr, L: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    STORE_SW: tl.constexpr, DVLOC: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr,
    SOLVED: tl.constexpr,
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
    b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
    b_k1r = _raw(tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)

    if DVLOC:
        # dVloc = P_1^T dO, P_1^T[i, t] = scale G_ti (q_t . k1_i) for i <= t
        b_qt = _raw(tl.load(_rows_t(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
        m_it = o_i[:, None] <= o_i[None, :]
        b_Pt = tl.dot(b_k1r, b_qt, input_precision=PREC)
        b_Pt = tl.where(m_it, b_Pt * tl.exp(tl.where(m_it, b_gc[None, :] - b_gc[:, None], 0.)), 0.) * scale
        b_do = tl.load(_rows(do, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
        b_dv = tl.dot(b_Pt, b_do, input_precision=PREC)
        tl.store(_rows(dvloc_out, i_b, i_h, i_t, T, H, V, BT, BV), b_dv, boundary_check=(0, 1))

    # A = diag(b1) (G< . K1 K1^T) (raw 16-bit operands: exact products, fp32 accumulation);
    # Tr = (I + A)^-1 by the blocked solve (16 x 16 diagonal blocks, merged with dots); W = Tr diag(b1 gamma) K1
    if SOLVED:   # Tr written by prism_fwd_solve_kernel
        b_Tr = _tr_load(tl.make_block_ptr(tr_out + (i_b * T * H + i_h).to(tl.int64) * BT, (T, BT), (H * BT, 1),
                                          (i_t * BT, 0), (BT, BT), (1, 0)), BT)
    else:
        b_A = tl.dot(b_k1r, tl.trans(b_k1r), input_precision=PREC) * b_b1[:, None]
        b_A = tl.where(m_s, b_A * tl.exp(tl.where(m_s, b_gc[:, None] - b_gc[None, :], 0.)), 0.)
        b_Tr = _solve_tril(tr_out, b_A, i_b, i_h, i_t, T, H, BT)
    b_W = tl.dot(b_Tr, b_k1r.to(tl.float32) * (b_b1 * tl.exp(b_gc))[:, None], input_precision=PREC)
    tl.store(_rows(w_out, i_b, i_h, i_t, T, H, K, BT, BK), b_W.to(w_out.dtype.element_ty), boundary_check=(0, 1))

    # deltas and the intra-chunk writes of keys l >= 2: X = Delta_1 - sum_l (G< . K1 K_l^T) D_l
    b_r = (tl.load(_rows(v, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
           - tl.load(_rows(u, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32))
    b_X = tl.zeros([BT, BV], dtype=tl.float32)
    b_Sw = tl.zeros([BK, BV], dtype=tl.float32)
    for l in tl.static_range(L):
        b_p = tl.load(_rows(p + l * sp, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
        b_d = _gelu(b_p * b_r)
        if l < L - 1:
            b_r = b_r - b_d
        if l == 0:
            b_X += b_d
        else:
            b_klr = _raw(tl.load(_rows(k + l * sk, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
            b_bl = tl.load(_vec(beta + l * sb, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
            b_D = b_d * b_bl[:, None]
            b_Bl = tl.dot(b_k1r, tl.trans(b_klr), input_precision=PREC)
            b_Bl = tl.where(m_s, b_Bl * tl.exp(tl.where(m_s, b_gc[:, None] - b_gc[None, :], 0.)), 0.)
            b_X -= tl.dot(b_Bl, b_D, input_precision=PREC)
            if STORE_SW:
                b_ke = b_klr.to(tl.float32) * tl.exp(b_gl - b_gc)[:, None]
                b_Sw += tl.dot(tl.trans(b_ke), b_D, input_precision=PREC)
    # Tr again from the workspace (not kept live through the loop above)
    b_Tr = _tr_load(tl.make_block_ptr(tr_out + (i_b * T * H + i_h).to(tl.int64) * BT, (T, BT), (H * BT, 1),
                                      (i_t * BT, 0), (BT, BT), (1, 0)), BT)
    b_Ub = tl.dot(b_Tr, b_X * b_b1[:, None], input_precision=PREC)
    tl.store(_rows(ub_out, i_b, i_h, i_t, T, H, V, BT, BV), b_Ub.to(ub_out.dtype.element_ty), boundary_check=(0, 1))
    if STORE_SW:
        tl.store(_state(sw_out, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), b_Sw.to(sw_out.dtype.element_ty),
                 boundary_check=(0, 1))


# ----------------------------------------------------------------------------------------- forward (i), split
@triton.jit
def _cols(ptr, i_b, i_h, i_t, i_v, T, H, F: tl.constexpr, BT: tl.constexpr, BF: tl.constexpr):
    """Block pointer on rows [i_t*BT, i_t*BT+BT) and columns [i_v*BF, i_v*BF+BF) of the (b, h) slice of a
    [B, T, H, F] tensor (`_rows` with a column block)."""
    return tl.make_block_ptr(ptr + (i_b * T * H + i_h).to(tl.int64) * F, (T, F), (H * F, 1),
                             (i_t * BT, i_v * BF), (BT, BF), (1, 0))


@triton.jit(do_not_specialize=["T", "H"])
def prism_prep_w_kernel(
    k, beta, g, tr, gc_out, w_out, T, H,
    K: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr,
):
    """Split prep (PREP_IMPL="split"), part 1: gc = chunk-local cumsum of g and W = Tr diag(b1 gamma) K1.

    Grid (N, B*H). Reads Tr [B,T,H,BT] (fp32, from prism_fwd_solve or fla); writes gc [B,T,H] fp32 and
    W [B,T,H,K]. Live tiles: Tr [BT, BT] and K1 [BT, BK] (fla's recompute_w_u without the u half).
    """
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    b_gc = tl.cumsum(tl.load(_vec(g, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32), axis=0)
    tl.store(_vec(gc_out, i_b, i_h, i_t, T, H, BT), b_gc, boundary_check=(0,))
    b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
    b_k1 = tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
    b_Tr = _tr_load(tl.make_block_ptr(tr + (i_b * T * H + i_h).to(tl.int64) * BT, (T, BT), (H * BT, 1),
                                      (i_t * BT, 0), (BT, BT), (1, 0)), BT)
    b_W = tl.dot(b_Tr, b_k1 * (b_b1 * tl.exp(b_gc))[:, None], input_precision=PREC)
    tl.store(_rows(w_out, i_b, i_h, i_t, T, H, K, BT, BK), b_W.to(w_out.dtype.element_ty), boundary_check=(0, 1))


@triton.jit(do_not_specialize=["T", "H"])
def prism_prep_dvloc_kernel(
    q, k, g, do, dvloc_out, scale, T, H,
    K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PREC: tl.constexpr, RAW: tl.constexpr,
):
    """Split prep, backward only: dVloc = P_1^T dO [B,T,H,V] (fp32), P_1^T[i, t] = scale G_ti (q_t . k1_i) for
    i <= t. Grid (cdiv(V, BV), N, B*H): one BV-wide column block of dO per program (P_1^T recomputed per block).
    """
    i_v, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    o_i = tl.arange(0, BT)
    m_it = o_i[:, None] <= o_i[None, :]
    b_gc = tl.cumsum(tl.load(_vec(g, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32), axis=0)
    b_k1r = _raw(tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
    b_qt = _raw(tl.load(_rows_t(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
    b_Pt = tl.dot(b_k1r, b_qt, input_precision=PREC)
    b_Pt = tl.where(m_it, b_Pt * tl.exp(tl.where(m_it, b_gc[None, :] - b_gc[:, None], 0.)), 0.) * scale
    b_do = tl.load(_cols(do, i_b, i_h, i_t, i_v, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
    tl.store(_cols(dvloc_out, i_b, i_h, i_t, i_v, T, H, V, BT, BV),
             tl.dot(b_Pt, b_do, input_precision=PREC), boundary_check=(0, 1))


@triton.jit(do_not_specialize=["T", "H", "B"])
def prism_prep_u_kernel(
    k, v, u, p, beta, g, tr, ub_out, sw_out, gc_out, w_out, dd_out, T,
    B, H, K: tl.constexpr, V: tl.constexpr, L: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    STORE_SW: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr, STORE_W: tl.constexpr = False,
    STORE_D: tl.constexpr = False, TR_D16: tl.constexpr = 0, D16: tl.constexpr = 0,
):
    """Split prep (PREP_IMPL="split"), part 2, one BV-wide column block of V per program.

    Grid (cdiv(V, BV), N, B*H). The GELU solver is elementwise, so each column block of the deltas, of
    X = Delta_1 - sum_{l>=2} (G< . K1 K_l^T) D_l, of Ub = Tr diag(b1) X [B,T,H,V] and of
    Sw = sum_{l>=2} (e K_l)^T D_l [B,N,H,K,V] (sw_out's dtype: fp32, bf16 under FWD_16 "sw"; STORE_SW) is computed
    on its own (fla's recompute_w_u splits V the same way). The extra keys run in a runtime loop; Tr is read after it.
    STORE_W (PREP_W="fused", version 7): the programs of the first column block also store gc [B,T,H] fp32 and
    W = Tr diag(b1 gamma) K1 [B,T,H,K] (prism_prep_w_kernel's outputs, same operations), so that kernel is not launched.
    STORE_D (FWD_STASH_D, version 11): each extra key's D_l = GELU(z_l) beta_l (l >= 2) is also stored, rounded to
    dd_out's dtype (bf16, [L-1,B,T,H,V]), for the output kernel, whose bf16 dots round it so anyway.
    TR_D16 (FWD_16 "tr" with TR16_DOTS): Tr is bf16 and the W and Ub dots take it as it is, their other operand rounded
    to bf16 (`_dot16`; fla's recompute_w_u takes its dots so), instead of converting Tr to fp32 for tf32 dots.
    D16 (DOT16 "prep_u", version 13): the extra keys' two dots, (G< . K1 K_l^T) D_l and (e K_l)^T D_l, in bf16 (`_mm`).
    """
    i_v, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    NT = (T + BT - 1) // BT
    sk = B * T * H * K      # stride of the L axis of k / p
    sp = B * T * H * V
    sb = B * T * H
    o_i = tl.arange(0, BT)
    m_s = o_i[:, None] > o_i[None, :]
    # plain pointer tiles (offsets and masks built once, reused by every key): block pointers inside the key
    # loop cost ~15-40 more registers on sm_90 (offline compiles, NOTES.md)
    o_t = i_t * BT + o_i
    o_c = i_v * BV + tl.arange(0, BV)
    o_k = tl.arange(0, BK)
    m_t = o_t < T
    base = (i_b * T * H + i_h).to(tl.int64)
    off_v = base * V + o_t[:, None] * (H * V) + o_c[None, :]
    m_v = m_t[:, None] & (o_c < V)[None, :]
    off_k = base * K + o_t[:, None] * (H * K) + o_k[None, :]
    m_k = m_t[:, None] & (o_k < K)[None, :]
    off_b = base + o_t * H
    b_gc = tl.cumsum(tl.load(g + off_b, mask=m_t, other=0.).to(tl.float32), axis=0)
    b_gl = tl.sum(tl.where(o_i == BT - 1, b_gc, 0.), axis=0)        # log gamma_C (padding has g = 0)
    b_b1 = tl.load(beta + off_b, mask=m_t, other=0.).to(tl.float32)
    b_k1r = _raw(tl.load(k + off_k, mask=m_k, other=0.), RAW)
    p_tr = tl.make_block_ptr(tr + (i_b * T * H + i_h).to(tl.int64) * BT, (T, BT), (H * BT, 1), (i_t * BT, 0), (BT, BT),
                             (1, 0))
    if STORE_W:
        # before the key loop, with its own read of Tr (read again for Ub below), so no tile of it lives across the
        # loop (computed after Ub, it added ~90 B of spills per thread offline at L=3)
        if i_v == 0:
            tl.store(gc_out + off_b, b_gc, mask=m_t)
            if TR_D16:
                b_W = _dot16(_tr_masked(tr, base, o_t, o_i, m_t, H, BT),
                             b_k1r.to(tl.float32) * (b_b1 * tl.exp(b_gc))[:, None], TR_D16)
            else:
                b_W = tl.dot(_tr_load(p_tr, BT),
                             b_k1r.to(tl.float32) * (b_b1 * tl.exp(b_gc))[:, None], input_precision=PREC)
            tl.store(w_out + off_k, b_W.to(w_out.dtype.element_ty), mask=m_k)
    b_r = tl.load(v + off_v, mask=m_v, other=0.).to(tl.float32) - tl.load(u + off_v, mask=m_v, other=0.).to(tl.float32)
    b_p = tl.load(p + off_v, mask=m_v, other=0.).to(tl.float32)
    b_X = _gelu(b_p * b_r)
    b_r = b_r - b_X
    b_Sw = tl.zeros([BK, BV], dtype=tl.float32)
    # a runtime loop over the extra keys (not unrolled: one key's tiles live at a time)
    for l in range(1, L):
        b_p = tl.load(p + l * sp + off_v, mask=m_v, other=0.).to(tl.float32)
        b_d = _gelu(b_p * b_r)
        b_r = b_r - b_d
        b_klr = _raw(tl.load(k + l * sk + off_k, mask=m_k, other=0.), RAW)
        b_bl = tl.load(beta + l * sb + off_b, mask=m_t, other=0.).to(tl.float32)
        b_D = b_d * b_bl[:, None]
        if STORE_D:
            tl.store(dd_out + (l - 1) * sp + off_v, b_D.to(dd_out.dtype.element_ty), mask=m_v)
        b_Bl = tl.dot(b_k1r, tl.trans(b_klr), input_precision=PREC)
        b_Bl = tl.where(m_s, b_Bl * tl.exp(tl.where(m_s, b_gc[:, None] - b_gc[None, :], 0.)), 0.)
        b_X -= _mm(b_Bl, b_D, PREC, D16)
        if STORE_SW:
            b_ke = b_klr.to(tl.float32) * tl.exp(b_gl - b_gc)[:, None]
            b_Sw += _mm(tl.trans(b_ke), b_D, PREC, D16)
    # Tr by a masked pointer load, zero above its diagonal (fla's fused kernel leaves those blocks unwritten): offline
    # sm_90, L=3, 4 warps, 132 B of spills against 208 through `_tr_load` here (version 7, zero-filled buffer: 136)
    b_Tr = _tr_masked(tr, base, o_t, o_i, m_t, H, BT)
    if TR_D16:
        b_Ub = _dot16(b_Tr, b_X * b_b1[:, None], TR_D16)
    else:
        b_Ub = tl.dot(b_Tr.to(tl.float32), b_X * b_b1[:, None], input_precision=PREC)
    tl.store(_cols(ub_out, i_b, i_h, i_t, i_v, T, H, V, BT, BV), b_Ub.to(ub_out.dtype.element_ty),
             boundary_check=(0, 1))
    if STORE_SW:
        tl.store(_state(sw_out, i_b, i_h, i_t, NT, H, K, V, BK, BV, i_v), b_Sw.to(sw_out.dtype.element_ty),
                 boundary_check=(0, 1))


# ----------------------------------------------------------------------------------------- forward (ii)
@triton.jit(do_not_specialize=["T", "H"])
def prism_fwd_h_kernel(
    k, w, ub, sw, dd, gc, h0, hs_out, vnew_out, ht_out, T,
    B, H, K: tl.constexpr, V: tl.constexpr, L: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_H0: tl.constexpr, STORE_HT: tl.constexpr, PREC: tl.constexpr, D16: tl.constexpr = 0,
    SW_D: tl.constexpr = False,
):
    """Sequential pass over chunks. Grid (cdiv(V, BV), B*H).

    Stores h_c (chunk-start state; hs's dtype, bf16 under FWD_16 "hs") in hs [B,N,H,K,V] and V1 = Ub - W h_c in
    vnew [B,T,H,V].
    The extra keys' state write Sw = sum_{l>=2} (e K_l)^T D_l is read from sw (prep_u's, fp32) or, with SW_D
    (FWD_SW="h"), computed here from prep_u's bf16 stash dd [L-1,B,T,H,V] and k_l (bf16 dots, as the V1 term's).
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
        tl.store(_state(hs_out, i_b, i_h, i_t, NT, H, K, V, BK, BV, i_v), b_h.to(hs_out.dtype.element_ty),
                 boundary_check=(0, 1))
        b_w = tl.load(_rows(w, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
        p_ub = tl.make_block_ptr(ub + (i_b * T * H + i_h).to(tl.int64) * V, (T, V), (H * V, 1),
                                 (i_t * BT, i_v * BV), (BT, BV), (1, 0))
        b_v1 = tl.load(p_ub, boundary_check=(0, 1)).to(tl.float32) - _mm(b_w, b_h, PREC, D16)
        p_vn = tl.make_block_ptr(vnew_out + (i_b * T * H + i_h).to(tl.int64) * V, (T, V), (H * V, 1),
                                 (i_t * BT, i_v * BV), (BT, BV), (1, 0))
        tl.store(p_vn, b_v1.to(vnew_out.dtype.element_ty), boundary_check=(0, 1))
        b_gc = tl.load(_vec(gc, i_b, i_h, i_t, T, H, BT), boundary_check=(0,))
        b_gl = tl.load(gc + (i_b * T * H + i_h).to(tl.int64) + (tl.minimum(i_t * BT + BT, T) - 1) * H)
        b_e = tl.where(i_t * BT + o_i < T, tl.exp(b_gl - b_gc), 0.)
        b_k = tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
        # the two branches repeat the V1 term: hoisting it changes version 10's SASS for the default path (the Sw
        # load moves after the dot; scripts/sass_diff.py), which the GPU checks were run on
        if SW_D:
            b_h = b_h * tl.exp(b_gl) + _mm(tl.trans(b_k * b_e[:, None]), b_v1, PREC, D16)
            for l in range(1, L):
                b_kl = tl.load(_rows(k + l * (B * T * H * K), i_b, i_h, i_t, T, H, K, BT, BK),
                               boundary_check=(0, 1)).to(tl.float32)
                b_dl = tl.load(_cols(dd + (l - 1) * (B * T * H * V), i_b, i_h, i_t, i_v, T, H, V, BT, BV),
                               boundary_check=(0, 1))
                b_h += _mm(tl.trans(b_kl * b_e[:, None]), b_dl, PREC, D16)
        else:
            b_sw = tl.load(_state(sw, i_b, i_h, i_t, NT, H, K, V, BK, BV, i_v), boundary_check=(0, 1)).to(tl.float32)
            b_h = b_h * tl.exp(b_gl) + _mm(tl.trans(b_k * b_e[:, None]), b_v1, PREC, D16) + b_sw
    if STORE_HT:
        p_ht = tl.make_block_ptr(ht_out + i_bh.to(tl.int64) * K * V, (K, V), (V, 1), (0, i_v * BV), (BK, BV), (1, 0))
        tl.store(p_ht, b_h, boundary_check=(0, 1))


# ----------------------------------------------------------------------------------------- forward (iii)
@triton.jit(do_not_specialize=["T", "H", "B"])
def prism_fwd_o_kernel(
    q, k, v, u, p, beta, gc, hs, vnew, dd, o, scale, T,
    B, H, K: tl.constexpr, V: tl.constexpr, L: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr,
    D16: tl.constexpr = 0, STASH_D: tl.constexpr = False,
):
    """Outputs, parallel over chunks. Grid (N, B*H). o [B,T,H,V] in q's dtype.
    STASH_D (FWD_STASH_D, with D16): the extra keys' D_l read from prep_u's bf16 stash dd [L-1,B,T,H,V] instead of
    recomputed from v, u, p (the solver chain) and beta."""
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NT = (T + BT - 1) // BT
    sk = B * T * H * K
    sp = B * T * H * V
    sb = B * T * H
    o_i = tl.arange(0, BT)
    m_a = o_i[:, None] >= o_i[None, :]

    b_gc = tl.load(_vec(gc, i_b, i_h, i_t, T, H, BT), boundary_check=(0,))
    b_q = _raw(tl.load(_rows(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
    b_h = tl.load(_state(hs, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), boundary_check=(0, 1)).to(tl.float32)
    b_o = _mm(b_q.to(tl.float32), b_h, PREC, D16) * (tl.exp(b_gc) * scale)[:, None]
    b_k1 = _raw(tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
    b_v1 = tl.load(_rows(vnew, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
    # the decay mask G<= is rebuilt for each key (version 7) rather than held as a [BT, BT] fp32 tile across them
    b_P = _gmat(b_gc, m_a) * scale * tl.dot(b_q, tl.trans(b_k1), input_precision=PREC)
    b_o += _mm(b_P, b_v1, PREC, D16)
    if STASH_D:
        for l in range(1, L):
            b_D = tl.load(_rows(dd + (l - 1) * sp, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1))
            b_kl = _raw(tl.load(_rows(k + l * sk, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
            b_P = _gmat(b_gc, m_a) * scale * tl.dot(b_q, tl.trans(b_kl), input_precision=PREC)
            b_o += _mm(b_P, b_D, PREC, D16)
    elif L > 1:
        b_r = (tl.load(_rows(v, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
               - tl.load(_rows(u, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32))
        b_r = b_r - _gelu(tl.load(_rows(p, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
                          * b_r)
        # the extra keys in a runtime loop (version 7; was unrolled): one key's tiles live at a time
        for l in range(1, L):
            b_p = tl.load(_rows(p + l * sp, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
            b_d = _gelu(b_p * b_r)
            b_r = b_r - b_d      # r_{l+1}; unused after the last key
            b_kl = _raw(tl.load(_rows(k + l * sk, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
            b_bl = tl.load(_vec(beta + l * sb, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
            b_P = _gmat(b_gc, m_a) * scale * tl.dot(b_q, tl.trans(b_kl), input_precision=PREC)
            b_o += _mm(b_P, b_d * b_bl[:, None], PREC, D16)
    tl.store(_rows(o, i_b, i_h, i_t, T, H, V, BT, BV), b_o.to(o.dtype.element_ty), boundary_check=(0, 1))


# ----------------------------------------------------------------------------------------- backward (B)
@triton.jit(do_not_specialize=["T", "H"])
def prism_bwd_dh_kernel(
    q, k, w, gc, do, dv, dht, dhs_out, dh0_out, dhs16_out, scale, T,
    H, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_DHT: tl.constexpr, STORE_DH0: tl.constexpr, PREC: tl.constexpr, D16: tl.constexpr = 0,
    STORE16: tl.constexpr = False, STORE32: tl.constexpr = True,
):
    """Reverse pass over chunks. Grid (cdiv(V, BV), B*H).

    dv [B,T,H,V] holds dVloc on entry and dV1 = dVloc + (e K1) dH_{c+1} on exit (in place);
    dhs [B,N,H,K,V] gets dH_{c+1} = dL/d(state at the end of chunk c); dh0 [B,H,K,V] = dH_0.
    STORE16: dhs16 [B,N,H,K,V] (its dtype, bf16) also gets dH_{c+1}, rounded (KEYS_BF16 "dh").
    STORE32 False (DH16_WY, with STORE16): the fp32 dhs is not stored (every reader takes the bf16 copy).
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
        if STORE32:
            tl.store(_state(dhs_out, i_b, i_h, i_t, NT, H, K, V, BK, BV, i_v), b_dh, boundary_check=(0, 1))
        if STORE16:
            tl.store(_state(dhs16_out, i_b, i_h, i_t, NT, H, K, V, BK, BV, i_v),
                     b_dh.to(dhs16_out.dtype.element_ty), boundary_check=(0, 1))
        b_gc = tl.load(_vec(gc, i_b, i_h, i_t, T, H, BT), boundary_check=(0,))
        b_gl = tl.load(gc + (i_b * T * H + i_h).to(tl.int64) + (tl.minimum(i_t * BT + BT, T) - 1) * H)
        m_t = i_t * BT + o_i < T
        b_e = tl.where(m_t, tl.exp(b_gl - b_gc), 0.)
        b_gam = tl.where(m_t, tl.exp(b_gc), 0.) * scale
        b_k = tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
        p_dv = tl.make_block_ptr(dv + (i_b * T * H + i_h).to(tl.int64) * V, (T, V), (H * V, 1),
                                 (i_t * BT, i_v * BV), (BT, BV), (1, 0))
        b_dv = tl.load(p_dv, boundary_check=(0, 1)) + _mm(b_k * b_e[:, None], b_dh, PREC, D16)
        tl.store(p_dv, b_dv, boundary_check=(0, 1))
        b_qt = tl.load(_rows_t(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
        b_wt = tl.load(_rows_t(w, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
        p_do = tl.make_block_ptr(do + (i_b * T * H + i_h).to(tl.int64) * V, (T, V), (H * V, 1),
                                 (i_t * BT, i_v * BV), (BT, BV), (1, 0))
        b_do = tl.load(p_do, boundary_check=(0, 1)).to(tl.float32)
        b_dh = (b_dh * tl.exp(b_gl) + _mm(b_qt * b_gam[None, :], b_do, PREC, D16)
                - _mm(b_wt, b_dv, PREC, D16))
    if STORE_DH0:
        p_dh0 = tl.make_block_ptr(dh0_out + i_bh.to(tl.int64) * K * V, (K, V), (V, 1), (0, i_v * BV), (BK, BV), (1, 0))
        tl.store(p_dh0, b_dh, boundary_check=(0, 1))


# ----------------------------------------------------------------------------------------- backward (C1)
@triton.jit
def _decays(gc, i_b, i_h, i_t, T, H, BT: tl.constexpr):
    """Chunk-local decays: gc [BT], log gamma_C, gamma [BT], e = gamma_C / gamma [BT] (0 past T)."""
    o_i = tl.arange(0, BT)
    b_gc = tl.load(_vec(gc, i_b, i_h, i_t, T, H, BT), boundary_check=(0,))
    b_gl = tl.load(gc + (i_b * T * H + i_h).to(tl.int64) + (tl.minimum(i_t * BT + BT, T) - 1) * H)
    m_t = i_t * BT + o_i < T
    return b_gc, b_gl, tl.where(m_t, tl.exp(b_gc), 0.), tl.where(m_t, tl.exp(b_gl - b_gc), 0.)


@triton.jit
def _gmat(b_gc, m):
    """G_ti = exp(gc_t - gc_i) where m (a [BT, BT] mask within the lower triangle), else 0."""
    return tl.where(m, tl.exp(tl.where(m, b_gc[:, None] - b_gc[None, :], 0.)), 0.)


@triton.jit
def _gmat_t(b_gc, m):
    """G^T: entry (i, t) = exp(gc_t - gc_i) where m (a [BT, BT] mask within the upper triangle: the transpose of
    `_gmat`'s), else 0. For products built transposed (D16), so that no dot result is transposed."""
    return tl.where(m, tl.exp(tl.where(m, b_gc[None, :] - b_gc[:, None], 0.)), 0.)


@triton.jit(do_not_specialize=["T", "H"])
def prism_bwd_wy_kernel(
    q, k, beta, gc, hs, dhs, do, dv1, w, ub, tr,
    dqp, dbp, dgp, scale, T,
    H, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr,
):
    """Gradients through the WY part and the first key (prism_bwd.md phase C, first half). Grid (N, B*H).

    Reads Ub and W ([B,T,H,V] / [B,T,H,K] fp32) and overwrites the same rows with dY = Tr^T dV1 and the
    partial dk1 (the buffers are reused: each program reads and writes its own chunk only). Writes the
    partial dq (of Qs = scale q) dqp [B,T,H,K], dbeta1 dbp [B,T,H] and dg dgp [B,T,H] (all fp32).
    """
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NT = (T + BT - 1) // BT
    o_i = tl.arange(0, BT)
    m_s = o_i[:, None] > o_i[None, :]
    b_gc, b_gl, b_gam, b_e = _decays(gc, i_b, i_h, i_t, T, H, BT)
    b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)

    # (ordered so that few [BT, BK] / [BK, BV] tiles are live at once)
    b_h = tl.load(_state(hs, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), boundary_check=(0, 1)).to(tl.float32)
    b_w = tl.load(_rows(w, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
    b_ub = tl.load(_rows(ub, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1))
    b_v1 = b_ub - tl.dot(b_w, b_h, input_precision=PREC)                     # V1 = Ub - W h
    # first key's state write and read-out (V_1 = V1), and the h terms
    b_dhn = tl.load(_state(dhs, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), boundary_check=(0, 1))
    b_dbh = tl.exp(b_gl) * tl.sum(tl.sum(b_h * b_dhn, axis=1), axis=0)       # from gamma_C h
    b_dKd = tl.dot(b_v1, tl.trans(b_dhn), input_precision=PREC)
    b_do = tl.load(_rows(do, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
    b_dE = _gmat(b_gc, o_i[:, None] >= o_i[None, :]) * tl.dot(b_do, tl.trans(b_v1), input_precision=PREC)
    b_dqs = tl.dot(b_do, tl.trans(b_h), input_precision=PREC) * b_gam[:, None]  # from diag(gamma) Qs h
    b_dv1 = tl.load(_rows(dv1, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1))
    b_dw = -tl.dot(b_dv1, tl.trans(b_h), input_precision=PREC)

    # ---- WY part: V1 = Ub - W h, Ub = Tr Y, W = Tr Z, Tr = (I + A)^-1
    b_trt = _tr_load(_rows_t(tr, i_b, i_h, i_t, T, H, BT, BT, BT), BT, True)   # Tr^T
    b_dY = tl.dot(b_trt, b_dv1, input_precision=PREC)
    b_dZ = tl.dot(b_trt, b_dw, input_precision=PREC)
    b_dA = -tl.where(m_s, tl.dot(b_dY, tl.trans(b_ub), input_precision=PREC)
                     + tl.dot(b_dZ, tl.trans(b_w), input_precision=PREC), 0.)
    tl.store(_rows(ub, i_b, i_h, i_t, T, H, V, BT, BV), b_dY, boundary_check=(0, 1))

    b_qs = tl.load(_rows(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32) * scale
    b_rho = tl.sum(b_qs * b_dqs, axis=1)
    b_k1r = _raw(tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
    b_k1 = b_k1r.to(tl.float32)
    b_dqs += tl.dot(b_dE, b_k1, input_precision=PREC)
    b_M = tl.where(m_s, b_dE * tl.dot(b_qs, tl.trans(b_k1), input_precision=PREC), 0.)
    b_rho += tl.sum(b_M, axis=1) - tl.sum(b_M, axis=0)
    b_s = b_e * tl.sum(b_k1 * b_dKd, axis=1)
    b_dk1 = tl.dot(tl.trans(b_dE), b_qs, input_precision=PREC) + b_dKd * b_e[:, None]
    b_dkz = b_dZ * (b_b1 * b_gam)[:, None]
    b_rho += tl.sum(b_k1 * b_dkz, axis=1)                                     # Z . dZ
    b_dk1 += b_dkz
    b_GS = _gmat(b_gc, m_s) * tl.dot(b_k1r, tl.trans(b_k1r), input_precision=PREC)   # G< . K1 K1^T
    b_db1 = tl.sum(b_dA * b_GS, axis=1) + b_gam * tl.sum(b_k1 * b_dZ, axis=1)
    b_dA = b_dA * b_b1[:, None]
    b_M = b_dA * b_GS
    b_rho += tl.sum(b_M, axis=1) - tl.sum(b_M, axis=0)
    b_dSA = b_dA * _gmat(b_gc, m_s)
    b_dk1 += tl.dot(b_dSA + tl.trans(b_dSA), b_k1, input_precision=PREC)

    tl.store(_rows(dqp, i_b, i_h, i_t, T, H, K, BT, BK), b_dqs, boundary_check=(0, 1))
    tl.store(_rows(w, i_b, i_h, i_t, T, H, K, BT, BK), b_dk1, boundary_check=(0, 1))
    tl.store(_vec(dbp, i_b, i_h, i_t, T, H, BT), b_db1, boundary_check=(0,))
    # dg_j = sum_{t >= j} rho_t + sum_{t < j} s_t + gamma_C <h, dH'>  (split form, exact under strong decay)
    b_dg = tl.cumsum(b_rho, axis=0, reverse=True) + (tl.cumsum(b_s, axis=0) - b_s) + b_dbh
    tl.store(_vec(dgp, i_b, i_h, i_t, T, H, BT), b_dg, boundary_check=(0,))


@triton.jit(do_not_specialize=["T", "H"])
def prism_bwd_wy2_cols_kernel(
    tr, hs, w, ub, dv1, v1, T,
    H, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr, D16: tl.constexpr = 0,
):
    """Phase C1, WY_IMPL="split2", first kernel: the per-column part. Grid (cdiv(V, BV), N, B*H), BV = WY_BV.

    For columns [BV i_v, BV i_v + BV) of V (no product here reduces over V) and its chunk's rows: dY = Tr^T dV1
    stored over Ub and V1 = Ub - W h stored into v1, which is dV1's buffer (each program reads, then overwrites, only
    its own block) or, with WY_V1_16, a bf16 buffer of its own (v1's dtype).
    W is read, not written. After this, the WY part needs only dY, V1 and h (prism_bwd_wy2_erase_kernel).
    D16 (DOT16 "wy", L > 1): both dots in bf16 (`_mm`).
    """
    i_v, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    NT = (T + BT - 1) // BT
    p_ub = _cols(ub, i_b, i_h, i_t, i_v, T, H, V, BT, BV)
    p_dv = _cols(dv1, i_b, i_h, i_t, i_v, T, H, V, BT, BV)
    o_i = tl.arange(0, BT)   # Tr^T by masked pointer load: zero below its diagonal (fla's unwritten blocks)
    b_trt = tl.load(tr + (i_b * T * H + i_h).to(tl.int64) * BT + (i_t * BT + o_i[None, :]) * (H * BT) + o_i[:, None],
                    mask=((i_t * BT + o_i[None, :]) < T) & (o_i[:, None] <= o_i[None, :]), other=0.).to(tl.float32)
    b_dv1 = tl.load(p_dv, boundary_check=(0, 1))
    b_dY = _mm(b_trt, b_dv1, PREC, D16)
    b_h = tl.load(_state(hs, i_b, i_h, i_t, NT, H, K, V, BK, BV, i_v), boundary_check=(0, 1)).to(tl.float32)
    b_w = tl.load(_rows(w, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
    b_ub = tl.load(p_ub, boundary_check=(0, 1))
    tl.store(_cols(v1, i_b, i_h, i_t, i_v, T, H, V, BT, BV), (b_ub - _mm(b_w, b_h, PREC, D16)).to(v1.dtype.element_ty),
             boundary_check=(0, 1))                                             # V1 = Ub - W h
    tl.store(p_ub, b_dY, boundary_check=(0, 1))


@triton.jit(do_not_specialize=["T", "H"])
def prism_bwd_wy2_erase_kernel(
    k, beta, gc, hs, dhs, dy, v1, w, dbp, dgp, T,
    H, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr,
    D16: tl.constexpr = 0,
):
    """Phase C1, WY_IMPL="split2", second kernel (after prism_bwd_wy2_cols_kernel): the WY (erase) part and the
    first key's state write. Grid (N, B*H). Reads dY (dy, the Ub buffer), V1 (v1, the dV1 buffer), h, dH', k1;
    uses dZ = Tr^T dW = -dY h^T and dY Ub^T + dZ W^T = dY V1^T, so neither W, Ub nor Tr is read. Overwrites W
    (dead since the first kernel) with the partial dk1 = diag(b1 gamma) dZ + (dSA + dSA^T) K1 + diag(e) V1 dH'^T;
    writes dbeta1 dbp and dg dgp (rho terms Z . dZ and the dA . (G< . S) pair, the state write's s, and
    gamma_C <h, dH'>).
    D16 (DOT16 "wy", L > 1): the dots in bf16 (`_mm`) except the one whose operand holds a transposed dot result
    ((dSA + dSA^T) K1), which stays at PREC.
    """
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NT = (T + BT - 1) // BT
    o_i = tl.arange(0, BT)
    m_s = o_i[:, None] > o_i[None, :]
    b_gc, b_gl, b_gam, b_e = _decays(gc, i_b, i_h, i_t, T, H, BT)
    b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
    # (ordered so that few [BT, BK] / [BT, BV] fp32 tiles are live at once: state write, then dZ, then dA)
    b_v1 = tl.load(_rows(v1, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1))
    b_dhn = tl.load(_state(dhs, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), boundary_check=(0, 1)).to(tl.float32)
    b_dKd = _mm(b_v1, tl.trans(b_dhn), PREC, D16)                          # V1 dH'^T
    b_k1 = tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32)
    b_s = b_e * tl.sum(b_k1 * b_dKd, axis=1)
    b_dk1 = b_dKd * b_e[:, None]
    b_h = tl.load(_state(hs, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), boundary_check=(0, 1)).to(tl.float32)
    b_dbh = tl.exp(b_gl) * tl.sum(tl.sum(b_h * b_dhn, axis=1), axis=0)       # from gamma_C h
    b_dy = tl.load(_rows(dy, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1))
    b_dZ = -_mm(b_dy, tl.trans(b_h), PREC, D16)
    b_dkz = b_dZ * (b_b1 * b_gam)[:, None]
    b_rho = tl.sum(b_k1 * b_dkz, axis=1)                                     # Z . dZ
    b_db1 = b_gam * tl.sum(b_k1 * b_dZ, axis=1)
    b_dk1 += b_dkz
    # dA = -(dY V1^T), used only through G< (strictly lower), so no mask of its own
    b_dA = -_mm(b_dy, tl.trans(b_v1), PREC, D16)
    b_k1r = _raw(tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
    b_G = _gmat(b_gc, m_s)
    b_GS = b_G * tl.dot(b_k1r, tl.trans(b_k1r), input_precision=PREC)      # G< . K1 K1^T
    b_db1 += tl.sum(b_dA * b_GS, axis=1)
    b_dA = b_dA * b_b1[:, None]
    b_M = b_dA * b_GS
    b_rho += tl.sum(b_M, axis=1) - tl.sum(b_M, axis=0)
    b_dSA = b_dA * b_G
    b_dk1 += tl.dot(b_dSA + tl.trans(b_dSA), b_k1, input_precision=PREC)
    tl.store(_rows(w, i_b, i_h, i_t, T, H, K, BT, BK), b_dk1, boundary_check=(0, 1))
    tl.store(_vec(dbp, i_b, i_h, i_t, T, H, BT), b_db1, boundary_check=(0,))
    # dg_j = sum_{t >= j} rho_t + sum_{t < j} s_t + gamma_C <h, dH'>  (split form, exact under strong decay; the
    # read-out's rho is added by prism_bwd_wy2_read_kernel)
    b_dg = tl.cumsum(b_rho, axis=0, reverse=True) + (tl.cumsum(b_s, axis=0) - b_s) + b_dbh
    tl.store(_vec(dgp, i_b, i_h, i_t, T, H, BT), b_dg, boundary_check=(0,))


@triton.jit(do_not_specialize=["T", "H"])
def prism_bwd_wy2_read_kernel(
    q, k, gc, hs, do, v1, w, dqp, dgp, scale, T,
    H, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr,
    D16: tl.constexpr = 0,
):
    """Phase C1, WY_IMPL="split2", third kernel (after prism_bwd_wy2_erase_kernel): the first key's read-out.
    Grid (N, B*H). Reads V1 (v1, the dV1 buffer), h, dO, q, k1 of its chunk; writes the partial dq dqp; adds
    dE^T Qs to the partial dk1 in w and the read-out's rho to dgp (read-modify-write of its own rows).
    D16 (DOT16 "wy", L > 1): the dots in bf16 (`_mm`) except dE^T Qs (a transposed dot result), which stays at PREC.
    """
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NT = (T + BT - 1) // BT
    o_i = tl.arange(0, BT)
    m_s = o_i[:, None] > o_i[None, :]
    b_gc, b_gl, b_gam, b_e = _decays(gc, i_b, i_h, i_t, T, H, BT)
    b_do = tl.load(_rows(do, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
    b_v1 = tl.load(_rows(v1, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1))
    b_dE = _gmat(b_gc, o_i[:, None] >= o_i[None, :]) * _mm(b_do, tl.trans(b_v1), PREC, D16)
    b_h = tl.load(_state(hs, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), boundary_check=(0, 1)).to(tl.float32)
    b_dqs = _mm(b_do, tl.trans(b_h), PREC, D16) * b_gam[:, None]  # from diag(gamma) Qs h
    b_qs = tl.load(_rows(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(tl.float32) * scale
    b_rho = tl.sum(b_qs * b_dqs, axis=1)
    b_k1r = _raw(tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
    b_k1 = b_k1r.to(tl.float32)
    b_dqs += _mm(b_dE, b_k1, PREC, D16)
    tl.store(_rows(dqp, i_b, i_h, i_t, T, H, K, BT, BK), b_dqs, boundary_check=(0, 1))
    b_M = tl.where(m_s, b_dE * _mm(b_qs, tl.trans(b_k1), PREC, D16), 0.)
    b_rho += tl.sum(b_M, axis=1) - tl.sum(b_M, axis=0)
    p_w = _rows(w, i_b, i_h, i_t, T, H, K, BT, BK)
    tl.store(p_w, tl.load(p_w, boundary_check=(0, 1)) + tl.dot(tl.trans(b_dE), b_qs, input_precision=PREC),
             boundary_check=(0, 1))
    p_dg = _vec(dgp, i_b, i_h, i_t, T, H, BT)
    tl.store(p_dg, tl.load(p_dg, boundary_check=(0,)) + tl.cumsum(b_rho, axis=0, reverse=True), boundary_check=(0,))


# ----------------------------------------------------------------------------------------- backward (C2)
@triton.jit(do_not_specialize=["T", "H", "B"])
def prism_bwd_keys_kernel(
    q, k, v, u, p, beta, gc, dhs, do, dy, dqp, dkp, dbp, dgp,
    dq, dk, dv, du, dp, dbeta, dg, scale, T,
    B, H, K: tl.constexpr, V: tl.constexpr, L: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr,
):
    """Extra keys l >= 2 and the solver's chain rule (phase C, second half); finishes every gradient.

    Grid (N, B*H). Reads dY and the partial dq, dk1, dbeta1, dg of prism_bwd_wy; writes dq, dk [L,...],
    dv, du, dp [L,...], dbeta [L,...] (input dtypes) and dg [B,T,H] (fp32; may alias dgp).
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
    b_gc, b_gl, b_gam, b_e = _decays(gc, i_b, i_h, i_t, T, H, BT)
    b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
    b_dqs = tl.load(_rows(dqp, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1))
    b_dk1 = tl.load(_rows(dkp, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1))
    b_db1 = tl.load(_vec(dbp, i_b, i_h, i_t, T, H, BT), boundary_check=(0,))
    b_dY = tl.load(_rows(dy, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1))
    b_rho = tl.zeros([BT], dtype=tl.float32)
    b_s = tl.zeros([BT], dtype=tl.float32)

    b_dr = tl.zeros([BT, BV], dtype=tl.float32)
    if L > 1:
        for l in tl.static_range(L - 1, 0, -1):
            # tiles re-read per key (L2 hits) rather than kept live across the loop
            b_qr = _raw(tl.load(_rows(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
            b_k1r = _raw(tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
            b_do = tl.load(_rows(do, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
            # recompute r_l, z_l, Delta_l
            b_r = (tl.load(_rows(v, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
                   - tl.load(_rows(u, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32))
            for m in tl.static_range(l):
                b_pm = tl.load(_rows(p + m * sp, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
                b_r = b_r - _gelu(b_pm * b_r)
            b_p = tl.load(_rows(p + l * sp, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
            b_z = b_p * b_r
            b_klr = _raw(tl.load(_rows(k + l * sk, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
            b_kl = b_klr.to(tl.float32)
            b_bl = tl.load(_vec(beta + l * sb, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
            b_d = _gelu(b_z)
            b_D = b_d * b_bl[:, None]
            # read-out
            b_Gi = _gmat(b_gc, m_a)
            b_E = tl.dot(b_qr, tl.trans(b_klr), input_precision=PREC) * scale
            b_dE = b_Gi * tl.dot(b_do, tl.trans(b_D), input_precision=PREC)
            b_dqs += tl.dot(b_dE, b_kl, input_precision=PREC)
            b_dkl = tl.dot(tl.trans(b_dE), b_qr.to(tl.float32), input_precision=PREC) * scale
            b_M = tl.where(m_s, b_dE * b_E, 0.)
            b_rho += tl.sum(b_M, axis=1) - tl.sum(b_M, axis=0)
            b_dD = tl.dot(tl.trans(b_Gi * b_E), b_do, input_precision=PREC)
            # state write
            b_dhn = tl.load(_state(dhs, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), boundary_check=(0, 1))
            b_dKd = tl.dot(b_D, tl.trans(b_dhn), input_precision=PREC)
            b_dkl += b_dKd * b_e[:, None]
            b_s += b_e * tl.sum(b_kl * b_dKd, axis=1)
            b_dD += tl.dot(b_kl * b_e[:, None], b_dhn, input_precision=PREC)
            # intra-chunk write into X = Delta_1 - sum_l (G< . K1 K_l^T) D_l
            b_F = tl.dot(b_k1r, tl.trans(b_klr), input_precision=PREC)
            b_GF = _gmat(b_gc, m_s) * b_F
            b_db1 -= tl.sum(tl.dot(b_GF, b_D, input_precision=PREC) * b_dY, axis=1)
            b_dX = b_dY * b_b1[:, None]
            b_dD -= tl.dot(tl.trans(b_GF), b_dX, input_precision=PREC)
            b_dF = -_gmat(b_gc, m_s) * tl.dot(b_dX, tl.trans(b_D), input_precision=PREC)
            b_dk1 += tl.dot(b_dF, b_kl, input_precision=PREC)
            b_dkl += tl.dot(tl.trans(b_dF), b_k1r.to(tl.float32), input_precision=PREC)
            b_M = b_dF * b_F
            b_rho += tl.sum(b_M, axis=1) - tl.sum(b_M, axis=0)
            tl.store(_rows(dk + l * sk, i_b, i_h, i_t, T, H, K, BT, BK), b_dkl.to(dk.dtype.element_ty),
                     boundary_check=(0, 1))
            tl.store(_vec(dbeta + l * sb, i_b, i_h, i_t, T, H, BT),
                     tl.sum(b_d * b_dD, axis=1).to(dbeta.dtype.element_ty),
                     boundary_check=(0,))
            # solver: r_{l+1} = r_l - Delta_l, Delta_l = GELU(p_l r_l)
            b_dz = (b_dD * b_bl[:, None] - b_dr) * _gelu_grad(b_z)
            tl.store(_rows(dp + l * sp, i_b, i_h, i_t, T, H, V, BT, BV), (b_dz * b_r).to(dp.dtype.element_ty),
                     boundary_check=(0, 1))
            b_dr += b_dz * b_p

    # ---- first step of the solver (dDelta_1 = dX) and X's Delta_1 term of dbeta1
    b_r1, b_p = _solver_seed(v, u, p, i_b, i_h, i_t, 0, T, H, V, BT, BV)
    b_z = b_p * b_r1
    b_db1 += tl.sum(_gelu(b_z) * b_dY, axis=1)
    b_dz = (b_dY * b_b1[:, None] - b_dr) * _gelu_grad(b_z)
    tl.store(_rows(dp, i_b, i_h, i_t, T, H, V, BT, BV), (b_dz * b_r1).to(dp.dtype.element_ty), boundary_check=(0, 1))
    b_dr += b_dz * b_p
    tl.store(_rows(dv, i_b, i_h, i_t, T, H, V, BT, BV), b_dr.to(dv.dtype.element_ty), boundary_check=(0, 1))
    tl.store(_rows(du, i_b, i_h, i_t, T, H, V, BT, BV), (-b_dr).to(du.dtype.element_ty), boundary_check=(0, 1))
    tl.store(_rows(dq, i_b, i_h, i_t, T, H, K, BT, BK), (b_dqs * scale).to(dq.dtype.element_ty), boundary_check=(0, 1))
    tl.store(_rows(dk, i_b, i_h, i_t, T, H, K, BT, BK), b_dk1.to(dk.dtype.element_ty), boundary_check=(0, 1))
    tl.store(_vec(dbeta, i_b, i_h, i_t, T, H, BT), b_db1.to(dbeta.dtype.element_ty), boundary_check=(0,))
    b_dg = tl.load(_vec(dgp, i_b, i_h, i_t, T, H, BT), boundary_check=(0,))
    b_dg += tl.cumsum(b_rho, axis=0, reverse=True) + (tl.cumsum(b_s, axis=0) - b_s)
    tl.store(_vec(dg, i_b, i_h, i_t, T, H, BT), b_dg, boundary_check=(0,))


# ----------------------------------------------------------------------------------------- backward (C2, split)
@triton.jit
def _key_delta(v, u, p, beta, i_b, i_h, i_t, i_v, T, H, l, sb, V: tl.constexpr, BT: tl.constexpr,
               BV: tl.constexpr):
    """Key l's solver quantities, recomputed from v, u, p: r_l (l GELU steps from r_1 = v - u; a runtime loop),
    p_l, z_l = p_l r_l and beta_l, on column block i_v of V. sb = B*T*H (int64): stride of the L axis of beta (of p:
    sb * V)."""
    b_r = (tl.load(_cols(v, i_b, i_h, i_t, i_v, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
           - tl.load(_cols(u, i_b, i_h, i_t, i_v, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32))
    for m in range(0, l):
        b_pm = tl.load(_cols(p + m * sb * V, i_b, i_h, i_t, i_v, T, H, V, BT, BV),
                       boundary_check=(0, 1)).to(tl.float32)
        b_r = b_r - _gelu(b_pm * b_r)
    b_p = tl.load(_cols(p + l * sb * V, i_b, i_h, i_t, i_v, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
    b_bl = tl.load(_vec(beta + l * sb, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
    return b_r, b_p, b_p * b_r, b_bl


@triton.jit
def _key_D(dd, i_d, v, u, p, beta, i_b, i_h, i_t, T, H, ll, sb, V: tl.constexpr, BT: tl.constexpr,
           BV: tl.constexpr, STASH_D: tl.constexpr):
    """Key ll's D_l = GELU(z_l) beta_l, [BT, BV]: read from its bf16 stash (STASH_D; the [B,T,H,V] buffer i_d of dd)
    or recomputed in fp32 from v, u, p (`_key_delta`; dd may be None then)."""
    if STASH_D:
        b_D = tl.load(_rows(dd + i_d * sb * V, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1))
    else:
        b_r, b_p, b_z, b_bl = _key_delta(v, u, p, beta, i_b, i_h, i_t, 0, T, H, ll, sb, V, BT, BV)
        b_D = _gelu(b_z) * b_bl[:, None]
    return b_D


@triton.jit
def _solver_seed(v, u, p, i_b, i_h, i_t, i_v, T, H, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr):
    """The solver's first step inputs, fp32, column block i_v of V: r_1 = v - u and the gain p_1 (the tail's, and the
    LAST launches')."""
    b_r0 = (tl.load(_cols(v, i_b, i_h, i_t, i_v, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
            - tl.load(_cols(u, i_b, i_h, i_t, i_v, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32))
    return b_r0, tl.load(_cols(p, i_b, i_h, i_t, i_v, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)


@triton.jit
def _solver_first_step(v, u, p, beta, dy, dp, dv, du, b_dr, i_b, i_h, i_t, i_v, T, H, V: tl.constexpr,
                       BT: tl.constexpr, BV: tl.constexpr):
    """The solver's first step (the tail's), after the extra keys' running dr: dDelta_1 = dX = diag(beta1) dY,
    r_1 = v - u; stores dp[0] and dv = dr_1, du = -dr_1 (input dtypes), column block i_v of V."""
    b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
    b_r0, b_p0 = _solver_seed(v, u, p, i_b, i_h, i_t, i_v, T, H, V, BT, BV)
    b_dz0 = (tl.load(_cols(dy, i_b, i_h, i_t, i_v, T, H, V, BT, BV), boundary_check=(0, 1)) * b_b1[:, None]
             - b_dr) * _gelu_grad(b_p0 * b_r0)
    b_dr += b_dz0 * b_p0
    tl.store(_cols(dp, i_b, i_h, i_t, i_v, T, H, V, BT, BV), (b_dz0 * b_r0).to(dp.dtype.element_ty),
             boundary_check=(0, 1))
    tl.store(_cols(dv, i_b, i_h, i_t, i_v, T, H, V, BT, BV), b_dr.to(dv.dtype.element_ty), boundary_check=(0, 1))
    tl.store(_cols(du, i_b, i_h, i_t, i_v, T, H, V, BT, BV), (-b_dr).to(du.dtype.element_ty), boundary_check=(0, 1))


@triton.jit
def _key_dD(q, k, beta, dhs, do, dy, b_gc, b_e, scale, i_b, i_h, i_t, i_v, T, H, NT, ll, sb, K: tl.constexpr,
            V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
            RAW: tl.constexpr, D16: tl.constexpr = 0):
    """The values program's dD_l = (G<= . Qs K_l^T)^T dO + diag(e) K_l dH' - (G< . K1 K_l^T)^T dX (dX = diag(beta1)
    dY), fp32 [BT, BV], column block i_v of V; with D16 the transposed products are built transposed (`_gmat_t`)."""
    o_i = tl.arange(0, BT)
    b_klr = _raw(tl.load(_rows(k + ll * sb * K, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
    b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
    b_qr = _raw(tl.load(_rows(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
    b_do = tl.load(_cols(do, i_b, i_h, i_t, i_v, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
    if D16:   # (G<= . Qs K_l^T)^T built transposed: K_l Qs^T under G's transposed mask
        b_GEt = (_gmat_t(b_gc, o_i[:, None] <= o_i[None, :]) * scale
                 * tl.dot(b_klr, tl.trans(b_qr), input_precision=PREC))
        b_dD = _mm(b_GEt, b_do, PREC, D16)
    else:
        b_GE = _gmat(b_gc, o_i[:, None] >= o_i[None, :]) * tl.dot(b_qr, tl.trans(b_klr), input_precision=PREC) * scale
        b_dD = tl.dot(tl.trans(b_GE), b_do, input_precision=PREC)
    b_dhn = tl.load(_state(dhs, i_b, i_h, i_t, NT, H, K, V, BK, BV, i_v), boundary_check=(0, 1))
    b_dD += _mm(b_klr.to(tl.float32) * b_e[:, None], b_dhn, PREC, D16)
    b_k1r = _raw(tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
    b_dX = tl.load(_cols(dy, i_b, i_h, i_t, i_v, T, H, V, BT, BV), boundary_check=(0, 1)) * b_b1[:, None]
    if D16:
        b_GFt = _gmat_t(b_gc, o_i[:, None] < o_i[None, :]) * tl.dot(b_klr, tl.trans(b_k1r), input_precision=PREC)
        b_dD -= _mm(b_GFt, b_dX, PREC, D16)
    else:
        b_GF = _gmat(b_gc, o_i[:, None] > o_i[None, :]) * tl.dot(b_k1r, tl.trans(b_klr), input_precision=PREC)
        b_dD -= tl.dot(tl.trans(b_GF), b_dX, input_precision=PREC)
    return b_dD


@triton.jit
def _key_dk_cols(q, k, v, u, p, beta, dhs, do, dy, dk, dd, b_gc, b_e, m_a, m_s, scale, i_b, i_h, i_t, T, H, NT, ll,
                 sb, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                 PREC: tl.constexpr, RAW: tl.constexpr, D16: tl.constexpr = 0, STASH_D: tl.constexpr = False):
    """The columns program of the per-key kernel (prism_bwd_key_kernel's program 1): stores
    dk_l = dE^T Qs + diag(e) D_l dH'^T + dF^T K1 for chunk i_t, key ll (dE, dF recomputed from dO, dY, D_l).
    With D16, dE^T and dF^T are built transposed (D dO^T, D dX^T under G's transposed masks), not transposed.
    STASH_D: D_l read from dd (stored by the values program) instead of recomputed."""
    b_D = _key_D(dd, 0, v, u, p, beta, i_b, i_h, i_t, T, H, ll, sb, V, BT, BV, STASH_D)
    b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
    b_dhn = tl.load(_state(dhs, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), boundary_check=(0, 1))
    b_dkl = _mm(b_D, tl.trans(b_dhn), PREC, D16) * b_e[:, None]
    b_do = tl.load(_rows(do, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
    b_qr = _raw(tl.load(_rows(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
    b_dX = tl.load(_rows(dy, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)) * b_b1[:, None]
    b_k1r = _raw(tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
    if D16:
        o_i = tl.arange(0, BT)
        b_dEt = _gmat_t(b_gc, o_i[:, None] <= o_i[None, :]) * _mm(b_D, tl.trans(b_do), PREC, D16) * scale
        b_dkl += _mm(b_dEt, b_qr.to(tl.float32), PREC, D16)
        b_dFt = -_gmat_t(b_gc, o_i[:, None] < o_i[None, :]) * _mm(b_D, tl.trans(b_dX), PREC, D16)
        b_dkl += _mm(b_dFt, b_k1r.to(tl.float32), PREC, D16)
    else:
        b_dE = _gmat(b_gc, m_a) * tl.dot(b_do, tl.trans(b_D), input_precision=PREC) * scale
        b_dkl += tl.dot(tl.trans(b_dE), b_qr.to(tl.float32), input_precision=PREC)
        b_dF = -_gmat(b_gc, m_s) * tl.dot(b_dX, tl.trans(b_D), input_precision=PREC)
        b_dkl += tl.dot(tl.trans(b_dF), b_k1r.to(tl.float32), input_precision=PREC)
    tl.store(_rows(dk + ll * sb * K, i_b, i_h, i_t, T, H, K, BT, BK), b_dkl.to(dk.dtype.element_ty),
             boundary_check=(0, 1))


@triton.jit(do_not_specialize=["T", "H", "B", "l"])
def prism_bwd_key_kernel(
    q, k, v, u, p, beta, gc, dhs, do, dy, dqp, dkp, dbp, dgp, drp,
    dk, dp, dbeta, dq, dv, du, dd, dbv, scale, T,
    B, H, l, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    FIRST: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr, KIND: tl.constexpr = -1, LAST: tl.constexpr = False,
    D16: tl.constexpr = 0, STASH_D: tl.constexpr = False, NV: tl.constexpr = 1,
):
    """One extra key l >= 1 (0-based; prism_bwd.md's l+1) of phase C2. KIND = -1 (KEYS_IMPL="split"): grid
    (3, N, B*H), the program kind is program_id(0); KIND in {0, 1, 2} (KEYS_IMPL="kinds"): grid (1, N, B*H), every
    program is of that kind, compiled alone (registers, shared memory and spills of that kind only).

    Launched for l = L-1 .. 1 in that order. The key's work is split three ways by program_id(0), so that few
    [BT, BT] / [BT, 64] tiles are live in any program (the one-program body took 255 registers and spilled
    1.4 KB per thread on sm_90, NOTES.md); the three programs of a chunk tile are adjacent in launch order, so
    they run together and their shared reads (q, k, v, u, p, dO, dY, dH') mostly hit L2:
      0 (rows t): dE = G<= . (dO D^T), dF = -G< . (dX D^T); dq += dE K_l, dk1 += dF K_l (partials of
        prism_bwd_wy, read-modify-write of dqp, dkp [B,T,H,K] fp32), dbeta1 += -rowsum((G< . K1 K_l^T) D_l . dY)
        (dbp), dg += this key's reverse cumsum of rho and exclusive cumsum of s (dgp [B,T,H] fp32: dg is linear
        in them);
      1 (columns i): dk_l = dE^T Qs + diag(e) D_l dH'^T + dF^T K1 (stored, input dtype);
      2 (values): dD_l = (G<= . Qs K_l^T)^T dO + diag(e) K_l dH' - (G< . K1 K_l^T)^T dX; dbeta_l, the solver
        step dz = (beta_l dD_l - dr) GELU'(z_l), dp_l = dz r_l and the running dr += dz p_l (drp [B,T,H,V] fp32;
        FIRST = (l == L-1): written, not read).
    Each program reads and writes its own chunk's rows only and the three write disjoint buffers: no atomics,
    deterministic. dX = diag(beta1) dY, dY from dy [B,T,H,V] fp32. (dE, dF are recomputed in programs 0 and 1,
    Qs K_l^T and K1 K_l^T in 0 and 2: 17 dots per key and chunk instead of 10.)
    LAST (l == 1, the last launch; KEYS_TAIL="fused"): the rows program also does the tail's rows part (stores dq,
    dk[0] and dbeta[0] in the input dtype instead of the fp32 partials) and the values program the solver's first step
    (dp[0], dv, du, instead of storing the running dr), so prism_bwd_keys_tail_kernel is not launched.
    STASH_D (KEYS_BF16 "d", KIND >= 0 with D16, the values launch first): the values program stores D_l =
    GELU(z_l) beta_l rounded to dd's dtype (bf16, [B,T,H,V]) and the rows and columns programs read it instead of
    recomputing D_l from v, u, p_0..p_l (they only use D_l as an operand of bf16 dots: the same rounding). dhs may be
    a bf16 copy of dH' (KEYS_BF16 "dh"): every read of it here is an operand of a bf16 dot.
    NV > 1 (KIND 2 only, KEYS_VALUES_BV): the values programs split V into NV column blocks of BV (grid (NV, N, B*H));
    everything they compute is elementwise in V except dbeta_l's sum over V, whose NV parts go to dbv (fp32
    [NV, B, T, H]) for the launcher to add (in a fixed order: deterministic).
    """
    i_t, i_bh = tl.program_id(1), tl.program_id(2)
    if KIND < 0:
        i_p = tl.program_id(0)
    else:
        i_p: tl.constexpr = KIND
    i_b, i_h = i_bh // H, i_bh % H
    NT = (T + BT - 1) // BT
    ll = l.to(tl.int64)
    sb = (B * T * H).to(tl.int64)      # stride of the L axis of beta; of k: sb * K, of p: sb * V
    o_i = tl.arange(0, BT)
    m_s = o_i[:, None] > o_i[None, :]
    m_a = o_i[:, None] >= o_i[None, :]
    b_gc, b_gl, b_gam, b_e = _decays(gc, i_b, i_h, i_t, T, H, BT)
    if i_p == 0:
        # the read-out terms and the intra-chunk-write terms are added to dg as soon as each is complete (dg is
        # linear in rho and s), so their tiles die early: 32 B of spills per thread at 4 warps offline (version 4's
        # order: 336 B)
        b_D = _key_D(dd, 0, v, u, p, beta, i_b, i_h, i_t, T, H, ll, sb, V, BT, BV, STASH_D)
        b_klr = _raw(tl.load(_rows(k + ll * sb * K, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
        b_kl = b_klr.to(tl.float32)
        b_dgc = tl.zeros([BT], dtype=tl.float32)
        # state write's dg term: s = e . rowsum(K_l . (D dH'^T))
        b_dhn = tl.load(_state(dhs, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), boundary_check=(0, 1))
        b_s = b_e * tl.sum(b_kl * _mm(b_D, tl.trans(b_dhn), PREC, D16), axis=1)
        # read-out
        b_qr = _raw(tl.load(_rows(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
        b_do = tl.load(_rows(do, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
        b_dE = _gmat(b_gc, m_a) * _mm(b_do, tl.trans(b_D), PREC, D16)
        b_M = tl.where(m_s, b_dE * tl.dot(b_qr, tl.trans(b_klr), input_precision=PREC), 0.) * scale
        b_rho = tl.sum(b_M, axis=1) - tl.sum(b_M, axis=0)
        p_dq = _rows(dqp, i_b, i_h, i_t, T, H, K, BT, BK)
        if LAST:
            tl.store(_rows(dq, i_b, i_h, i_t, T, H, K, BT, BK),
                     ((tl.load(p_dq, boundary_check=(0, 1)) + _mm(b_dE, b_kl, PREC, D16)) * scale)
                     .to(dq.dtype.element_ty), boundary_check=(0, 1))
        else:
            tl.store(p_dq, tl.load(p_dq, boundary_check=(0, 1)) + _mm(b_dE, b_kl, PREC, D16),
                     boundary_check=(0, 1))
        b_dgc += tl.cumsum(b_rho, axis=0, reverse=True) + (tl.cumsum(b_s, axis=0) - b_s)
        # intra-chunk write into X = Delta_1 - sum_l (G< . K1 K_l^T) D_l; P = dY D^T
        b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
        b_k1r = _raw(tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
        b_dY = tl.load(_rows(dy, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1))
        b_P = _mm(b_dY, tl.trans(b_D), PREC, D16)
        b_Gs = _gmat(b_gc, m_s)
        b_F = tl.dot(b_k1r, tl.trans(b_klr), input_precision=PREC)
        b_db1 = -tl.sum(b_Gs * b_F * b_P, axis=1)
        b_dF = -b_Gs * (b_P * b_b1[:, None])
        b_M = b_dF * b_F
        b_dgc += tl.cumsum(tl.sum(b_M, axis=1) - tl.sum(b_M, axis=0), axis=0, reverse=True)
        p_dk1 = _rows(dkp, i_b, i_h, i_t, T, H, K, BT, BK)
        p_db = _vec(dbp, i_b, i_h, i_t, T, H, BT)
        if LAST:
            tl.store(_rows(dk, i_b, i_h, i_t, T, H, K, BT, BK),
                     (tl.load(p_dk1, boundary_check=(0, 1)) + _mm(b_dF, b_kl, PREC, D16))
                     .to(dk.dtype.element_ty), boundary_check=(0, 1))
            # the tail's X term of dbeta1: X's Delta_1 = GELU(p_1 r_1) against dY
            b_r0, b_p0 = _solver_seed(v, u, p, i_b, i_h, i_t, 0, T, H, V, BT, BV)
            b_db1 += tl.load(p_db, boundary_check=(0,)) + tl.sum(_gelu(b_p0 * b_r0) * b_dY, axis=1)
            tl.store(_vec(dbeta, i_b, i_h, i_t, T, H, BT), b_db1.to(dbeta.dtype.element_ty), boundary_check=(0,))
        else:
            tl.store(p_dk1, tl.load(p_dk1, boundary_check=(0, 1)) + _mm(b_dF, b_kl, PREC, D16),
                     boundary_check=(0, 1))
            tl.store(p_db, tl.load(p_db, boundary_check=(0,)) + b_db1, boundary_check=(0,))
        p_dg = _vec(dgp, i_b, i_h, i_t, T, H, BT)
        tl.store(p_dg, tl.load(p_dg, boundary_check=(0,)) + b_dgc, boundary_check=(0,))
    elif i_p == 1:
        _key_dk_cols(q, k, v, u, p, beta, dhs, do, dy, dk, dd, b_gc, b_e, m_a, m_s, scale, i_b, i_h, i_t, T, H, NT,
                     ll, sb, K, V, BT, BK, BV, PREC, RAW, D16, STASH_D)
    else:
        # dD_l first, the solver chain (r_l, p_l, z_l: three [BT, BV] fp32 tiles) after it, so the chain's tiles are
        # not live across the three dots (version 7: 128 -> 0 B of spills offline, NOTES.md)
        if NV > 1:      # KEYS_VALUES_BV: column block i_v of V (grid (NV, N, B*H))
            i_v = tl.program_id(0)
        else:
            i_v = 0
        b_dD = _key_dD(q, k, beta, dhs, do, dy, b_gc, b_e, scale, i_b, i_h, i_t, i_v, T, H, NT, ll, sb, K, V, BT, BK,
                       BV, PREC, RAW, D16)
        b_r, b_p, b_z, b_bl = _key_delta(v, u, p, beta, i_b, i_h, i_t, i_v, T, H, ll, sb, V, BT, BV)
        if STASH_D:
            tl.store(_cols(dd, i_b, i_h, i_t, i_v, T, H, V, BT, BV),
                     (_gelu(b_z) * b_bl[:, None]).to(dd.dtype.element_ty), boundary_check=(0, 1))
        b_db = tl.sum(_gelu(b_z) * b_dD, axis=1)
        if NV > 1:      # this column block's part of dbeta_l (fp32 [NV, B, T, H]); the launcher sums the NV parts
            tl.store(_vec(dbv + i_v * sb, i_b, i_h, i_t, T, H, BT), b_db, boundary_check=(0,))
        else:
            tl.store(_vec(dbeta + ll * sb, i_b, i_h, i_t, T, H, BT), b_db.to(dbeta.dtype.element_ty),
                     boundary_check=(0,))
        # solver: r_{l+1} = r_l - Delta_l, Delta_l = GELU(p_l r_l)
        p_dr = _cols(drp, i_b, i_h, i_t, i_v, T, H, V, BT, BV)
        if FIRST:
            b_dz = b_dD * b_bl[:, None] * _gelu_grad(b_z)
            b_dr = b_dz * b_p
        else:
            b_dr = tl.load(p_dr, boundary_check=(0, 1))
            b_dz = (b_dD * b_bl[:, None] - b_dr) * _gelu_grad(b_z)
            b_dr += b_dz * b_p
        tl.store(_cols(dp + ll * sb * V, i_b, i_h, i_t, i_v, T, H, V, BT, BV), (b_dz * b_r).to(dp.dtype.element_ty),
                 boundary_check=(0, 1))
        if LAST:
            _solver_first_step(v, u, p, beta, dy, dp, dv, du, b_dr, i_b, i_h, i_t, i_v, T, H, V, BT, BV)
        else:
            tl.store(p_dr, b_dr, boundary_check=(0, 1))


@triton.jit
def _row_block_decays(gc, i_b, i_h, i_t, i_s, T, H, BT: tl.constexpr, BS: tl.constexpr):
    """The decays of a row-block program (rows [i_s BS, i_s BS + BS) of chunk i_t): the chunk's gc [BT], the rows'
    gc [BS] and e = gamma_C / gamma on the rows [BS] (0 past T)."""
    b_gc = tl.load(_vec(gc, i_b, i_h, i_t, T, H, BT), boundary_check=(0,))
    b_gs = tl.load(_vec(gc, i_b, i_h, i_s, T, H, BS), boundary_check=(0,))
    b_gl = tl.load(gc + (i_b * T * H + i_h).to(tl.int64) + (tl.minimum(i_t * BT + BT, T) - 1) * H)
    return b_gc, b_gs, tl.where(i_s * BS + tl.arange(0, BS) < T, tl.exp(b_gl - b_gs), 0.)


@triton.jit
def _gmat_rb(b_gc, b_gs, m):
    """G for a row block, transposed: entry (t, s) = exp(gc_t - gs_s) where m ([BT, BS]: the chunk's t against the
    block's rows s), else 0."""
    return tl.where(m, tl.exp(tl.where(m, b_gc[:, None] - b_gs[None, :], 0.)), 0.)


@triton.jit
def _ld_t(ptr, i_b, i_h, i_t, T, H, F: tl.constexpr, BT: tl.constexpr, BF: tl.constexpr, TRL: tl.constexpr):
    """Rows [i_t BT, i_t BT + BT) of the (b, h) slice of a [B, T, H, F] tensor as a transposed [BF, BT] tile: TRL loads
    the rows ([BT, BF], `_rows`) and transposes them in registers; else through a transposed block pointer (`_rows_t`)."""
    if TRL:
        return tl.trans(tl.load(_rows(ptr, i_b, i_h, i_t, T, H, F, BT, BF), boundary_check=(0, 1)))
    else:
        return tl.load(_rows_t(ptr, i_b, i_h, i_t, T, H, F, BT, BF), boundary_check=(0, 1))


@triton.jit
def _st_t(ptr, x, i_b, i_h, i_t, T, H, F: tl.constexpr, BT: tl.constexpr, BF: tl.constexpr, TRL: tl.constexpr):
    """Stores a transposed [BF, BT] tile x into rows [i_t BT, i_t BT + BT) of a [B, T, H, F] tensor (`_ld_t`'s
    inverse), in ptr's dtype."""
    if TRL:
        tl.store(_rows(ptr, i_b, i_h, i_t, T, H, F, BT, BF), tl.trans(x).to(ptr.dtype.element_ty), boundary_check=(0, 1))
    else:
        tl.store(_rows_t(ptr, i_b, i_h, i_t, T, H, F, BT, BF), x.to(ptr.dtype.element_ty), boundary_check=(0, 1))


@triton.jit
def _ld_state_t(ptr, i_b, i_h, i_t, NT, H, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                TRL: tl.constexpr):
    """Chunk i_t's state of a [B, NT, H, K, V] tensor, transposed ([BV, BK]); TRL as in `_ld_t`."""
    if TRL:
        return tl.trans(tl.load(_state(ptr, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), boundary_check=(0, 1)))
    else:
        return tl.load(tl.make_block_ptr(ptr + ((i_b * NT + i_t) * H + i_h).to(tl.int64) * K * V, (V, K), (1, V),
                                         (0, 0), (BV, BK), (0, 1)), boundary_check=(0, 1))


@triton.jit(do_not_specialize=["T", "H", "B", "l"])
def prism_bwd_key_values_rb_kernel(
    q, k, v, u, p, beta, gc, dhs, do, dy, drp, dp, dbeta, dv, du, dd, scale, T,
    B, H, l, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BS: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, FIRST: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr, LAST: tl.constexpr = False,
    D16: tl.constexpr = 0, STASH_D: tl.constexpr = False, TRL: tl.constexpr = True,
):
    """prism_bwd_key_kernel's values program (KIND 2) for extra key l, split by row blocks of the chunk
    (KEYS_VALUES_BS): grid (BT // BS, N, B*H); program (j, i_t) computes the rows s in [j BS, j BS + BS) of chunk
    i_t. Every quantity of the values program is row-local in s except its three products, and those take s's rows
    of K_l against the whole chunk's q, dO, K1 and dX:
      dD_l[s] = sum_{t >= s} G_ts (q_t . k_l,s) dO_t + e_s k_l,s dH' - sum_{t > s} G_ts (k1_t . k_l,s) dX_t.
    The solver chain, the D_l stash, dbeta_l, dp_l, the running dr and (LAST) the solver's first step then act on the
    BS rows alone. q, dO, K1, dY and dH' are read once per row block (the others mostly from L2: the row blocks of a
    chunk are adjacent in launch order).
    Every [BS, *] tile is held transposed, [*, BS], so that each product has the chunk (BT) or V as its M dimension:
    dD^T = dO^T GE + dH'^T (e K_l)^T - dX^T GF with GE = G . (Qs K_l^T) [BT, BS] (M = 64 at K = V = 64, which
    Hopper's warpgroup MMA needs; with the BS rows as M, a 32-row dot takes the register-operand MMA and its [BT, 64]
    operands live in registers: 255 registers at BS = 32 offline, against 164 transposed). The transposed tiles are loaded
    and stored by `_ld_t` / `_st_t` (RB_LOADS picks how: TRL); no dot result is transposed.
    On an H100 (Triton 3.6, BS 32, 4 warps) it faults: an out-of-range shared or local address in a bf16 dot
    (compute-sanitizer; NOTES.md, version 12 candidate), so KEYS_VALUES_BS is off."""
    i_j, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    i_s = i_t * (BT // BS) + i_j          # the row block's index in units of BS rows
    NT = (T + BT - 1) // BT
    ll = l.to(tl.int64)
    sb = (B * T * H).to(tl.int64)
    o_t = tl.arange(0, BT)
    o_s = i_j * BS + tl.arange(0, BS)
    b_gc, b_gs, b_es = _row_block_decays(gc, i_b, i_h, i_t, i_s, T, H, BT, BS)
    b_bl = tl.load(_vec(beta + ll * sb, i_b, i_h, i_s, T, H, BS), boundary_check=(0,)).to(tl.float32)
    # dD_l^T [BV, BS]
    b_klt = _raw(_ld_t(k + ll * sb * K, i_b, i_h, i_s, T, H, K, BS, BK, TRL), RAW)
    b_qr = _raw(tl.load(_rows(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
    b_GE = _gmat_rb(b_gc, b_gs, o_t[:, None] >= o_s[None, :]) * scale * tl.dot(b_qr, b_klt, input_precision=PREC)
    b_dot = _ld_t(do, i_b, i_h, i_t, T, H, V, BT, BV, TRL).to(tl.float32)
    b_dDt = _mm(b_dot, b_GE, PREC, D16)
    b_dht = _ld_state_t(dhs, i_b, i_h, i_t, NT, H, K, V, BK, BV, TRL)
    if D16 == 0:     # RB_D16 off: dH' may be KEYS_BF16's bf16 copy; a dot at PREC takes operands of one dtype
        b_dht = b_dht.to(tl.float32)
    b_dDt += _mm(b_dht, b_klt.to(tl.float32) * b_es[None, :], PREC, D16)
    b_k1r = _raw(tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
    b_GF = _gmat_rb(b_gc, b_gs, o_t[:, None] > o_s[None, :]) * tl.dot(b_k1r, b_klt, input_precision=PREC)
    b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
    b_dXt = _ld_t(dy, i_b, i_h, i_t, T, H, V, BT, BV, TRL) * b_b1[None, :]
    b_dDt -= _mm(b_dXt, b_GF, PREC, D16)
    # the solver chain on rows s, transposed: r_l, p_l, z_l [BV, BS] (the runtime loop of `_key_delta`)
    b_r = (_ld_t(v, i_b, i_h, i_s, T, H, V, BS, BV, TRL).to(tl.float32)
           - _ld_t(u, i_b, i_h, i_s, T, H, V, BS, BV, TRL).to(tl.float32))
    for m in range(0, l):
        b_pm = _ld_t(p + m * sb * V, i_b, i_h, i_s, T, H, V, BS, BV, TRL).to(tl.float32)
        b_r = b_r - _gelu(b_pm * b_r)
    b_p = _ld_t(p + ll * sb * V, i_b, i_h, i_s, T, H, V, BS, BV, TRL).to(tl.float32)
    b_z = b_p * b_r
    if STASH_D:
        _st_t(dd, _gelu(b_z) * b_bl[None, :], i_b, i_h, i_s, T, H, V, BS, BV, TRL)
    tl.store(_vec(dbeta + ll * sb, i_b, i_h, i_s, T, H, BS),
             tl.sum(_gelu(b_z) * b_dDt, axis=0).to(dbeta.dtype.element_ty), boundary_check=(0,))
    if FIRST:
        b_dz = b_dDt * b_bl[None, :] * _gelu_grad(b_z)
        b_dr = b_dz * b_p
    else:
        b_dr = _ld_t(drp, i_b, i_h, i_s, T, H, V, BS, BV, TRL)
        b_dz = (b_dDt * b_bl[None, :] - b_dr) * _gelu_grad(b_z)
        b_dr += b_dz * b_p
    _st_t(dp + ll * sb * V, b_dz * b_r, i_b, i_h, i_s, T, H, V, BS, BV, TRL)
    if LAST:
        # the solver's first step (`_solver_first_step`), transposed
        b_b1s = tl.load(_vec(beta, i_b, i_h, i_s, T, H, BS), boundary_check=(0,)).to(tl.float32)
        b_r0 = (_ld_t(v, i_b, i_h, i_s, T, H, V, BS, BV, TRL).to(tl.float32)
                - _ld_t(u, i_b, i_h, i_s, T, H, V, BS, BV, TRL).to(tl.float32))
        b_p0 = _ld_t(p, i_b, i_h, i_s, T, H, V, BS, BV, TRL).to(tl.float32)
        b_dz0 = (_ld_t(dy, i_b, i_h, i_s, T, H, V, BS, BV, TRL) * b_b1s[None, :]
                 - b_dr) * _gelu_grad(b_p0 * b_r0)
        b_dr += b_dz0 * b_p0
        _st_t(dp, b_dz0 * b_r0, i_b, i_h, i_s, T, H, V, BS, BV, TRL)
        _st_t(dv, b_dr, i_b, i_h, i_s, T, H, V, BS, BV, TRL)
        _st_t(du, -b_dr, i_b, i_h, i_s, T, H, V, BS, BV, TRL)
    else:
        _st_t(drp, b_dr, i_b, i_h, i_s, T, H, V, BS, BV, TRL)


@triton.jit(do_not_specialize=["T", "H", "B", "L"])
def prism_bwd_key_values_kernel(
    q, k, v, u, p, beta, gc, dhs, do, dy, drp, dp, dbeta, dv, du, dd, scale, T,
    B, H, L, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PREC: tl.constexpr, RAW: tl.constexpr, LAST: tl.constexpr, D16: tl.constexpr = 0, STASH_D: tl.constexpr = False,
):
    """The values program of every extra key in one launch (KEYS_LOOP "values"): prism_bwd_key_kernel's KIND 2 for
    l = L-1 .. 1 in a runtime loop, the solver chain's running dr kept in registers across the keys (not stored
    and re-read per key). Grid (N, B*H). LAST (KEYS_TAIL="fused"): then the solver's first step (dp[0], dv, du), as
    the l = 1 values launch does; else dr is stored to drp for prism_bwd_keys_tail_kernel. STASH_D: stores each D_l
    in dd [L-1,B,T,H,V] (bf16) for the other kinds."""
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NT = (T + BT - 1) // BT
    sb = (B * T * H).to(tl.int64)
    b_gc, b_gl, b_gam, b_e = _decays(gc, i_b, i_h, i_t, T, H, BT)
    b_dr = tl.zeros([BT, BV], dtype=tl.float32)
    for j in range(1, L):
        ll = (L - j).to(tl.int64)
        b_dD = _key_dD(q, k, beta, dhs, do, dy, b_gc, b_e, scale, i_b, i_h, i_t, 0, T, H, NT, ll, sb, K, V, BT, BK, BV,
                       PREC, RAW, D16)
        b_r, b_p, b_z, b_bl = _key_delta(v, u, p, beta, i_b, i_h, i_t, 0, T, H, ll, sb, V, BT, BV)
        if STASH_D:
            tl.store(_rows(dd + (ll - 1) * sb * V, i_b, i_h, i_t, T, H, V, BT, BV),
                     (_gelu(b_z) * b_bl[:, None]).to(dd.dtype.element_ty), boundary_check=(0, 1))
        tl.store(_vec(dbeta + ll * sb, i_b, i_h, i_t, T, H, BT),
                 tl.sum(_gelu(b_z) * b_dD, axis=1).to(dbeta.dtype.element_ty), boundary_check=(0,))
        # solver: r_{l+1} = r_l - Delta_l, Delta_l = GELU(p_l r_l); dr = 0 before the last key (l = L-1)
        b_dz = (b_dD * b_bl[:, None] - b_dr) * _gelu_grad(b_z)
        b_dr += b_dz * b_p
        tl.store(_rows(dp + ll * sb * V, i_b, i_h, i_t, T, H, V, BT, BV), (b_dz * b_r).to(dp.dtype.element_ty),
                 boundary_check=(0, 1))
    if LAST:
        _solver_first_step(v, u, p, beta, dy, dp, dv, du, b_dr, i_b, i_h, i_t, 0, T, H, V, BT, BV)
    else:
        tl.store(_rows(drp, i_b, i_h, i_t, T, H, V, BT, BV), b_dr, boundary_check=(0, 1))


@triton.jit(do_not_specialize=["T", "H", "B", "L"])
def prism_bwd_key_columns_kernel(
    q, k, v, u, p, beta, gc, dhs, do, dy, dk, dd, scale, T,
    B, H, L, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PREC: tl.constexpr, RAW: tl.constexpr, D16: tl.constexpr = 0, STASH_D: tl.constexpr = False,
):
    """The columns program of every extra key in one launch (KEYS_LOOP "columns"): prism_bwd_key_kernel's KIND 1 for
    l = L-1 .. 1 in a runtime loop (dk_l stored per key; the chunk's shared tiles re-read per key mostly from L2).
    Grid (N, B*H). STASH_D: D_l from dd [L-1,B,T,H,V]."""
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NT = (T + BT - 1) // BT
    sb = (B * T * H).to(tl.int64)
    o_i = tl.arange(0, BT)
    m_s = o_i[:, None] > o_i[None, :]
    m_a = o_i[:, None] >= o_i[None, :]
    b_gc, b_gl, b_gam, b_e = _decays(gc, i_b, i_h, i_t, T, H, BT)
    for j in range(1, L):
        ll = (L - j).to(tl.int64)
        if STASH_D:
            p_d = dd + (ll - 1) * sb * V
        else:
            p_d = dd
        _key_dk_cols(q, k, v, u, p, beta, dhs, do, dy, dk, p_d, b_gc, b_e, m_a, m_s, scale,
                     i_b, i_h, i_t, T, H, NT, ll, sb, K, V, BT, BK, BV, PREC, RAW, D16, STASH_D)


@triton.jit(do_not_specialize=["T", "H", "B", "L"])
def prism_bwd_key_columns_rb_kernel(
    q, k, beta, gc, dhs, do, dy, dk, dd, scale, T,
    B, H, L, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BS: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, PREC: tl.constexpr, RAW: tl.constexpr, D16: tl.constexpr = 0, TRL: tl.constexpr = True,
):
    """The columns loop (prism_bwd_key_columns_kernel with the D_l stash) split by row blocks of the chunk
    (KEYS_COLUMNS_BS): grid (BT // BS, N, B*H); program (j, i_t) stores dk_l for the rows s in [j BS, j BS + BS) of
    chunk i_t, l = L-1 .. 1:
      dk_l[s] = e_s D_l,s dH'^T + sum_{t >= s} G_ts (dO_t . D_l,s) Qs_t - sum_{t > s} G_ts (dX_t . D_l,s) k1_t,
    held transposed as prism_bwd_key_values_rb_kernel's tiles are (dk_l^T = dH' (e D_l)^T + Qs^T GE - K1^T GF with
    GE = G . (dO D_l^T) [BT, BS]: BT or K in the products' M dimension). D_l is read from the stash dd [L-1,B,T,H,V]
    (transposed, [BV, BS]); q, dO, K1, dY and dH' of the chunk are loaded once, before the key loop."""
    i_j, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    i_s = i_t * (BT // BS) + i_j
    NT = (T + BT - 1) // BT
    sb = (B * T * H).to(tl.int64)
    o_t = tl.arange(0, BT)
    o_s = i_j * BS + tl.arange(0, BS)
    b_gc, b_gs, b_es = _row_block_decays(gc, i_b, i_h, i_t, i_s, T, H, BT, BS)
    b_GE0 = _gmat_rb(b_gc, b_gs, o_t[:, None] >= o_s[None, :])
    b_GF0 = _gmat_rb(b_gc, b_gs, o_t[:, None] > o_s[None, :])
    b_dhn = tl.load(_state(dhs, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), boundary_check=(0, 1))
    if D16 == 0:     # RB_D16 off: the bf16 dH' copy (and the stash below) in dots at PREC with fp32 operands
        b_dhn = b_dhn.to(tl.float32)
    b_do = tl.load(_rows(do, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
    b_qt = _raw(_ld_t(q, i_b, i_h, i_t, T, H, K, BT, BK, TRL), RAW)
    b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
    b_dX = tl.load(_rows(dy, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)) * b_b1[:, None]
    b_k1t = _raw(_ld_t(k, i_b, i_h, i_t, T, H, K, BT, BK, TRL), RAW)
    for j in range(1, L):
        ll = (L - j).to(tl.int64)
        b_Dt = _ld_t(dd + (ll - 1) * sb * V, i_b, i_h, i_s, T, H, V, BS, BV, TRL)
        if D16 == 0:
            b_Dt = b_Dt.to(tl.float32)
        # (the products rounded as prism_bwd_key_columns_kernel rounds them: e after the dot, scale after G)
        b_dkt = _mm(b_dhn, b_Dt, PREC, D16) * b_es[None, :]
        b_GE = b_GE0 * _mm(b_do, b_Dt, PREC, D16) * scale
        b_dkt += _mm(b_qt.to(tl.float32), b_GE, PREC, D16)
        b_GF = b_GF0 * _mm(b_dX, b_Dt, PREC, D16)
        b_dkt -= _mm(b_k1t.to(tl.float32), b_GF, PREC, D16)
        _st_t(dk + ll * sb * K, b_dkt, i_b, i_h, i_s, T, H, K, BS, BK, TRL)


@triton.jit(do_not_specialize=["T", "H", "B", "L"])
def prism_bwd_key_rows_kernel(
    q, k, v, u, p, beta, gc, dhs, do, dy, dqp, dkp, dbp, dgp, dq, dk, dbeta, dd, scale, T,
    B, H, L, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PREC: tl.constexpr, RAW: tl.constexpr, LAST: tl.constexpr, D16: tl.constexpr = 0, STASH_D: tl.constexpr = False,
    PASS: tl.constexpr = 0,
):
    """The rows program of every extra key in one launch (KEYS_LOOP "rows"): prism_bwd_key_kernel's KIND 0 for
    l = L-1 .. 1 in a runtime loop, in two passes so that one [BT, BK] fp32 accumulator is live at a time: the
    read-out pass (dE_l K_l into dq, rho_l and s_l into dg) and the intra-chunk-write pass (dF_l K_l into dk1, dbeta1,
    dg). The fp32 partials dqp, dkp (prism_bwd_wy's) are read and written once per chunk instead of once per key,
    and q, dO, dH' (pass 1), K1, dY, beta1 (pass 2) are read once. Grid (N, B*H). LAST (KEYS_TAIL="fused"): stores
    dq, dk[0] (input dtype) and dbeta[0] with the tail's X term, as the l = 1 rows launch does; dg is finished in dgp
    either way. STASH_D: D_l from dd [L-1,B,T,H,V] (the values launches' bf16 stores), else recomputed.
    PASS (KEYS_ROWS_SPLIT): 0 runs both passes; 1 or 2 only that pass, as a launch of its own (each adds its own dg
    terms to dgp: the two launches' adds land in another order than one launch's, so dg may differ in the last bits)."""
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NT = (T + BT - 1) // BT
    sb = (B * T * H).to(tl.int64)
    o_i = tl.arange(0, BT)
    m_s = o_i[:, None] > o_i[None, :]
    m_a = o_i[:, None] >= o_i[None, :]
    b_gc, b_gl, b_gam, b_e = _decays(gc, i_b, i_h, i_t, T, H, BT)
    b_dgc = tl.zeros([BT], dtype=tl.float32)
    if PASS != 2:
        # pass 1: the read-out terms and the state write's s
        b_qr = _raw(tl.load(_rows(q, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
        b_do = tl.load(_rows(do, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1)).to(tl.float32)
        b_dhn = tl.load(_state(dhs, i_b, i_h, i_t, NT, H, K, V, BK, BV, 0), boundary_check=(0, 1))
        b_acc = tl.zeros([BT, BK], dtype=tl.float32)
        for j in range(1, L):
            ll = (L - j).to(tl.int64)
            b_D = _key_D(dd, ll - 1, v, u, p, beta, i_b, i_h, i_t, T, H, ll, sb, V, BT, BV, STASH_D)
            b_klr = _raw(tl.load(_rows(k + ll * sb * K, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
            b_kl = b_klr.to(tl.float32)
            b_s = b_e * tl.sum(b_kl * _mm(b_D, tl.trans(b_dhn), PREC, D16), axis=1)
            b_dE = _gmat(b_gc, m_a) * _mm(b_do, tl.trans(b_D), PREC, D16)
            b_M = tl.where(m_s, b_dE * tl.dot(b_qr, tl.trans(b_klr), input_precision=PREC), 0.) * scale
            b_rho = tl.sum(b_M, axis=1) - tl.sum(b_M, axis=0)
            b_acc += _mm(b_dE, b_kl, PREC, D16)
            b_dgc += tl.cumsum(b_rho, axis=0, reverse=True) + (tl.cumsum(b_s, axis=0) - b_s)
        p_dq = _rows(dqp, i_b, i_h, i_t, T, H, K, BT, BK)
        if LAST:
            tl.store(_rows(dq, i_b, i_h, i_t, T, H, K, BT, BK),
                     ((tl.load(p_dq, boundary_check=(0, 1)) + b_acc) * scale).to(dq.dtype.element_ty),
                     boundary_check=(0, 1))
        else:
            tl.store(p_dq, tl.load(p_dq, boundary_check=(0, 1)) + b_acc, boundary_check=(0, 1))
    if PASS != 1:
        # pass 2: the intra-chunk write into X = Delta_1 - sum_l (G< . K1 K_l^T) D_l; P = dY D_l^T
        b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
        b_k1r = _raw(tl.load(_rows(k, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
        b_dY = tl.load(_rows(dy, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1))
        b_acc = tl.zeros([BT, BK], dtype=tl.float32)
        b_db1 = tl.zeros([BT], dtype=tl.float32)
        for j in range(1, L):
            ll = (L - j).to(tl.int64)
            b_D = _key_D(dd, ll - 1, v, u, p, beta, i_b, i_h, i_t, T, H, ll, sb, V, BT, BV, STASH_D)
            b_klr = _raw(tl.load(_rows(k + ll * sb * K, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)), RAW)
            b_P = _mm(b_dY, tl.trans(b_D), PREC, D16)
            b_Gs = _gmat(b_gc, m_s)
            b_F = tl.dot(b_k1r, tl.trans(b_klr), input_precision=PREC)
            b_db1 -= tl.sum(b_Gs * b_F * b_P, axis=1)
            b_dF = -b_Gs * (b_P * b_b1[:, None])
            b_M = b_dF * b_F
            b_dgc += tl.cumsum(tl.sum(b_M, axis=1) - tl.sum(b_M, axis=0), axis=0, reverse=True)
            b_acc += _mm(b_dF, b_klr.to(tl.float32), PREC, D16)
        p_dk1 = _rows(dkp, i_b, i_h, i_t, T, H, K, BT, BK)
        p_db = _vec(dbp, i_b, i_h, i_t, T, H, BT)
        if LAST:
            tl.store(_rows(dk, i_b, i_h, i_t, T, H, K, BT, BK),
                     (tl.load(p_dk1, boundary_check=(0, 1)) + b_acc).to(dk.dtype.element_ty), boundary_check=(0, 1))
            b_r0, b_p0 = _solver_seed(v, u, p, i_b, i_h, i_t, 0, T, H, V, BT, BV)
            b_db1 += tl.load(p_db, boundary_check=(0,)) + tl.sum(_gelu(b_p0 * b_r0) * b_dY, axis=1)
            tl.store(_vec(dbeta, i_b, i_h, i_t, T, H, BT), b_db1.to(dbeta.dtype.element_ty), boundary_check=(0,))
        else:
            tl.store(p_dk1, tl.load(p_dk1, boundary_check=(0, 1)) + b_acc, boundary_check=(0, 1))
            tl.store(p_db, tl.load(p_db, boundary_check=(0,)) + b_db1, boundary_check=(0,))
    p_dg = _vec(dgp, i_b, i_h, i_t, T, H, BT)
    tl.store(p_dg, tl.load(p_dg, boundary_check=(0,)) + b_dgc, boundary_check=(0,))


@triton.jit(do_not_specialize=["T", "H"])
def prism_bwd_keys_tail_kernel(
    q, v, u, p, beta, dy, dqp, dkp, dbp, dgp, drp,
    dq, dk, dv, du, dp, dbeta, dg, scale, T,
    H, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_DR: tl.constexpr,
):
    """Tail of phase C2 (KEYS_IMPL "kinds" or "split"), after the per-key launches: the solver's first step (dDelta_1 =
    dX = diag(beta1) dY) and X's Delta_1 term of dbeta1; finishes dq, dk[0], dbeta[0], dv, du, dp[0] (input
    dtypes) and dg (fp32; may alias dgp). Grid (N, B*H). HAS_DR (L > 1): dr from drp [B,T,H,V] fp32 (the
    per-key launches' running dr), else 0. Each output is finished and stored before the next is started
    (a short live range per tile).
    """
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    tl.store(_rows(dq, i_b, i_h, i_t, T, H, K, BT, BK),
             (tl.load(_rows(dqp, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)) * scale)
             .to(dq.dtype.element_ty), boundary_check=(0, 1))
    tl.store(_rows(dk, i_b, i_h, i_t, T, H, K, BT, BK),
             tl.load(_rows(dkp, i_b, i_h, i_t, T, H, K, BT, BK), boundary_check=(0, 1)).to(dk.dtype.element_ty),
             boundary_check=(0, 1))
    tl.store(_vec(dg, i_b, i_h, i_t, T, H, BT), tl.load(_vec(dgp, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)),
             boundary_check=(0,))
    b_r1, b_p = _solver_seed(v, u, p, i_b, i_h, i_t, 0, T, H, V, BT, BV)
    b_z = b_p * b_r1
    b_dY = tl.load(_rows(dy, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1))
    b_b1 = tl.load(_vec(beta, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)).to(tl.float32)
    b_db1 = tl.load(_vec(dbp, i_b, i_h, i_t, T, H, BT), boundary_check=(0,)) + tl.sum(_gelu(b_z) * b_dY, axis=1)
    tl.store(_vec(dbeta, i_b, i_h, i_t, T, H, BT), b_db1.to(dbeta.dtype.element_ty), boundary_check=(0,))
    b_dz = b_dY * b_b1[:, None]
    if HAS_DR:
        b_dr = tl.load(_rows(drp, i_b, i_h, i_t, T, H, V, BT, BV), boundary_check=(0, 1))
        b_dz = (b_dz - b_dr) * _gelu_grad(b_z)
        b_dr += b_dz * b_p
    else:
        b_dz = b_dz * _gelu_grad(b_z)
        b_dr = b_dz * b_p
    tl.store(_rows(dp, i_b, i_h, i_t, T, H, V, BT, BV), (b_dz * b_r1).to(dp.dtype.element_ty), boundary_check=(0, 1))
    tl.store(_rows(dv, i_b, i_h, i_t, T, H, V, BT, BV), b_dr.to(dv.dtype.element_ty), boundary_check=(0, 1))
    tl.store(_rows(du, i_b, i_h, i_t, T, H, V, BT, BV), (-b_dr).to(du.dtype.element_ty), boundary_check=(0, 1))


# ----------------------------------------------------------------------------------------- L = 1 forward on fla
@triton.jit
def prism_delta1_kernel(v, u, p, d_out, n, BLOCK: tl.constexpr):
    """delta_1 = GELU(p_1 (v - u)) elementwise over n entries (fp32 math, stored in d_out's dtype); v, u, p_1
    contiguous with the same layout [B, T, H, V]. Grid (cdiv(n, BLOCK),). FWD_IMPL="fla_gdn"'s value input."""
    o = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = o < n
    b_r = tl.load(v + o, mask=m, other=0.).to(tl.float32) - tl.load(u + o, mask=m, other=0.).to(tl.float32)
    b_p = tl.load(p + o, mask=m, other=0.).to(tl.float32)
    tl.store(d_out + o, _gelu(b_p * b_r).to(d_out.dtype.element_ty), mask=m)


@triton.jit(do_not_specialize=["T"])
def prism_wu1_kernel(k, v, u, p, beta, g2, a, w_out, u_out, T, H, K: tl.constexpr, V: tl.constexpr,
                     BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, RAW: tl.constexpr):
    """L = 1 forward on fla's GDN kernels (FWD_IMPL="fla_parts"): fla's recompute_w_u step with the value built
    in-kernel, so delta_1 never reaches HBM.

        U = A diag(b1) delta_1,  delta_1 = GELU(p_1 (v - u)),    W = A diag(b1 exp2(g2)) K1

    k, v, u, p: the first key / value / anchor / first gain [B, T, H, K or V] (16-bit); beta [B, T, H] (b1);
    g2 [B, T, H] fp32, the chunk-local cumsum of g in log2 units (fla's convention); a [B, T, H, BT] = Tr in the
    inputs' dtype from fla's fused kkt + solve kernel, which writes only the blocks on and below the diagonal:
    loaded under the lower-triangular mask, so its buffer needs no zero fill. w_out [B, T, H, K] and u_out
    [B, T, H, V] in the inputs' dtype (what fla's state pass reads). The dot operands are 16-bit with fp32
    accumulation, as in fla's kernel; delta_1 b1 is rounded once (fla's path rounds delta_1, then delta_1 b1).
    Grid (NT, B*H)."""
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    o_i = tl.arange(0, BT)
    o_t = i_t * BT + o_i
    m_t = o_t < T
    base = (i_b * T * H + i_h).to(tl.int64)
    b_b = tl.load(beta + base + o_t * H, mask=m_t, other=0.).to(tl.float32)
    m_a = m_t[:, None] & (o_i[None, :] <= o_i[:, None])
    b_a = _raw(tl.load(a + base * BT + o_t[:, None] * (H * BT) + o_i[None, :], mask=m_a, other=0.), RAW)
    for i_v in range(tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = m_t[:, None] & (o_v < V)[None, :]
        off_v = base * V + o_t[:, None] * (H * V) + o_v[None, :]
        b_r = tl.load(v + off_v, mask=m_v, other=0.).to(tl.float32) - tl.load(u + off_v, mask=m_v, other=0.).to(tl.float32)
        b_d = _gelu(tl.load(p + off_v, mask=m_v, other=0.).to(tl.float32) * b_r) * b_b[:, None]
        b_u = tl.dot(b_a, _raw(b_d.to(a.dtype.element_ty), RAW))
        tl.store(u_out + off_v, b_u.to(u_out.dtype.element_ty), mask=m_v)
    b_gb = b_b * tl.exp2(tl.load(g2 + base + o_t * H, mask=m_t, other=0.))
    for i_k in range(tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = m_t[:, None] & (o_k < K)[None, :]
        off_k = base * K + o_t[:, None] * (H * K) + o_k[None, :]
        b_k = tl.load(k + off_k, mask=m_k, other=0.).to(tl.float32) * b_gb[:, None]
        b_w = tl.dot(b_a, _raw(b_k.to(a.dtype.element_ty), RAW))
        tl.store(w_out + off_k, b_w.to(w_out.dtype.element_ty), mask=m_k)


# ----------------------------------------------------------------------------------------- launchers
def _block(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def _prec(dtype: torch.dtype) -> str:
    return "ieee" if dtype in (torch.float32, torch.float64) else "tf32"


# SPLIT_SOLVE: run the triangular solve as its own kernel (prism_fwd_solve_kernel) before the fused prep
# (PREP_IMPL="fused" only). H100: correct (1 case), fwd prep 1.93 -> 0.81 ms at L=1; superseded by
# PREP_IMPL="split" with fla's Tr, so off by default.
SPLIT_SOLVE = False
# TR_SOLVER: where prism_fwd_prep (forward phase i and backward phase A) gets Tr = (I + A)^-1 from.
#   "fla" (default since version 3): fla's building blocks (`_tr_fla`): chunk_local_cumsum (log2 units),
#         chunk_scaled_dot_kkt_fwd (A, fp32) and solve_tril (Tr, fp32); the prep reads Tr (no solve of its own).
#         For 16-bit inputs on CUDA; float32 inputs keep "own" there (fla's kkt kernel takes tl.dot's default
#         tf32 precision for fp32 operands: ~1e-3, not the 1e-5 of the ieee path). Under the Triton
#         interpreter fla's autotuned kernels do not run, so `_tr_fla` uses torch stand-ins with the same
#         signatures (`_torch_chunk_local_cumsum`, `_torch_scaled_dot_kkt`, `_torch_solve_tril`) and CI tests
#         the glue and the prep-from-Tr kernel. H100 (results/kernels/prism-triton-v3-check-h100.json): every
#         gradient within 5e-3 at K 64/128, L 1/3, T 64..4096; L=1 fwd 2.69 -> 1.70 ms at T=2048.
#   "own" (version 2): the blocked solve `_solve_tril` inside prism_fwd_prep_kernel (or, with SPLIT_SOLVE, in
#         prism_fwd_solve_kernel before it). Checked on an H100 (NOTES.md).
TR_SOLVER = "fla"
# PREP_IMPL: how prism_fwd_prep (forward phase i and backward phase A) is computed.
#   "split" (default since version 3): three small kernels, fla-style: Tr (fla's with TR_SOLVER="fla", else
#           prism_fwd_solve_kernel), then prism_prep_w_kernel (gc, W), prism_prep_u_kernel (Ub, Sw in BV-wide
#           column blocks of V, PREP_BV) and, in the backward, prism_prep_dvloc_kernel (dVloc, same column
#           blocks): 64-241 registers on sm_90, no spills. Checked on an H100 with both Tr sources (same file
#           as TR_SOLVER); with TR_SOLVER="fla": L=3 fwd 3.92 -> 2.91 ms at T=2048.
#   "fused" (version 2): one prism_fwd_prep_kernel per chunk (255 registers at K = V = 64 on sm_90, spills
#           at L = 3: NOTES.md).
PREP_IMPL = "split"
# PREP_W (PREP_IMPL="split"): "fused" (version 7 default): prism_prep_u_kernel's first column block also stores gc and
# W (STORE_W), so prism_prep_w_kernel (0.12 ms at T=2048 on the H100) is not launched; "kernel" (versions 3-6):
# prism_prep_w_kernel computes them before prism_prep_u_kernel.
PREP_W = "fused"
# KEYS_IMPL: how prism_bwd_keys (backward phase C2: extra keys l >= 2 and the solver's chain rule) runs.
#   "kinds" (default since version 5): the same kernel as "split", launched three times per extra key, one launch
#           per program kind (KIND 0 rows, 1 columns, 2 values; 4 warps each), so each kind is compiled alone.
#           Evidence (scripts/gpu/prism_key_diag.py, H100, T=2048, L=3, 32768 tokens, H=16, K=V=64): one "split"
#           launch 3.04-3.28 ms at 8 warps (3.31-3.86 at 4); the three kinds alone at 4 warps 0.79-0.86 (rows) +
#           0.49-0.55 (columns) + 0.62-0.68 (values) = 1.91-2.09 ms. Under ncu the branched launch has 255
#           registers and 11.7 M local-memory spill requests, the kinds alone 5.5 M / 0 / 3.3 M.
#           H100 (release check, commit 2079e60): every gradient within 5e-3 (22 of 22, worst 2.76e-3); bwd_keys at L=3,
#           T=2048: 4.28 ms ("split" 6.66; predicted ~4.2), L=3 backward 7.57 ms (9.96 with "split").
#   ("kinds4", version 5 candidate: the rows kind in two launches, read-out and intra-chunk-write halves; no spills
#           offline, but 4.78 ms against 4.28 for "kinds" on the H100: deleted, NOTES.md "Version 5".)
#   "split" (version 3): one prism_bwd_key_kernel launch per extra key, l = L-1 .. 1, grid (3, N, B*H):
#           per chunk a rows program (dq, dk1, dbeta1, dg partials), a columns program (dk_l) and a values program
#           (dD_l, dbeta_l, dp_l, the solver's running dr), each adding in place to fp32 buffers (dr in the dead
#           dV1 buffer: no extra memory); one program per buffer and chunk tile per launch, so no atomics and
#           deterministic results; then prism_bwd_keys_tail_kernel (first solver step, dv, du, final stores).
#           Offline sm_90 (K = V = 64, bf16, 8 warps): 255 registers, 24 B spills; tail 121, none (NOTES.md).
#           H100: every gradient within 5e-3 (release check); L=3 fwd+bwd 23.7 -> 13.9 ms at T=2048 with WY_IMPL
#           "split" (~3.1 ms per extra key, predicted 0.9: NOTES.md).
#   "fused" (version 2): prism_bwd_keys_kernel, all keys unrolled in one program per chunk (L=3, 8 warps: 255
#           registers, 5.0 / 5.8 KB spill stores / loads per thread; H100: bwd_keys 16.1 ms of L=3's 22 ms backward).
#   ("split2", version 4 preparation: prism_bwd_key2_kernel, four lighter kinds of program per chunk tile; exact
#           on an H100 but slower, bwd_keys 6.6 -> 8.8 ms at L=3, T=2048; deleted, NOTES.md "Version 4".)
KEYS_IMPL = "kinds"
# KEYS_TAIL (KEYS_IMPL "kinds" or "split", L > 1): "fused" (version 7 default) does the tail's work in the last per-key
# launch (l = 1, LAST): its rows program stores dq, dk[0], dbeta[0] and its values program the solver's first step
# (dp[0], dv, du), so prism_bwd_keys_tail_kernel (0.37 ms at L=3, T=2048 on the H100, bandwidth-bound on the fp32
# partials and dr) is not launched; "separate" (version 6) launches the tail kernel after the per-key launches.
# L = 1 always runs the tail kernel (no per-key launch).
KEYS_TAIL = "fused"
# KEYS_LOOP (KEYS_IMPL "kinds", L > 1): the program kinds that run for every extra key in one launch, a runtime loop
# over the keys, instead of one launch per key (version 9):
# Default ("rows", "columns"): release grid 22/22 within 5e-3 with all three kinds looped (session 10's call 2; the
# columns and values loops bit-identical to the per-key launches there), L=3 fwd+bwd 5.59 ms at T=2048 (run 17).
#   "rows" (version 10; KEYS_ROWS="loop" in its first commits): prism_bwd_key_rows_kernel, after the per-key launches,
#          in two passes (read-out, intra-chunk write), one fp32 accumulator live at a time, so the fp32 partials dq,
#          dk1 are read and written once per chunk and q, dO, dH', K1, dY once. H100, T=2048, L=3 fwd+bwd with
#          KEYS_BF16 (results/kernels/prism-keys-bf16-h100.json): 5.98 ms per key, 5.69 loop (8 warps: 6.17); T=16384
#          6.80 -> 6.44; release grid 22/22 within 5e-3. Offline sm_90, 4 warps: 255 registers, 76-128 B of spills.
#   "columns" (version 10, session 10's call 2): prism_bwd_key_columns_kernel, after the per-key launches: dk_l per
#          key in one launch, the chunk's shared tiles re-read per key mostly from L2; one pipelining stage
#          (MEASURED_STAGES; offline: 246 registers, no spills, 32 KB of shared memory; 155 KB at 3 stages). H100,
#          T=2048, L=3 fwd+bwd (results/kernels/prism-keys-loop-h100.json): 5.709 ms with the rows loop alone, 5.538
#          with the columns loop too (0.29 ms for both keys' columns), 5.819 with it at 3 stages; outputs and every
#          gradient bit-identical to the per-key launches there.
#   "values" (measured slower, not in the default): prism_bwd_key_values_kernel, first: the solver chain's running dr
#          stays in registers across the keys. 8 warps (offline: 980 B of spills at 4 warps, 96 B at 8). H100: 1.41 ms
#          for both keys against ~1.28 for the per-key launches (5.753 ms with rows + values loops; 6.389 at 4 warps).
KEYS_LOOP = ("rows", "columns")
# KEYS_VALUES_BS (KEYS_IMPL "kinds", values not in KEYS_LOOP): None, or a row-block size BS < BT for the per-key
# values launches: prism_bwd_key_values_rb_kernel, grid (BT // BS, N, B*H), each program the values kind's work for BS
# rows of a chunk ([BS, BT] and [BS, BV] tiles instead of [BT, BT] and [BT, BV]: fewer registers, more CTAs per SM,
# twice the programs). Same operations per row as the whole-chunk program (the products' rows are independent).
# Candidate (session 14), off: offline sm_90, bf16, K = V = 64, 4 warps, 164 registers (194 for the first key's launch)
# against the whole-chunk program's 240-255; on an H100 at BS = 32, 4 warps, its bf16 dot faults ("out-of-range shared
# or local address", compute-sanitizer; a Triton 3.6 codegen fault: the interpreter runs it bit-identical to whole
# chunks). NOTES.md "Version 12 candidate".
KEYS_VALUES_BS = None
# KEYS_VALUES_BV (KEYS_IMPL "kinds", the per-key values launches, not KEYS_VALUES_BS): None (whole V per program) or a
# column block BV of V (a power of two >= 16 below V): the values programs then run on [BT, BV] tiles, grid
# (V / BV, N, B*H). Each column block recomputes the two [BT, BT] products (Qs K_l^T, K1 K_l^T), so the launch does
# 7 [64, 64, 64]-equivalent dots per key and chunk instead of 5; what it buys is registers: offline sm_90 (bf16 dots,
# K = V = 64, 4 warps) the whole-V values kind needs 240-255 registers (two CTAs per SM; capped at 168 it spills 536
# B), the 32-wide one 221-227, and capped at 168 (three CTAs per SM; MAXNREG["key_values_bv"]) 24-44 B of spills.
# Candidate (session 18), off: on an H100 (Triton 3.6) with the kinds' bf16 dots it computed dv, du, dp and dbeta ~12%
# wrong at BV 32 and faulted under the cap (the row-block values kernel's failure of sessions 14-15 again), while the
# interpreter runs it bit-identical to whole V; the launcher refuses it with bf16 dots on a GPU.
KEYS_VALUES_BV = None
# KEYS_ROWS_SPLIT ("rows" in KEYS_LOOP): the rows loop's two passes (the read-out's dq, rho, s; the intra-chunk write's
# dk1, dbeta1) as two launches (PASS 1, 2) instead of one. Offline sm_90 (bf16 dots, K = V = 64, 4 warps): the one
# launch takes 255 registers with 76 B of spills (128 B for the last key's), each pass alone 239-254 registers and none;
# still two CTAs per SM. Candidate (session 18), off: on an H100 (session 19) correct and 0.1-0.3% faster in fwd+bwd,
# below the 1% that makes a default.
KEYS_ROWS_SPLIT = False
# KEYS_COLUMNS_BS ("columns" in KEYS_LOOP, with the D_l stash): the same for the columns loop,
# prism_bwd_key_columns_rb_kernel (dk_l for BS rows per program, tiles held transposed). Candidate (session 14), off;
# never run on a GPU (its dots have the faulting values kernel's [*, 32] shape).
KEYS_COLUMNS_BS = None
# RB_LOADS: how the row-block kernels (KEYS_VALUES_BS, KEYS_COLUMNS_BS) get their transposed tiles: "trans" (row
# tiles through `_rows`, transposed in registers) or "ptr" (transposed block pointers, `_rows_t`; session 14's first
# GPU call: an illegal memory access in the values kernel, NOTES.md).
RB_LOADS = "trans"
# RB_D16: whether the row-block kernels take the per-key kinds' bf16 dots (DOT16 "key"); False runs their dots at the
# input precision's `_prec` (tf32) while the other key kernels keep bf16 (session 15: on an H100 the values kernel's
# bf16 dots fault at BS 32 and 16, with either RB_LOADS; at tf32 it runs and matches whole chunks).
RB_D16 = True
# WY_IMPL: how prism_bwd_wy (backward phase C1: the WY part and the first key) runs.
#   "split2" (default since version 4): three lighter kernels. prism_bwd_wy2_cols_kernel, grid
#           (cdiv(V, WY_BV), N, B*H): the per-column products dY = Tr^T dV1 (over Ub) and V1 = Ub - W h (over dV1);
#           prism_bwd_wy2_erase_kernel: the WY part from dY, V1, h alone (dZ = -dY h^T, dA from dY V1^T) plus the
#           state write's terms (V1 dH'^T), dk1 over W; prism_bwd_wy2_read_kernel: the read-out (dq, dk1 +=,
#           dg +=). 4 warps at K, V <= 64 (one warpgroup), else 8. No extra memory. H100, T=2048, L=1:
#           1.36 ms (version 3's two-kernel "split": 1.95, deleted; "fused": 2.61).
#   "fused" (version 2): prism_bwd_wy_kernel, one program per chunk (H100: 2.64 ms at T=2048, L=1 and L=3).
WY_IMPL = "split2"
# column block of V in prism_bwd_wy2_cols_kernel (WY_IMPL="split2"); capped at the padded V
WY_BV = 32
# column block of V in prism_prep_u_kernel and prism_prep_dvloc_kernel (PREP_IMPL="split"); capped at the padded V.
# 64 since version 7 (results/kernels/prism-bv-sweep-h100.json, T=2048, at their measured warps: whole prep at L=3
# 1.044 -> 1.024 ms, dvloc 0.142 -> 0.129; 16 is slower everywhere; outputs identical)
PREP_BV = 64
# num_warps overrides per launcher ("solve", "prep", "prep_solved" (TR_SOLVER="fla"; else "prep"), "h", "o",
# "dh", "tr_fused" (TR_FLA_IMPL="fused": fla's kkt + solve kernel), "wy" (WY_IMPL="fused"), "keys" (the fused
# kernel, or the tail with KEYS_IMPL "split" / "kinds"), "key"
# (KEYS_IMPL="split": the per-key kernel), "key_kind0" / "key_kind1" / "key_kind2" (KEYS_IMPL="kinds": its rows /
# columns / values launches; default 4), "wy2_cols", "wy2_erase", "wy2_read" (WY_IMPL="split2"); PREP_IMPL="split":
# "split_solve", "prep_w", "prep_u", "prep_dvloc"), for tuning runs only (scripts/gpu/prism_triton_check.py sweeps
# them); empty = the defaults of `_warps`.
WARPS: dict = {}
# MAXNREG: register cap (Triton's `maxnreg` launch option) per launcher name ("o", "prep_u", and "key_kind0" /
# "key_kind1" / "key_kind2" for KEYS_IMPL="kinds"'s rows / columns / values launches, the names of WARPS), for tuning
# runs (scripts/gpu/prism_o_prep_sweep.py, prism_key_diag.py); an entry of None removes a measured cap; empty = the
# measured caps (MEASURED_MAXNREG). Ignored under the interpreter.
MAXNREG: dict = {}
# MEASURED_MAXNREG: register caps measured faster on an H100 at K, V <= 64 (results/kernels/prism-o-prep-sweep-h100.json,
# T=2048, L=3, 4 warps: output kernel 0.556 -> 0.522 ms under 168, identical outputs; 0.741 under 128). Version 8.
MEASURED_MAXNREG = {"o": 168}


def _cap(name: str, BK: int = 64, BV: int = 64) -> dict:
    """Launch options of launcher `name`'s register cap: MAXNREG[name] if set (None: no cap), MEASURED_MAXNREG[name]
    at K, V <= 64, else none."""
    if INTERPRET:
        return {}
    n = MAXNREG[name] if name in MAXNREG else (MEASURED_MAXNREG.get(name) if max(BK, BV) <= 64 else None)
    return dict(maxnreg=n) if n else {}


# STAGES: software-pipelining depth (Triton's `num_stages` launch option) per launcher name, for tuning runs; empty =
# MEASURED_STAGES, else Triton's default (3). The loop kernels of KEYS_LOOP ("key_rows", "key_columns",
# "key_values"), prep_u and the output kernel ("o") are the launchers it is read for: their runtime loop over the keys
# is what Triton pipelines, with one shared-memory buffer per stage for each loaded tile (offline sm_90, 4 warps: the
# columns loop 155 KB of shared memory at 3 stages, one CTA per SM; 32 KB at 1).
STAGES: dict = {}
MEASURED_STAGES: dict = {"key_columns": 1}


def _stages(name: str) -> dict:
    """Launch options of launcher `name`'s pipelining depth (STAGES, MEASURED_STAGES); none under the interpreter."""
    if INTERPRET:
        return {}
    n = STAGES[name] if name in STAGES else MEASURED_STAGES.get(name)
    return dict(num_stages=n) if n else {}


# SEQ_BV: column block of V in the two sequential passes over chunks ("h": prism_fwd_h_kernel, "dh":
# prism_bwd_dh_kernel), whose grid is (cdiv(V, BV), B*H); empty = the rule of `_seq_bv`; for tuning runs
# (scripts/gpu/prism_seq_bv.py). SEQ_MIN_PROGRAMS: that rule halves the block (down to 16) until the grid has at least
# this many programs. H100 (132 SMs; results/kernels/prism-seq-bv-h100.json, L=3, K=V=64, 32768 tokens, H=16), ms,
# state pass / dh pass at T=2048, 8192, 16384: version 5's fixed 32 at 8 warps 0.405 / 0.643, 0.391 / 0.644,
# 0.679 / 1.270; the rule at 4 warps 0.286 / 0.428, 0.378 / 0.594, 0.553 / 1.029 (the fastest of 16 / 32 / 64 x 4 /
# 8 warps at every T), identical outputs.
SEQ_BV: dict = {}
SEQ_MIN_PROGRAMS = 128


def _seq_bv(BK: int, V: int, override=None, n_bh: int = 1 << 30, cap: int = 32) -> int:
    """Column block of V for a sequential pass: override if given; the whole padded V under the interpreter; 16 at
    K > 64; else the largest power of two <= cap (32 for the state pass, 64 for the dh pass) whose grid
    n_bh * cdiv(V, BV) has at least SEQ_MIN_PROGRAMS programs, and no smaller than 16."""
    if override is not None:
        return min(_block(V), int(override))
    if INTERPRET:
        return _block(V)
    if BK > 64:
        return min(_block(V), 16)
    bv = min(_block(V), cap)
    while bv > 16 and n_bh * triton.cdiv(V, bv) < SEQ_MIN_PROGRAMS:
        bv //= 2
    return bv


def _seq_warps(name: str, BK: int, BT: int) -> int:
    """num_warps of a sequential pass: WARPS[name] if set; 4 at K <= 64 (faster than 8 at every column block and T
    measured on the H100, see SEQ_BV); else `_warps`."""
    if name in WARPS:
        return WARPS[name]
    return 4 if BK <= 64 else _warps(BK, BT, BT)


# DOT16: launchers whose dots round their fp32 operands to bf16 for bf16 inputs (`_mm`; fla's kernels take every dot
# so): "h" (the state pass), "o" (V1 then stored in bf16), "dh" (the reverse pass), "key" (the per-key backward kinds).
# Other dtypes keep their precision (`_prec`). Empty: version 8's dots (tf32 for fp32 operands). H100, T=2048, L=3
# (results/kernels/prism-dot16-h100.json): output kernel 0.521 -> 0.400 ms, state pass 0.284 -> 0.246, dh 0.409 ->
# 0.288, per-key kinds 4.14 -> 3.69; release grid within 5e-3 (worst 3.45e-3, L=3 3.31e-3). Measured and removed:
# prep_u in bf16 was slower (0.753 -> 0.814 ms); the WY kernels' bf16 dots saved 0.07 ms but raised dg's interpreter
# error to 5.2e-3 at L=1 (NOTES.md, version 9). "prep_u" (version 13): prep_u's two extra-key dots (Bl D into X,
# ke^T D into Sw) in bf16 (version 9's slower prep_u measurement also rounded the fp32 Tr for its W and Ub dots, which
# version 12's TR16_DOTS takes in bf16 without a conversion); H100, T=2048, L=3 (results/kernels/
# prism-tune-cand17-h100.json, session 17): prep_u 724 -> 615 us, forward 1.307 -> 1.197 ms.
DOT16 = ("h", "o", "dh", "key", "prep_u", "wy")
# KEYS_BF16 (version 10; KEYS_IMPL "kinds" with "key" in DOT16, bf16 inputs): bf16 copies of the two operands that the
# per-key kinds use only inside bf16 dots, so each launch reads half or a fifth of the bytes with the same results:
#   "dh": dH' [B,N,H,K,V], stored a second time in bf16 by the reverse pass (the WY erase kernel reads the fp32
#         one unless DH16_WY, which then leaves the fp32 one unstored); the six launches at L=3 read 8 KB per chunk instead of 16 KB.
#   "d":  D_l = GELU(z_l) beta_l, stored in bf16 by each key's values launch (run first) and read by its rows and
#         columns launches, which otherwise recompute it from v, u, p_0..p_l (l+3 tiles of the chunk).
# Memory: + [B,N,H,K,V] and [B,T,H,V] (one per extra key with a KEYS_LOOP kind) bf16 during the backward. Empty:
# version 9's reads. H100, T=2048, L=3 fwd+bwd with per-key rows launches (results/kernels/prism-keys-bf16-h100.json):
# 6.80 ms without, 6.73 "dh", 6.06 "d", 5.98 both; outputs and every gradient equal to the last bit there too.
KEYS_BF16 = ("dh", "d")
# DH16_WY (version 13, on; with KEYS_BF16 "dh", L > 1, WY_IMPL "split2"): the WY erase kernel reads the bf16 copy of
# dH' as the per-key kinds do, so the reverse pass stores dH' once, in bf16 (8 KB per chunk and head instead of
# 16 + 8). It changes the erase kernel's state-write terms (dk1's diag(e) V1 dH'^T, dg's gamma_C <h, dH'>). H100,
# T=2048, L=3 (results/kernels/prism-tune-cand17-h100.json): fwd+bwd 5.220 -> 5.105 ms alone; with DOT16 "prep_u"
# too 5.015, the reverse pass 273 -> 222 us and the erase kernel 437 -> 385; release grid 32/32 within 5e-3 (worst
# 3.45e-3). False: version 12's fp32 dH' for the erase kernel.
DH16_WY = True
# "wy" in DOT16 (version 14; L > 1 only): WY_IMPL "split2"'s three kernels take their dots in bf16 except the two
# whose operand holds a transposed dot result. Version 9 measured it -0.066 ms of fwd+bwd (H100, T=2048, L=3) and
# dropped it for dg's interpreter error at L=1 (5.2e-3 at T=70), so it acts at L > 1 only; interpreter, bf16, L 2-4:
# every error within 3.8e-3 of float64. WY_V1_16 (version 14, on; with "wy" acting): V1 = Ub - W h goes to a bf16
# buffer of its own, which its two readers round to bf16 for their dots anyway (the same results), instead of over
# dV1's fp32 buffer: 2 bytes per element less written and read twice; + [B,T,H,V] bf16 during the WY phase (peak
# memory unchanged at the perf shape). H100, T=2048, L=3 (results/kernels/prism-tune-cand18-h100.json, session 17):
# WY kernels 1,087 -> 997 us with "wy", 934 with WY_V1_16 too; fwd+bwd 4.995 -> 4.910 -> 4.831 ms; release grid 32/32
# within 5e-3 (worst 3.46e-3; L=3 3.33e-3 -> 3.46e-3, dq). False / "wy" left out: version 13's WY phase.
WY_V1_16 = True


# FWD_STASH_D (version 11, on; L > 1, bf16 inputs with "o" in DOT16, PREP_IMPL "split"): prep_u stores each extra
# key's D_l = GELU(z_l) beta_l in bf16 ([L-1,B,T,H,V], freed after the forward) and the output kernel reads it instead
# of recomputing the solver chain from v, u, p_1..p_L and beta (L+2 tiles of the chunk and L GELUs). The output
# kernel rounds D_l to bf16 for its dots anyway: the same dot inputs (bit-identical under the interpreter, and on an
# H100 too in session 13's call at T=2048, L=3: outputs, final state and every gradient equal to version 10's). The backward's
# per-key kinds keep their own stash (KEYS_BF16 "d"). H100, T=2048, L=3 (results/kernels/prism-fwd-stash-h100.json):
# the output kernel 397 -> 236 us, prep_u 742 -> 792 us, the forward 1.610 -> 1.499 ms; harness run 18: L=3 fwd
# 1.619 -> 1.510 ms, fwd+bwd 5.59 -> 5.54 ms, peak memory unchanged (3028 MiB). Off: version 10's path, whose
# kernels compile to version 10's SASS (scripts/sass_diff.py).
FWD_STASH_D = True
# FWD_SW (with the FWD_STASH_D stash): where the forward computes the extra keys' state write
# Sw = sum_{l>=2} (e K_l)^T D_l. "prep" (version 10, the default): prep_u, a tf32 dot per key from the fp32 D_l,
# stored as an fp32 [B,N,H,K,V] buffer the state pass reads. "h": the state pass, from the bf16 stash and k_l, in
# bf16 dots like its V1 term's; prep_u then keeps no Sw accumulator (offline sm_90, L=3: 132 -> 8 B of spills) and no
# Sw buffer is allocated. Measured slower (H100, T=2048, L=3, results/kernels/prism-fwd-stash-h100.json): prep_u
# 792 -> 677 us but the state pass 247 -> 473 us, the forward 1.499 -> 1.594 ms; within 5e-3 of float64 (release
# check's fwd_sw_h rows). Without the stash it is always "prep".
FWD_SW = "prep"


def _fwd_sw(fwd_sw) -> str:
    s = FWD_SW if fwd_sw is None else fwd_sw
    if s not in ("prep", "h"):
        raise ValueError(f"FWD_SW must be 'prep' or 'h', got {s!r}")
    return s


# FWD_16 (version 12, all four on; bf16 inputs only): the forward's intermediates kept in bf16 instead of fp32, as
# fla's GDN keeps its own (w, u, A, h). A subset of
#   "tr": Tr = (I + A)^-1 from fla's kkt + solve (TR_SOLVER "fla"; the kernel casts its fp32 result to the buffer's
#         dtype, as fla's GDN asks for); read by prep_u (W, Ub) and the backward's WY column kernel;
#   "w":  W (split prep); the state and reverse passes round it to bf16 for their dots anyway (DOT16 "h", "dh"), so
#         the forward is unchanged; the backward's WY column kernel recomputes V1 = Ub - W h from it, and the partial
#         dk1 that used to overwrite W's buffer gets an fp32 buffer of its own;
#   "sw": the extra keys' state write Sw (split prep), added to the fp32 state by the state pass;
#   "hs": the chunk-start states h_c (the state pass keeps its running state in fp32 and stores a bf16 copy); the
#         output kernel rounds them to bf16 for its dots anyway (DOT16 "o"); the backward's WY kernels read them.
# Bytes per (chunk, head) at K = V = 64: 8 KB less per buffer written and per read. () is version 11's path.
# H100, T=2048, L=3, autograd (results/kernels/prism-tune-bytes2-h100.json, session 16): with TR16_DOTS the forward
# 1.485 -> 1.310 ms and fwd+bwd 5.475 -> 5.224 ms (prep_u 792 -> 725 us, fla's kkt + solve 208 -> 164, state pass
# 242 -> 219, output 226 -> 202, reverse pass 320 -> 272, WY columns 300 -> 274); release grid 32/32 within 5e-3
# (worst 3.45e-3, as version 11; L=3 worst 3.32e-3 against 3.27e-3); peak memory 3028 -> 2964 MiB (harness).
FWD_16: tuple = ("tr", "w", "sw", "hs")
_FWD_16_NAMES = ("tr", "w", "sw", "hs")
# TR16_DOTS (version 12, on; with FWD_16 "tr"): prep_u takes its W and Ub dots with the bf16 Tr as it is and the
# other operand rounded to bf16 (fla's recompute_w_u's dots), instead of converting Tr to fp32 for tf32 dots, which
# cost more than the bytes saved (H100, T=2048, L=3: prep_u 792 -> 897 us that way; 725 with TR16_DOTS, session 16).
TR16_DOTS = True


def _tr_d16(tr_dtype: torch.dtype) -> int:
    """prep_u's TR_D16: 0 (Tr fp32, or TR16_DOTS off), else `_d16_on`'s mode."""
    return _d16_on() if tr_dtype == torch.bfloat16 and TR16_DOTS else 0


def _fwd16(name: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype of the forward's intermediate `name` (FWD_16): bf16 where named for bf16 inputs, else float32."""
    if isinstance(FWD_16, str) or not set(FWD_16) <= set(_FWD_16_NAMES):
        raise ValueError(f"FWD_16 must be a tuple of names among {_FWD_16_NAMES}, got {FWD_16!r}")
    return torch.bfloat16 if dtype == torch.bfloat16 and name in FWD_16 else torch.float32


def _fwd_stash_d(L: int, dtype: torch.dtype) -> bool:
    """Whether the forward stashes D_l for the output kernel (FWD_STASH_D)."""
    return FWD_STASH_D and L > 1 and _d16("o", dtype) != 0 and _prep_impl(None) == "split"


def _d16(name: str, dtype: torch.dtype) -> int:
    """The D16 constexpr of launcher `name`: 0 (dots at `_prec`), 1 (bf16 dots: name in DOT16, bf16 inputs, a GPU) or
    2 (the same roundings under the interpreter)."""
    return _d16_on() if dtype == torch.bfloat16 and name in DOT16 else 0


def _d16_on() -> int:
    """The constexpr of a bf16-dot launch: 1 on a GPU, 2 under the interpreter (the same roundings, emulated)."""
    return 2 if INTERPRET else 1


def _raw_ok(dtype: torch.dtype) -> bool:
    return not INTERPRET and dtype in (torch.bfloat16, torch.float16)


# num_warps measured on the H100 for the parallel launchers at K, V <= 64 (results/kernels/prism-warps-sweep-h100.json,
# chunk 64, T=2048, L 1 and 3, outputs identical to `_warps`' choice): prep_u 4 (whole prep at L=3 1.415 -> 1.059 ms),
# o 4 (L=3 0.725 -> 0.599, L=1 0.341 -> 0.195), prep_dvloc 2 (0.221 -> 0.142); prep_w, wy2_* and the keys tail showed
# no gain from 2 / 4 / 8 (within 2%); the column-block sweep (prism-bv-sweep-h100.json) kept 4 and 2 best at PREP_BV 64.
# K or V > 64 keeps `_warps` (not measured). wu1 (prism_wu1_kernel, version 8): 8 (0.168 -> 0.163 ms against 4).
MEASURED_WARPS = {"prep_u": 4, "o": 4, "prep_dvloc": 2, "wu1": 8}


def _launch_warps(name: str, BK: int, BV: int, BT: int = 64) -> int:
    """num_warps of a parallel launcher: WARPS[name] if set; MEASURED_WARPS[name] at K, V <= 64; else `_warps`."""
    if name in WARPS:
        return WARPS[name]
    if name in MEASURED_WARPS and max(BK, BV) <= 64:
        return MEASURED_WARPS[name]
    return _warps(BK, BV, BT)


def _warps(BK: int, BV: int, BT: int = 64) -> int:
    """8 warps once a [64, 64] fp32 tile is involved (offline sm_90 compiles: 4 warps spill 0.4-2 KB per
    thread in prep, fwd_h and bwd_dh at K = 64, 8 warps spill little or nothing); 4 below. (The state and dh passes
    use `_seq_warps` instead since version 6: 4 warps measured faster on the H100 despite the spills.)"""
    return 4 if max(BK, BV, BT) <= 32 else 8


def _prep_bv(V: int) -> int:
    """Column block of V in the split prep's column-blocked kernels (prism_prep_u, prism_prep_dvloc): PREP_BV, at
    least 16, capped at the padded V."""
    return min(_block(V), max(16, triton.next_power_of_2(PREP_BV)))


def _chunk(K: int, V: int, chunk_size: int) -> int:
    """Chunk length the kernels run at: chunk_size, capped at 32 for K or V > 64 (shared memory of the
    gradient kernels: K = V = 128 at 32 fits, 128 KB / 144 KB; the math is exact for any chunk length)."""
    return chunk_size if max(K, V) <= 64 else min(chunk_size, 32)


# ------------------------------------------------------------------------- Tr from fla (TR_SOLVER = "fla")
def _torch_chunk_local_cumsum(g, chunk_size, scale=None, output_dtype=torch.float):
    """Stand-in for fla.ops.utils.chunk_local_cumsum (interpreter only): inclusive cumsum of g [B, T, H]
    within each chunk of chunk_size tokens, times scale. Returns [B, T, H] in output_dtype.

    Example: `_torch_chunk_local_cumsum(g, 64, scale=1.4427)` is the log2-unit cumulative log-decay."""
    B, T, H = g.shape
    N = triton.cdiv(T, chunk_size)
    x = torch.zeros(B, N * chunk_size, H, device=g.device, dtype=torch.float32)
    x[:, :T] = g.float()
    x = x.view(B, N, chunk_size, H).cumsum(2).view(B, N * chunk_size, H)[:, :T]
    if scale is not None:
        x = x * scale
    return x.to(output_dtype).contiguous()


def _torch_scaled_dot_kkt(k, g, beta, chunk_size, output_dtype=torch.float32):
    """Stand-in for fla.ops.common.chunk_scaled_dot_kkt.chunk_scaled_dot_kkt_fwd (interpreter only), same
    convention: A[t, i] = beta_t exp2(g_t - g_i) (k_t . k_i) for i < t in the same chunk, else 0, with g the
    chunk-local cumsum in log2 units. k [B, T, H, K], g and beta [B, T, H]. Returns A [B, T, H, BT].

    Example: `A = _torch_scaled_dot_kkt(k[0], g2, beta[0], 64)` -> [B, T, H, 64] fp32."""
    B, T, H, K = k.shape
    BT = chunk_size
    N = triton.cdiv(T, BT)
    TP = N * BT

    def pad(x):
        y = torch.zeros((B, TP) + tuple(x.shape[2:]), device=x.device, dtype=torch.float32)
        y[:, :T] = x.float()
        return y.view((B, N, BT) + tuple(x.shape[2:]))

    kc, gc, bc = pad(k), pad(g), pad(beta)                              # [B,N,BT,H,K], [B,N,BT,H]
    A = torch.einsum("bnihk,bnjhk->bnihj", kc, kc)                      # [B, N, BT(i), H, BT(j)]
    m = torch.tril(torch.ones(BT, BT, dtype=torch.bool, device=k.device), -1)[None, None, :, None, :]
    d = gc[:, :, :, :, None] - gc.permute(0, 1, 3, 2)[:, :, None, :, :]   # g_i - g_j
    A = torch.where(m, A * torch.exp2(torch.where(m, d, 0.)), 0.) * bc[..., None]
    return A.reshape(B, TP, H, BT)[:, :T].to(output_dtype).contiguous()


def _torch_solve_tril(A, output_dtype=torch.float):
    """Stand-in for fla.ops.utils.solve_tril (interpreter only): (I + A)^-1 per chunk for a strictly lower
    A [B, T, H, BT] (fla's layout). Returns [B, T, H, BT] in output_dtype.

    Example: `Tr = _torch_solve_tril(A)`; Tr[b, c*BT:(c+1)*BT, h, :] is the chunk's inverse."""
    B, T, H, BT = A.shape
    N = triton.cdiv(T, BT)
    x = torch.zeros(B, N * BT, H, BT, device=A.device, dtype=torch.float32)
    x[:, :T] = A.float()
    x = x.view(B, N, BT, H, BT).permute(0, 1, 3, 2, 4)                 # [B, N, H, BT, BT]
    eye = torch.eye(BT, device=A.device, dtype=torch.float32).expand_as(x)
    tr = torch.linalg.solve_triangular(eye + torch.tril(x, -1), eye, upper=False, unitriangular=True)
    return tr.permute(0, 1, 3, 2, 4).reshape(B, N * BT, H, BT)[:, :T].to(output_dtype).contiguous()


def _fla_tr_ops():
    """(chunk_local_cumsum, chunk_scaled_dot_kkt_fwd, solve_tril, RCP_LN2): fla's on a GPU, the torch
    stand-ins under the interpreter (fla's kernels are autotuned and do not run there)."""
    from fla.ops.utils.constant import RCP_LN2

    if INTERPRET:
        return _torch_chunk_local_cumsum, _torch_scaled_dot_kkt, _torch_solve_tril, RCP_LN2
    from fla.ops.common.chunk_scaled_dot_kkt import chunk_scaled_dot_kkt_fwd
    from fla.ops.utils import chunk_local_cumsum, solve_tril

    return chunk_local_cumsum, chunk_scaled_dot_kkt_fwd, solve_tril, RCP_LN2


def _tr_fla(k1, beta1, g, BT):
    """Tr = (I + A)^-1 with A = diag(b1) (G< . K1 K1^T), from fla's building blocks.

    k1 [B, T, H, K] (first key), beta1 [B, T, H], g [B, T, H] log-decay (natural log, <= 0).
    fla's kkt kernel applies exp2 to differences of g, so g's chunk-local inclusive cumsum is taken in log2
    units (scale = 1/ln 2, as fla's gated delta rule does). Returns Tr [B, T, H, BT] fp32, the layout of the
    `tr` buffer of prism_fwd_prep ([BT, BT] slab of chunk c at rows c*BT.., row stride H*BT). With TR_FLA_IMPL="fused"
    at chunk 64 the 16 x 16 blocks above each slab's diagonal are undefined (the kernel does not write them and the
    buffer is not zero-filled): read it through `_tr_load`, or mask it (tests: `tr_lower`).

    Example: `tr = _tr_fla(k[0], beta[0], g, 64)` -> [B, T, H, 64] fp32.
    """
    cumsum, kkt, solve, rcp_ln2 = _fla_tr_ops()
    g2 = cumsum(g, chunk_size=BT, scale=rcp_ln2, output_dtype=torch.float32)
    impl = _tr_fla_impl()
    tr_dtype = _fwd16("tr", k1.dtype)
    if impl == "fused" and BT == 64 and not INTERPRET:
        return _fla_fused_kkt_solve(k1, g2, beta1, BT, tr_dtype)
    A = kkt(k=k1, g=g2, beta=beta1, chunk_size=BT, output_dtype=torch.float32)
    tr = solve(A, output_dtype=tr_dtype)
    if impl == "fused" and BT == 64:
        # interpreter: the torch stand-ins, written as the fused kernel writes (blocks on and below the diagonal, the
        # rest of the buffer left as allocated) so that the readers' masking (`_tr_load`) is tested on the CPU
        rows, cols = torch.arange(tr.shape[1], device=tr.device) % BT // 16, torch.arange(BT, device=tr.device) // 16
        tr = torch.where((cols[None, :] <= rows[:, None])[None, :, None, :], tr, torch.empty_like(tr))
    return tr


# TR_FLA_IMPL: which of fla's kernels build Tr when TR_SOLVER="fla".
#   "fused" (default since version 4): fla's chunk_gated_delta_rule_fwd_kkt_solve_kernel (the kernel fla's own GDN
#             forward uses at chunk 64): A = beta K K^T (gated) and its inverse in one pass, A never leaves
#             registers; we hand it an fp32 output buffer (the kernel casts its fp32 result to the buffer's dtype).
#             Its inverse merges run as tf32 dots, so Tr is ~3e-5 from the unfused path's (H100), not ~1e-6; end to
#             end the errors are unchanged (<= 2.8e-3). Chunk 64 only (else "unfused"). Under the interpreter the torch
#             stand-ins run either way, so only a GPU check tests it. H100, T=2048, 32768 tokens, H=16: 0.37 ms
#             (predicted 0.15-0.2); every gradient within 5e-3.
#   "unfused" (version 3): chunk_scaled_dot_kkt_fwd (A, fp32, written to HBM) then solve_tril: 0.62 ms.
TR_FLA_IMPL = "fused"
# TR_FLA_IMPL="fused"'s launch config (fla's configs: BK in {32, 64} x num_warps in {1, 2, 4}, 3 stages). From fla's
# own autotune at the timing shape on an H100 (bf16 A, T=2048, 32768 tokens, H=16, K=64): BK=64 / 1 warp 0.170 ms,
# BK=32 / 1 warp 0.184, 2 warps 0.31, 4 warps 0.60-0.76.
TR_FUSED_BK = 64
TR_FUSED_WARPS = 1


def _tr_fla_impl() -> str:
    if TR_FLA_IMPL not in ("unfused", "fused"):
        raise ValueError(f"TR_FLA_IMPL must be 'unfused' or 'fused', got {TR_FLA_IMPL!r}")
    return TR_FLA_IMPL


# FWD_IMPL: how chunk_prism_fwd runs at L = 1 (at L >= 2 always "own").
#   "fla_gdn" (default since version 6): at L = 1 PRISM is the gated delta rule with v := delta_1 = GELU(p_1 (v - u))
#           (SPEC section 1), so the forward is prism_delta1_kernel then fla's own GDN forward
#           (`chunk_gated_delta_rule_fwd`: cumsum, fused kkt + solve + recompute_w_u, state pass, output; w, u, v_new
#           and states in the input dtype). No states are kept: the backward recomputes them with our fp32 prep and
#           state pass (chunk_prism_bwd with hs=None). Chunk 64 and 16-bit inputs only (else "own"); under the Triton
#           interpreter fla's autotuned kernels do not run and a torch stand-in (`_torch_gdn_fwd`) takes their place,
#           as for TR_SOLVER="fla". H100 (release check, commit 8ec3996, results/kernels/prism-triton-v6-release-
#           check-h100.json): T=2048, 32768 tokens, H=16, K=V=64, bf16: forward 0.657 ms against "own"'s 1.353
#           (predicted ~0.66), the backward that recomputes the states 3.360 against 2.889 given them, so L=1
#           fwd+bwd 4.02 against 4.24 ms; errors against float64 at T 64..16384: o 2.8-3.8e-3 (own: 1.8-2.0e-3),
#           final state 3.1-3.5e-3, every gradient unchanged (<= 2.6e-3).
#   "fla_parts" (default since version 8): the same forward without the delta_1 pass: fla's chunk-local cumsum, fla's
#           fused kkt + solve kernel writing Tr in the inputs' dtype into an unfilled buffer, prism_wu1_kernel (fla's
#           recompute_w_u step with delta_1 = GELU(p_1 (v - u)) built in-kernel and Tr read under its lower mask),
#           then fla's state pass (chunk_gated_delta_rule_fwd_h) and output (chunk_fwd_o). Against "fla_gdn" it drops
#           the delta_1 pass (268 MB at the perf shape, ~90 us) and Tr's zero fill (~20 us) for 134 MB more read in the
#           w/u step (~45 us); delta_1 beta is rounded to 16 bits once instead of twice. Same applicability and the
#           same backward (states recomputed). Interpreter: torch stand-ins for fla's kernels (`_torch_gdn_h_o`).
#   "own" (version 5 and before): our prep, state pass and output kernels; the chunk states are stored (fp32) for
#           the backward.
FWD_IMPL = "fla_parts"


# KEEP_PREP: whether the autograd forward keeps its state-free prep (gc, W, Ub, Tr; fp32) for the backward, which
# then skips phase A's recompute (Tr, W, Ub) and runs only the dVloc kernel. Applies where our forward runs (L >= 2,
# or FWD_IMPL="own"; "fla_gdn" has no prep to keep) and only when an input needs a gradient. It keeps
# (2 K + BT) x 4 bytes per token and head (64 + 64 + 64 fp32 at K = 64, chunk 64: 768 B, against the inputs' 1,152 B
# in bf16 at L = 3 and the states' 256 B) from the forward to the backward; the backward allocated the same
# buffers itself, so one layer's forward+backward peak does not grow. Values are identical (the same kernels on the
# same inputs). Version 6 (sixth session): True.
KEEP_PREP = True


def _fwd_impl(fwd_impl, L, BT, dtype) -> str:
    """The forward implementation chunk_prism_fwd runs: fwd_impl if given, else FWD_IMPL; "fla_gdn" / "fla_parts" only
    where they apply (L = 1, chunk 64, bf16/fp16 inputs), else "own"."""
    s = FWD_IMPL if fwd_impl is None else fwd_impl
    if s not in ("own", "fla_gdn", "fla_parts"):
        raise ValueError(f"FWD_IMPL / fwd_impl must be 'own', 'fla_gdn' or 'fla_parts', got {s!r}")
    if s != "own" and (L != 1 or BT != 64 or dtype not in (torch.bfloat16, torch.float16)):
        return "own"
    return s


def _torch_gdn_fwd(q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size):
    """Stand-in for fla's chunk_gated_delta_rule_fwd under the interpreter (its kernels are autotuned and do not
    run there): our chunked PyTorch gated delta rule in float32, o in v's dtype. Returns (o, final state fp32)."""
    from prismbench.kernels.prism.naive import chunk_gated_delta_rule_torch

    o, ht = chunk_gated_delta_rule_torch(q.float(), k.float(), v.float(), g.float(), beta.float(), scale,
                                         None if initial_state is None else initial_state.float(),
                                         output_final_state, chunk_size)
    return o.to(v.dtype), ht


def _fla_gdn_fwd(q, k1, d1, g, beta1, scale, initial_state, output_final_state, BT):
    """fla's GDN forward on (q, k1, delta_1, g, beta1): (o [B,T,H,V] in d1's dtype, final state fp32 or None)."""
    if INTERPRET:
        return _torch_gdn_fwd(q, k1, d1, g, beta1, scale, initial_state, output_final_state, BT)
    from fla.ops.gated_delta_rule.chunk import chunk_gated_delta_rule_fwd

    h0 = None if initial_state is None else initial_state.float()
    _, o, _, ht, _, _ = chunk_gated_delta_rule_fwd(q=q, k=k1, v=d1, g=g, beta=beta1, scale=scale, initial_state=h0,
                                                   output_final_state=output_final_state, chunk_size=BT)
    return o, ht


def prism_delta1(v, u, p1):
    """delta_1 = GELU(p_1 (v - u)) [B,T,H,V] in v's dtype (prism_delta1_kernel)."""
    d = torch.empty_like(v)
    n, BLOCK = v.numel(), 1024
    prism_delta1_kernel[(triton.cdiv(n, BLOCK),)](v, u, p1, d, n, BLOCK=BLOCK, num_warps=4)
    return d


def prism_wu1(k1, v, u, p1, beta1, g2, a):
    """(W, U) [B,T,H,K], [B,T,H,V] in k1's dtype from prism_wu1_kernel (FWD_IMPL="fla_parts")."""
    B, T, H, K = k1.shape
    V, BT = v.shape[-1], a.shape[-1]
    w, un = torch.empty_like(k1), torch.empty_like(v)
    prism_wu1_kernel[(triton.cdiv(T, BT), B * H)](
        k1, v, u, p1, beta1, g2, a, w, un, T, H, K=K, V=V, BT=BT, BK=min(64, _block(K)), BV=min(64, _block(V)),
        RAW=_raw_ok(k1.dtype), num_warps=_launch_warps("wu1", _block(K), _block(V)), num_stages=WU1_STAGES,
    )
    return w, un


# prism_wu1_kernel's pipeline stages (fla autotunes its recompute_w_u over 2-4 stages and 2-8 warps). H100, T=2048,
# 32768 tokens, H=16, K=V=64 (results/kernels/prism-l1-parts-h100.json), ms at stages 2 / 3 / 4: 2 warps 0.384, 4 warps
# 0.168, 8 warps 0.163 at every stage count; outputs identical. 8 warps (MEASURED_WARPS), 2 stages.
WU1_STAGES = 2


def _torch_gdn_h_o(q, k, w, un, g2, scale, initial_state, output_final_state, BT):
    """Stand-in for fla's chunk_gated_delta_rule_fwd_h + chunk_fwd_o (interpreter only), fp32: per chunk
    V1 = U - W h, O = diag(2^g2) Qs h + (M<= . 2^(g2_t - g2_i) Qs K^T) V1, h' = 2^g2_C h + (diag(2^(g2_C - g2)) K)^T V1,
    g2 the chunk-local log2 cumsum. Returns (o [B,T,H,V] in un's dtype, final state fp32 or None)."""
    B, T, H, K = k.shape
    V = un.shape[-1]
    h = torch.zeros(B, H, K, V, device=k.device) if initial_state is None else initial_state.float().clone()
    o = torch.empty(B, T, H, V, device=k.device, dtype=torch.float32)
    for s in range(0, T, BT):
        e = min(T, s + BT)
        qc, kc, wc, uc = (x[:, s:e].float().transpose(1, 2) for x in (q, k, w, un))   # [B, H, C, .]
        gc = g2[:, s:e].float().transpose(1, 2)                                        # [B, H, C]
        v1 = uc - wc @ h
        m = torch.tril(torch.ones(e - s, e - s, dtype=torch.bool, device=k.device))
        gm = torch.where(m, torch.exp2(torch.where(m, gc[..., :, None] - gc[..., None, :], 0.)), 0.)
        o[:, s:e] = ((torch.exp2(gc)[..., None] * (qc @ h) + (gm * (qc @ kc.transpose(-1, -2))) @ v1) * scale
                     ).transpose(1, 2)
        gl = gc[..., -1:]
        h = torch.exp2(gl)[..., None] * h + (kc * torch.exp2(gl - gc)[..., None]).transpose(-1, -2) @ v1
    return o.to(un.dtype), (h if output_final_state else None)


def _fla_parts_fwd(q, k1, v, u, p1, g, beta1, scale, initial_state, output_final_state, BT):
    """FWD_IMPL="fla_parts": fla's GDN forward kernels (chunk-local cumsum, fused kkt + solve, state pass, output)
    around prism_wu1_kernel, which builds delta_1 from (v, u, p_1) in place of fla's recompute_w_u. Tr's buffer is
    left unfilled (prism_wu1_kernel masks it; nothing else reads it). Returns (o, final state fp32 or None)."""
    cumsum, kkt, solve, rcp_ln2 = _fla_tr_ops()
    B, T, H, K = k1.shape
    g2 = cumsum(g, chunk_size=BT, scale=rcp_ln2, output_dtype=torch.float32)
    if INTERPRET:
        a = solve(kkt(k=k1, g=g2, beta=beta1, chunk_size=BT, output_dtype=torch.float32), output_dtype=k1.dtype)
    else:
        a = torch.empty(B, T, H, BT, device=k1.device, dtype=k1.dtype)
        _fla_kkt_solve_launch(k1, g2, beta1, a, BT)
    w, un = prism_wu1(k1, v, u, p1, beta1, g2, a)
    h0 = None if initial_state is None else initial_state.float()
    if INTERPRET:
        return _torch_gdn_h_o(q, k1, w, un, g2, scale, h0, output_final_state, BT)
    from fla.ops.common.chunk_delta_h import chunk_gated_delta_rule_fwd_h
    from fla.ops.common.chunk_o import chunk_fwd_o

    h, v1, ht = chunk_gated_delta_rule_fwd_h(k=k1, w=w, u=un, g=g2, initial_state=h0,
                                             output_final_state=output_final_state, chunk_size=BT)
    o = chunk_fwd_o(q=q, k=k1, v=v1, h=h, g=g2, scale=scale, chunk_size=BT)
    return o, ht


def _fla_fused_kkt_solve(k1, g2, beta1, BT, dtype=torch.float32):
    """Tr [B, T, H, BT] (fp32, or dtype: FWD_16 "tr") from fla's fused kkt + solve kernel (TR_FLA_IMPL="fused"); g2
    is the chunk-local cumsum of g in log2 units, as for the unfused path."""
    B, T, H, K = k1.shape
    # the kernel writes the blocks on and below the diagonal only; every reader loads Tr through `_tr_load`, which
    # zeroes the rest, so the buffer is not zero-filled (version 8: 134 MB of writes at the perf shape)
    tr = torch.empty(B, T, H, BT, device=k1.device, dtype=dtype)
    _fla_kkt_solve_launch(k1, g2, beta1, tr, BT)
    return tr


def _fla_kkt_solve_launch(k1, g2, beta1, tr, BT):
    """fla's fused kkt + solve kernel into tr [B, T, H, BT] (its blocks on and below the diagonal; the kernel casts
    its fp32 result to tr's dtype) with TR_FUSED_BK / TR_FUSED_WARPS."""
    B, T, H, K = k1.shape
    from fla.ops.gated_delta_rule.chunk_fwd import chunk_gated_delta_rule_fwd_kkt_solve_kernel

    # the jit function under fla's heuristics and autotuner, with a fixed config: fla's autotune key (H, HV, K, BC)
    # leaves T out, so the first call's shape picks the config for every T; tuned at T=64 it chose 4 warps, 3.9x
    # slower at T=2048 than 1 warp (H100, 2026-12-06: NOTES.md "Version 4 on an H100")
    jit = chunk_gated_delta_rule_fwd_kkt_solve_kernel.fn.fn
    jit[(triton.cdiv(T, BT), B * H)](
        k=k1, g=g2, beta=beta1, A=tr, cu_seqlens=None, chunk_indices=None,
        T=T, H=H, HV=H, K=K, BT=BT, BC=16, BK=min(TR_FUSED_BK, _block(K)), USE_G=True, IS_VARLEN=False,
        num_warps=WARPS.get("tr_fused", TR_FUSED_WARPS), num_stages=3,
    )


def _tr_solver(tr_solver, dtype):
    """The Tr source prism_fwd_prep uses: tr_solver if given, else TR_SOLVER ("fla" falls back to "own" for
    float32 inputs on a GPU, see TR_SOLVER)."""
    s = TR_SOLVER if tr_solver is None else tr_solver
    if s not in ("own", "fla"):
        raise ValueError(f"TR_SOLVER / tr_solver must be 'own' or 'fla', got {s!r}")
    if s == "fla" and tr_solver is None and not INTERPRET and dtype not in (torch.bfloat16, torch.float16):
        return "own"
    return s


def _prep_impl(prep_impl):
    """The prep implementation: prep_impl if given, else PREP_IMPL; "fused" or "split"."""
    s = PREP_IMPL if prep_impl is None else prep_impl
    if s not in ("fused", "split"):
        raise ValueError(f"PREP_IMPL / prep_impl must be 'fused' or 'split', got {s!r}")
    return s


def prism_fwd_prep(k, v, u, p, beta, g, BT, q=None, do=None, scale=1.0, store_sw=True, split_solve=None,
                   tr_solver=None, prep_impl=None, dd=None):
    """Phase (i)/(A) launcher. Returns gc [B,T,H] fp32, W [B,T,H,K], Ub [B,T,H,V], Sw [B,N,H,K,V] fp32 or None,
    Tr [B,T,H,BT] fp32, dVloc [B,T,H,V] fp32 or None (when q and do are given).
    tr_solver: "own" or "fla" (default: the module's TR_SOLVER); prep_impl: "fused" or "split" (default:
    PREP_IMPL; "split" ignores split_solve: its Tr always comes from a kernel of its own).
    dd: a bf16 [L-1,B,T,H,V] buffer ("split" only) that receives the extra keys' D_l (FWD_STASH_D)."""
    if _prep_impl(prep_impl) == "split":
        return _prism_fwd_prep_split(k, v, u, p, beta, g, BT, q, do, scale, store_sw, tr_solver, dd=dd)
    if dd is not None:
        raise ValueError("prism_fwd_prep: dd (the D_l stash) needs prep_impl='split'")
    if _tr_solver(tr_solver, k.dtype) == "fla":
        return _prism_fwd_prep_fla(k, v, u, p, beta, g, BT, q, do, scale, store_sw)
    L, B, T, H, K = k.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, BT)
    BK, BV = _block(K), _block(V)
    dev = k.device
    gc = torch.empty(B, T, H, device=dev, dtype=torch.float32)
    w = torch.empty(B, T, H, K, device=dev, dtype=torch.float32)
    ub = torch.empty(B, T, H, V, device=dev, dtype=torch.float32)
    sw = torch.empty(B, NT, H, K, V, device=dev, dtype=torch.float32) if store_sw else None
    tr = torch.empty(B, T, H, BT, device=dev, dtype=torch.float32)   # solve workspace, holds Tr on return
    dvloc = torch.empty(B, T, H, V, device=dev, dtype=torch.float32) if do is not None else None
    split = SPLIT_SOLVE if split_solve is None else split_solve
    if split:
        prism_fwd_solve_kernel[(NT, B * H)](
            k, beta, g, tr, T, H, K=K, BT=BT, BK=BK, PREC=_prec(k.dtype), RAW=_raw_ok(k.dtype),
            num_warps=WARPS.get("solve", 4),
        )
    prism_fwd_prep_kernel[(NT, B * H)](
        k, v, u, p, beta, g, q, do, gc, w, ub, sw, tr, dvloc, scale, T,
        B=B, H=H, K=K, V=V, L=L, BT=BT, BK=BK, BV=BV,
        STORE_SW=store_sw, DVLOC=do is not None, PREC=_prec(k.dtype), RAW=_raw_ok(k.dtype), SOLVED=split,
        num_warps=WARPS.get("prep", _warps(BK, BV)),
    )
    return gc, w, ub, sw, tr, dvloc


def _prism_fwd_prep_fla(k, v, u, p, beta, g, BT, q, do, scale, store_sw):
    """prism_fwd_prep with Tr from fla (`_tr_fla`) and the prep kernel reading it (SOLVED=True)."""
    L, B, T, H, K = k.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, BT)
    BK, BV = _block(K), _block(V)
    dev = k.device
    tr = _tr_fla(k[0], beta[0], g, BT)
    gc = torch.empty(B, T, H, device=dev, dtype=torch.float32)
    w = torch.empty(B, T, H, K, device=dev, dtype=torch.float32)
    ub = torch.empty(B, T, H, V, device=dev, dtype=torch.float32)
    sw = torch.empty(B, NT, H, K, V, device=dev, dtype=torch.float32) if store_sw else None
    dvloc = torch.empty(B, T, H, V, device=dev, dtype=torch.float32) if do is not None else None
    prism_fwd_prep_kernel[(NT, B * H)](
        k, v, u, p, beta, g, q, do, gc, w, ub, sw, tr, dvloc, scale, T,
        B=B, H=H, K=K, V=V, L=L, BT=BT, BK=BK, BV=BV,
        STORE_SW=store_sw, DVLOC=do is not None, PREC=_prec(k.dtype), RAW=_raw_ok(k.dtype), SOLVED=True,
        num_warps=WARPS.get("prep_solved", WARPS.get("prep", _warps(BK, BV))),
    )
    return gc, w, ub, sw, tr, dvloc


def _prep_w(prep_w):
    """Where the split prep computes gc and W: prep_w if given, else PREP_W; "fused" or "kernel"."""
    s = PREP_W if prep_w is None else prep_w
    if s not in ("fused", "kernel"):
        raise ValueError(f"PREP_W / prep_w must be 'fused' or 'kernel', got {s!r}")
    return s


def _prism_fwd_prep_split(k, v, u, p, beta, g, BT, q, do, scale, store_sw, tr_solver, prep_w=None, dd=None):
    """prism_fwd_prep as small kernels (PREP_IMPL="split"): Tr (prism_fwd_solve_kernel, or `_tr_fla` when the
    Tr source is "fla"), prism_prep_w_kernel (gc, W), prism_prep_u_kernel (Ub, Sw; V in PREP_BV-wide column
    blocks) and, when do is given, prism_prep_dvloc_kernel (dVloc). Same outputs as the fused kernel."""
    L, B, T, H, K = k.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, BT)
    BK = _block(K)
    BV = _prep_bv(V)
    dev = k.device
    prec, raw = _prec(k.dtype), _raw_ok(k.dtype)
    if _tr_solver(tr_solver, k.dtype) == "fla":
        tr = _tr_fla(k[0], beta[0], g, BT)
    else:
        tr = torch.empty(B, T, H, BT, device=dev, dtype=torch.float32)
        prism_fwd_solve_kernel[(NT, B * H)](
            k, beta, g, tr, T, H, K=K, BT=BT, BK=BK, PREC=prec, RAW=raw,
            num_warps=WARPS.get("split_solve", _warps(16, 16, BT)),
        )
    gc = torch.empty(B, T, H, device=dev, dtype=torch.float32)
    w = torch.empty(B, T, H, K, device=dev, dtype=_fwd16("w", k.dtype))
    fuse_w = _prep_w(prep_w) == "fused"
    if not fuse_w:
        prism_prep_w_kernel[(NT, B * H)](
            k, beta, g, tr, gc, w, T, H, K=K, BT=BT, BK=BK, PREC=prec,
            num_warps=WARPS.get("prep_w", _warps(BK, BT, BT)),
        )
    ub = torch.empty(B, T, H, V, device=dev, dtype=torch.float32)
    sw = torch.empty(B, NT, H, K, V, device=dev, dtype=_fwd16("sw", k.dtype)) if store_sw else None
    prism_prep_u_kernel[(triton.cdiv(V, BV), NT, B * H)](
        k, v, u, p, beta, g, tr, ub, sw, gc, w, dd, T, B=B, H=H, K=K, V=V, L=L, BT=BT, BK=BK, BV=BV,
        STORE_SW=store_sw, PREC=prec, RAW=raw, STORE_W=fuse_w, STORE_D=dd is not None, TR_D16=_tr_d16(tr.dtype),
        D16=_d16("prep_u", k.dtype),
        num_warps=_launch_warps("prep_u", BK, BV, BT),
        **_cap("prep_u", BK, BV), **_stages("prep_u"),
    )
    dvloc = prism_prep_dvloc(q, k, g, do, scale, BT) if do is not None else None
    return gc, w, ub, sw, tr, dvloc


def prism_prep_dvloc(q, k, g, do, scale, BT):
    """dVloc = P_1^T dO [B,T,H,V] fp32 (prism_prep_dvloc_kernel, V in PREP_BV-wide column blocks): the backward's
    part of the prep that needs dO (the split prep's fourth kernel; alone when the forward kept the prep)."""
    L, B, T, H, K = k.shape
    V = do.shape[-1]
    BK = _block(K)
    BV = _prep_bv(V)
    dvloc = torch.empty(B, T, H, V, device=k.device, dtype=torch.float32)
    prism_prep_dvloc_kernel[(triton.cdiv(V, BV), triton.cdiv(T, BT), B * H)](
        q, k, g, do, dvloc, scale, T, H, K=K, V=V, BT=BT, BK=BK, BV=BV, PREC=_prec(k.dtype), RAW=_raw_ok(k.dtype),
        num_warps=_launch_warps("prep_dvloc", BK, BV, BT),
    )
    return dvloc


def prism_fwd_h(k, w, ub, sw, gc, BT, initial_state=None, output_final_state=False, dd=None):
    """Phase (ii) launcher. Returns hs [B,N,H,K,V] (fp32; bf16 under FWD_16 "hs"), V1 [B,T,H,V] (fp32; bf16 under
    DOT16 "o"), final state or None. The extra keys' state write from sw, or, where sw is None at L > 1, from the D_l
    stash dd (FWD_SW="h")."""
    L, B, T, H, K = k.shape
    V = ub.shape[-1]
    NT = triton.cdiv(T, BT)
    BK = _block(K)
    BV = _seq_bv(BK, V, SEQ_BV.get("h"), B * H, 32)
    hs = torch.empty(B, NT, H, K, V, device=k.device, dtype=_fwd16("hs", k.dtype))
    # V1 is read by the output kernel alone; with its dots in bf16 (DOT16 "o") it is stored in bf16: the same rounding
    # the kernel's dot would apply, half the bytes (version 9)
    vnew = torch.empty_like(ub, dtype=torch.bfloat16 if _d16("o", k.dtype) else torch.float32)
    ht = torch.empty(B, H, K, V, device=k.device, dtype=torch.float32) if output_final_state else None
    sw_d = sw is None and L > 1
    if sw_d and dd is None:
        raise ValueError("prism_fwd_h: at L > 1 it needs sw (prep_u's state write) or dd (the D_l stash)")
    prism_fwd_h_kernel[(triton.cdiv(V, BV), B * H)](
        k, w, ub, sw, dd if sw_d else None, gc, initial_state, hs, vnew, ht, T,
        B=B, H=H, K=K, V=V, L=L, BT=BT, BK=BK, BV=BV, USE_H0=initial_state is not None, STORE_HT=output_final_state,
        PREC=_prec(k.dtype), D16=_d16("h", k.dtype), SW_D=sw_d, num_warps=_seq_warps("h", BK, BT),
    )
    return hs, vnew, ht


def prism_fwd_o(q, k, v, u, p, beta, gc, hs, vnew, scale, BT, dd=None):
    """Phase (iii) launcher: o [B,T,H,V] in q's dtype. dd: prep_u's bf16 stash of the extra keys' D_l (FWD_STASH_D;
    bf16 inputs, where the kernel's dots are bf16), read instead of recomputing the solver chain."""
    L, B, T, H, K = k.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, BT)
    BK, BV = _block(K), _block(V)
    o = torch.empty(B, T, H, V, device=q.device, dtype=q.dtype)
    prism_fwd_o_kernel[(NT, B * H)](
        q, k, v, u, p, beta, gc, hs, vnew, dd, o, scale, T,
        B=B, H=H, K=K, V=V, L=L, BT=BT, BK=BK, BV=BV, PREC=_prec(k.dtype), RAW=_raw_ok(k.dtype),
        D16=_d16("o", k.dtype), STASH_D=dd is not None, num_warps=_launch_warps("o", BK, BV), **_cap("o", BK, BV),
        **_stages("o"),
    )
    return o


def chunk_prism_fwd(q, k, v, u, p, beta, g, scale, initial_state, output_final_state, BT, fwd_impl=None):
    """Forward: returns o [B,T,H,V], final state [B,H,K,V] fp32 or None, hs [B,N,H,K,V] (FWD_16 "hs": bf16) (None with
    FWD_IMPL / fwd_impl "fla_gdn" or "fla_parts" at L = 1: the backward then recomputes the states)."""
    return chunk_prism_fwd_prep(q, k, v, u, p, beta, g, scale, initial_state, output_final_state, BT, fwd_impl)[:3]


def chunk_prism_fwd_prep(q, k, v, u, p, beta, g, scale, initial_state, output_final_state, BT, fwd_impl=None):
    """chunk_prism_fwd, plus its state-free prep (gc, W, Ub, Tr: what chunk_prism_bwd's phase A recomputes) as a
    fourth return, or None where the forward has none (FWD_IMPL / fwd_impl "fla_gdn" or "fla_parts" at L = 1)."""
    impl = _fwd_impl(fwd_impl, k.shape[0], BT, k.dtype)
    if impl == "fla_gdn":
        o, ht = _fla_gdn_fwd(q, k[0], prism_delta1(v, u, p[0]), g, beta[0], scale, initial_state, output_final_state,
                             BT)
        return o.to(q.dtype), ht, None, None
    if impl == "fla_parts":
        o, ht = _fla_parts_fwd(q, k[0], v, u, p[0], g, beta[0], scale, initial_state, output_final_state, BT)
        return o.to(q.dtype), ht, None, None
    L, B, T, H, K = k.shape
    dd = torch.empty(L - 1, B, T, H, v.shape[-1], device=k.device, dtype=torch.bfloat16) \
        if _fwd_stash_d(L, k.dtype) else None
    sw_h = dd is not None and _fwd_sw(None) == "h"
    gc, w, ub, sw, tr, _ = prism_fwd_prep(k, v, u, p, beta, g, BT, store_sw=not sw_h, dd=dd)
    hs, vnew, ht = prism_fwd_h(k, w, ub, sw, gc, BT, initial_state, output_final_state, dd=dd)
    del sw
    o = prism_fwd_o(q, k, v, u, p, beta, gc, hs, vnew, scale, BT, dd=dd)
    return o, ht, hs, (gc, w, ub, tr)


def prism_bwd_dh(q, k, w, gc, do, dv1, dht, BT, with_dh0, scale, with_dhs16=False, with_dhs32=True):
    """Phase (B) launcher; dv1 [B,T,H,V] fp32 holds dVloc on entry and dV1 on exit.
    Returns dhs [B,N,H,K,V] fp32 (None with with_dhs32=False, which needs with_dhs16) and dh0 [B,H,K,V] fp32 or None;
    with with_dhs16 a third value, dhs rounded to bf16 (stored by the same pass), for the per-key kinds (`_keys_bf16`)
    and, under DH16_WY, the WY erase kernel."""
    L, B, T, H, K = k.shape
    V = dv1.shape[-1]
    NT = triton.cdiv(T, BT)
    BK = _block(K)
    if not (with_dhs32 or with_dhs16):
        raise ValueError("prism_bwd_dh: with_dhs32=False needs with_dhs16 (dH' must be stored once)")
    dhs = torch.empty(B, NT, H, K, V, device=q.device, dtype=torch.float32) if with_dhs32 else None
    dh0 = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32) if with_dh0 else None
    dhs16 = torch.empty(B, NT, H, K, V, device=q.device, dtype=torch.bfloat16) if with_dhs16 else None
    BVs = _seq_bv(BK, V, SEQ_BV.get("dh"), B * H, 64)
    prism_bwd_dh_kernel[(triton.cdiv(V, BVs), B * H)](
        q, k, w, gc, do, dv1, dht, dhs, dh0, dhs16, scale, T,
        H=H, K=K, V=V, BT=BT, BK=BK, BV=BVs, USE_DHT=dht is not None, STORE_DH0=with_dh0,
        PREC=_prec(k.dtype), D16=_d16("dh", k.dtype), STORE16=with_dhs16, STORE32=with_dhs32,
        num_warps=_seq_warps("dh", BK, BT),
    )
    return (dhs, dh0, dhs16) if with_dhs16 else (dhs, dh0)


def _wy_impl(wy_impl):
    """The phase C1 implementation: wy_impl if given, else WY_IMPL; "split2" or "fused"."""
    s = WY_IMPL if wy_impl is None else wy_impl
    if s not in ("fused", "split2"):
        raise ValueError(f"WY_IMPL / wy_impl must be 'fused' or 'split2', got {s!r}")
    return s


def prism_bwd_wy(q, k, beta, gc, hs, dhs, do, dv1, w, ub, tr, scale, BT, wy_impl=None, dkp=None):
    """Phase (C1) launcher: overwrites ub with dY and dkp (default: w, then fp32) with the partial dk1 (fp32,
    chunk-local); a bf16 W (FWD_16 "w") needs an fp32 dkp of its own.
    Returns the partial dq [B,T,H,K], dbeta1 [B,T,H] and dg [B,T,H] (fp32).

    wy_impl (default WY_IMPL): "split2" runs prism_bwd_wy2_cols_kernel (WY_BV-wide column blocks of V),
    prism_bwd_wy2_erase_kernel and prism_bwd_wy2_read_kernel and also overwrites dv1 (with V1 = Ub - W h; with
    WY_V1_16 and the "wy" bf16 dots, V1 goes to a bf16 buffer of its own and dv1 keeps dV1);
    "fused" (version 2) runs prism_bwd_wy_kernel and leaves dv1 as it is."""
    L, B, T, H, K = k.shape
    V = ub.shape[-1]
    NT = triton.cdiv(T, BT)
    BK, BV = _block(K), _block(V)
    dqp = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32)
    dbp = torch.empty(B, T, H, device=q.device, dtype=torch.float32)
    dg = torch.empty(B, T, H, device=q.device, dtype=torch.float32)
    prec, raw = _prec(k.dtype), _raw_ok(k.dtype)
    dkp = w if dkp is None else dkp
    if dkp.dtype != torch.float32:
        raise ValueError(f"prism_bwd_wy: the partial dk1 needs an fp32 buffer, got {dkp.dtype} (pass dkp)")
    if _wy_impl(wy_impl) == "fused":
        if dkp is not w:
            dkp.copy_(w)     # the fused kernel reads W from the buffer it then overwrites with the partial dk1
        prism_bwd_wy_kernel[(NT, B * H)](
            q, k, beta, gc, hs, dhs, do, dv1, dkp, ub, tr, dqp, dbp, dg, scale, T,
            H=H, K=K, V=V, BT=BT, BK=BK, BV=BV, PREC=prec, RAW=raw,
            num_warps=WARPS.get("wy", _warps(BK, BV, BT)),
        )
        return dqp, dbp, dg
    # "split2"
    BVc = min(BV, WY_BV)
    d16 = _d16("wy", k.dtype) if L > 1 else 0    # DOT16 "wy": L > 1 only (dg 5.2e-3 at L=1 in version 9)
    # WY_V1_16: V1 in bf16, read only by bf16 dots ("wy"); else over dV1's buffer
    v1 = torch.empty_like(dv1, dtype=torch.bfloat16) if WY_V1_16 and d16 else dv1
    prism_bwd_wy2_cols_kernel[(triton.cdiv(V, BVc), NT, B * H)](
        tr, hs, w, ub, dv1, v1, T, H=H, K=K, V=V, BT=BT, BK=BK, BV=BVc, PREC=prec, D16=d16,
        num_warps=WARPS.get("wy2_cols", 4),
    )
    w2 = 4 if max(BK, BV, BT) <= 64 else 8
    prism_bwd_wy2_erase_kernel[(NT, B * H)](
        k, beta, gc, hs, dhs, ub, v1, dkp, dbp, dg, T,
        H=H, K=K, V=V, BT=BT, BK=BK, BV=BV, PREC=prec, RAW=raw, D16=d16,
        num_warps=WARPS.get("wy2_erase", w2),
    )
    prism_bwd_wy2_read_kernel[(NT, B * H)](
        q, k, gc, hs, do, v1, dkp, dqp, dg, scale, T,
        H=H, K=K, V=V, BT=BT, BK=BK, BV=BV, PREC=prec, RAW=raw, D16=d16,
        num_warps=WARPS.get("wy2_read", w2),
    )
    return dqp, dbp, dg


def _keys_impl(keys_impl):
    """The phase C2 implementation: keys_impl if given, else KEYS_IMPL; "kinds", "split" or "fused"."""
    s = KEYS_IMPL if keys_impl is None else keys_impl
    if s not in ("fused", "split", "kinds"):
        raise ValueError(f"KEYS_IMPL / keys_impl must be 'kinds', 'split' or 'fused', got {s!r}")
    return s


_KIND_NAMES = ("rows", "columns", "values")   # prism_bwd_key_kernel's KIND 0, 1, 2


def _keys_loop(keys_loop) -> tuple:
    """KEYS_LOOP / keys_loop: a tuple of kinds among "rows", "columns", "values"."""
    s = KEYS_LOOP if keys_loop is None else keys_loop
    if isinstance(s, str) or not set(s) <= set(_KIND_NAMES):
        raise ValueError(f"KEYS_LOOP / keys_loop must be a tuple of kinds among {_KIND_NAMES}, got {s!r}")
    return tuple(s)


def _keys_values_bs(BT: int, values_bs=None, name: str = "KEYS_VALUES_BS"):
    """A row-block size of the key kinds (KEYS_VALUES_BS, or KEYS_COLUMNS_BS given as values_bs with its name): None
    (whole chunks) or BS, a power of two >= 16 below BT."""
    bs = KEYS_VALUES_BS if values_bs is None and name == "KEYS_VALUES_BS" else values_bs
    if bs is None or bs >= BT:
        return None
    if bs < 16 or bs & (bs - 1) or BT % bs:
        raise ValueError(f"{name} must be None or a power of two >= 16 dividing the chunk size {BT}, got {bs!r}")
    return bs


def _keys_values_bv(V: int, values_bv=None):
    """The values launches' column block of V (KEYS_VALUES_BV, or values_bv): None (whole V) or BV, a power of two >=
    16 below V."""
    bv = KEYS_VALUES_BV if values_bv is None else values_bv
    if bv is None or bv >= _block(V):
        return None
    if bv < 16 or bv & (bv - 1):
        raise ValueError(f"KEYS_VALUES_BV must be None or a power of two >= 16, got {bv!r}")
    return bv


def _values_blocks_refusal(values_bs, values_bv, d16, d16_rb):
    """Why a GPU launch of the per-key values kinds in blocks must not run, or None. On an H100 with Triton 3.6 the
    values program in row blocks (KEYS_VALUES_BS) faults whenever its dots are bf16 (sessions 14-15), and in column
    blocks of V (KEYS_VALUES_BV) it computed dv, du, dp and dbeta ~12% wrong or faulted with bf16 dots (session 18);
    both are bit-identical to whole chunks under the interpreter, and both are correct on the H100 with tf32 dots
    (session 15: row blocks with RB_D16 = False; session 19: column blocks with "key" dropped from DOT16). A fault
    poisons the CUDA context for the rest of the process, so the launcher refuses these settings before any launch."""
    if values_bs is not None and d16_rb:
        return ("KEYS_VALUES_BS with bf16 dots in the row-block kernels (RB_D16 = True and 'key' in DOT16) faults "
                "(illegal memory access) on an H100 with Triton 3.6 (kernels/prism/NOTES.md, sessions 14-15); leave it "
                "None, or set RB_D16 = False to run the row blocks with tf32 dots")
    if values_bv is not None and d16:
        return ("KEYS_VALUES_BV with the per-key kinds' bf16 dots (DOT16 'key') computed dv, du, dp and dbeta ~12% wrong "
                "or faulted (illegal memory access) on an H100 with Triton 3.6 (kernels/prism/NOTES.md, session 18); "
                "leave it None, or drop 'key' from DOT16 to run it with tf32 dots")
    return None


def _keys_tail(keys_tail):
    """Where the tail of phase C2 runs at L > 1 ("kinds" or "split"): keys_tail if given, else KEYS_TAIL."""
    s = KEYS_TAIL if keys_tail is None else keys_tail
    if s not in ("fused", "separate"):
        raise ValueError(f"KEYS_TAIL / keys_tail must be 'fused' or 'separate', got {s!r}")
    return s


def _keys_bf16(keys_bf16, impl: str, dtype: torch.dtype) -> tuple:
    """The KEYS_BF16 parts that apply: only with KEYS_IMPL "kinds" (the stash needs the launch order) and bf16 dots in
    the per-key kinds (D16 of "key": the copies are then bit-identical in effect)."""
    parts = KEYS_BF16 if keys_bf16 is None else keys_bf16
    unknown = set(parts) - {"dh", "d"}
    if unknown:
        raise ValueError(f"KEYS_BF16: unknown parts {sorted(unknown)} (known: 'dh', 'd')")
    if impl != "kinds" or _d16("key", dtype) == 0:
        return ()
    return tuple(parts)


def prism_bwd_keys(q, k, v, u, p, beta, gc, dhs, do, dy, dqp, dkp, dbp, dg, scale, BT, dr=None, keys_impl=None,
                   keys_tail=None, dhs16=None, keys_bf16=None, keys_loop=None):
    """Phase (C2) launcher: extra keys and the solver's chain rule; finishes dg in place.
    Returns dq, dk, dv, du, dp, dbeta (input dtypes) and dg [B,T,H] fp32.

    keys_impl (default KEYS_IMPL): "kinds" runs prism_bwd_key_kernel three times per extra key (one launch per
    program kind: rows, columns, values; 4 warps each), "split" once per key (grid (3, N, B*H)); l = L-1 .. 1, each
    adding its terms in place to dqp, dkp (fp32 [B,T,H,K]), dbp and dg (fp32 [B,T,H]), so these partial
    buffers are modified (as dg always was); then the tail: with keys_tail (default KEYS_TAIL) "fused" inside the
    l = 1 launches (LAST), with "separate" (and always at L = 1) prism_bwd_keys_tail_kernel. dr: optional fp32 [B,T,H,V]
    workspace for the solver chain's running dr (L > 1; contents overwritten; chunk_prism_bwd passes the dead
    dV1 buffer), allocated when None. "fused" runs prism_bwd_keys_kernel (version 2: all keys in one kernel).
    keys_bf16 (default KEYS_BF16; "kinds" with DOT16 "key" only, `_keys_bf16`): "dh" has the kinds read dH' from
    dhs16 (bf16, from prism_bwd_dh(with_dhs16=True); converted from dhs here when None), "d" has each key's values
    launch run first and store D_l in bf16 for that key's rows and columns launches. keys_loop (default KEYS_LOOP;
    "kinds" only): the kinds ("rows", "columns", "values") whose programs run for every key in one launch, a loop over
    the keys (prism_bwd_key_rows_kernel / _columns_kernel / _values_kernel; the values loop first, then the per-key
    launches of the other kinds, then the columns and rows loops; with "d", one D_l buffer per key)."""
    L, B, T, H, K = k.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, BT)
    BK, BV = _block(K), _block(V)
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    du = torch.empty_like(u)
    dp = torch.empty_like(p)
    dbeta = torch.empty_like(beta)
    prec, raw = _prec(k.dtype), _raw_ok(k.dtype)
    impl = _keys_impl(keys_impl)
    if impl == "fused":
        prism_bwd_keys_kernel[(NT, B * H)](
            q, k, v, u, p, beta, gc, dhs, do, dy, dqp, dkp, dbp, dg,
            dq, dk, dv, du, dp, dbeta, dg, scale, T,
            B=B, H=H, K=K, V=V, L=L, BT=BT, BK=BK, BV=BV, PREC=prec, RAW=raw,
            num_warps=WARPS.get("keys", _warps(BK, BV, BT)),
        )
        return dq, dk, dv, du, dp, dbeta, dg
    if L > 1:
        if dr is None:
            dr = torch.empty(B, T, H, V, device=q.device, dtype=torch.float32)
        assert dr.shape == (B, T, H, V) and dr.dtype == torch.float32 and dr.is_contiguous()
        assert dqp.dtype == dkp.dtype == dbp.dtype == dg.dtype == torch.float32
        # "kinds": the three program kinds as three launches of their own (the kinds write disjoint buffers, so
        # the order does not matter); "split": one launch, the kind from program_id(0)
        bf16 = _keys_bf16(keys_bf16, impl, k.dtype)
        if "dh" in bf16 and dhs16 is None:
            dhs16 = dhs.to(torch.bfloat16)
        dhk = dhs16 if "dh" in bf16 else dhs
        stash = "d" in bf16
        loops = _keys_loop(keys_loop) if impl == "kinds" else ()
        # D_l's bf16 buffer: one per key when a loop launch reads or writes them all
        dd = torch.empty(L - 1 if loops else 1, B, T, H, V, device=q.device, dtype=torch.bfloat16) \
            if stash else None
        fused_tail = _keys_tail(keys_tail) == "fused"
        d16 = _d16("key", k.dtype)
        common = dict(K=K, V=V, BT=BT, BK=BK, BV=BV, PREC=prec, RAW=raw, D16=d16, STASH_D=stash)
        if "values" in loops:   # first: it stores every D_l and the running dr (or the solver's first step)
            prism_bwd_key_values_kernel[(NT, B * H)](
                q, k, v, u, p, beta, gc, dhk, do, dy, dr, dp, dbeta, dv, du, dd, scale, T, B, H, L,
                LAST=fused_tail, num_warps=WARPS.get("key_values", 8), **_cap("key_values"), **_stages("key_values"),
                **common,
            )
        # with the D_l stash a per-key values launch (kind 2) goes first: it stores D_l for the others
        kinds = (2, 0, 1) if stash else (0, 1, 2)
        kinds = tuple(x for x in kinds if _KIND_NAMES[x] not in loops)
        launches = tuple((1, kind, WARPS.get(f"key_kind{kind}", 4)) for kind in kinds) if impl == "kinds" \
            else ((3, -1, WARPS.get("key", _warps(BK, BV, BT))),)
        values_bs = _keys_values_bs(BT) if impl == "kinds" else None
        values_bv = _keys_values_bv(V) if impl == "kinds" and values_bs is None else None
        d16_rb = d16 if RB_D16 else 0      # the row-block kernels' dots (RB_D16)
        refusal = None if INTERPRET else _values_blocks_refusal(values_bs, values_bv, d16, d16_rb)
        if refusal:
            raise RuntimeError(refusal)
        dbv = torch.empty(triton.cdiv(V, values_bv), B, T, H, device=q.device, dtype=torch.float32) \
            if values_bv else None
        for l in range(L - 1, 0, -1):
            for n_prog, kind, warps in launches:
                if kind == 2 and values_bs is not None:
                    prism_bwd_key_values_rb_kernel[(BT // values_bs, NT, B * H)](
                        q, k, v, u, p, beta, gc, dhk, do, dy, dr, dp, dbeta, dv, du,
                        dd[l - 1 if loops else 0] if stash else None, scale, T, B, H, l, BS=values_bs,
                        FIRST=l == L - 1, LAST=fused_tail and l == 1, TRL=RB_LOADS == "trans",
                        num_warps=WARPS.get("key_values_rb", 4),
                        **_cap("key_values_rb"), **_stages("key_values_rb"), **dict(common, D16=d16_rb),
                    )
                    continue
                nv = triton.cdiv(V, values_bv) if kind == 2 and values_bv else 1
                prism_bwd_key_kernel[(n_prog * nv, NT, B * H)](
                    q, k, v, u, p, beta, gc, dhk, do, dy, dqp, dkp, dbp, dg, dr,
                    dk, dp, dbeta, dq, dv, du, dd[l - 1 if loops else 0] if stash else None,
                    dbv if nv > 1 else None, scale, T, B, H, l,
                    K=K, V=V, BT=BT, BK=BK, BV=values_bv if nv > 1 else BV, FIRST=l == L - 1, PREC=prec, RAW=raw,
                    KIND=kind, LAST=fused_tail and l == 1, D16=d16, STASH_D=stash, NV=nv, num_warps=warps,
                    **_cap("key_values_bv" if nv > 1 else f"key_kind{kind}"),
                )
                if nv > 1:      # dbeta_l: the column blocks' parts added in a fixed order
                    dbeta[l].copy_(dbv.sum(0))
        columns_bs = _keys_values_bs(BT, KEYS_COLUMNS_BS, "KEYS_COLUMNS_BS") if stash else None
        if "columns" in loops and columns_bs is not None:
            prism_bwd_key_columns_rb_kernel[(BT // columns_bs, NT, B * H)](
                q, k, beta, gc, dhk, do, dy, dk, dd, scale, T, B, H, L, K=K, V=V, BT=BT, BS=columns_bs, BK=BK, BV=BV,
                PREC=prec, RAW=raw, D16=d16_rb, TRL=RB_LOADS == "trans",
                num_warps=WARPS.get("key_columns_rb", 4),
                **_cap("key_columns_rb"),
                **_stages("key_columns_rb"),
            )
        elif "columns" in loops:
            prism_bwd_key_columns_kernel[(NT, B * H)](
                q, k, v, u, p, beta, gc, dhk, do, dy, dk, dd, scale, T, B, H, L,
                num_warps=WARPS.get("key_columns", 4), **_cap("key_columns"), **_stages("key_columns"), **common,
            )
        if "rows" in loops:
            for rows_pass in ((1, 2) if KEYS_ROWS_SPLIT else (0,)):
                prism_bwd_key_rows_kernel[(NT, B * H)](
                    q, k, v, u, p, beta, gc, dhk, do, dy, dqp, dkp, dbp, dg, dq, dk, dbeta, dd, scale, T, B, H, L,
                    LAST=fused_tail, PASS=rows_pass, num_warps=WARPS.get("key_rows", 4), **_cap("key_rows"),
                    **_stages("key_rows"), **common,
                )
        if fused_tail:
            # dg was finished in place by the rows launches (dg is the partial buffer)
            return dq, dk, dv, du, dp, dbeta, dg
    prism_bwd_keys_tail_kernel[(NT, B * H)](
        q, v, u, p, beta, dy, dqp, dkp, dbp, dg, dr,
        dq, dk, dv, du, dp, dbeta, dg, scale, T,
        H=H, K=K, V=V, BT=BT, BK=BK, BV=BV, HAS_DR=L > 1,
        num_warps=WARPS.get("keys", _warps(BK, BV, BT)),
    )
    return dq, dk, dv, du, dp, dbeta, dg


def chunk_prism_bwd(q, k, v, u, p, beta, g, scale, initial_state, hs, do, dht, BT, prep=None):
    """Backward: returns dq, dk, dv, du, dp, dbeta, dg (fp32), dh0 (fp32 or None). hs None (a forward that kept
    no states, FWD_IMPL="fla_gdn"): the chunk states are recomputed here (Sw and prism_fwd_h, fp32). prep: the
    forward's (gc, W, Ub, Tr) (chunk_prism_fwd_prep), used instead of recomputing them (with hs only); its W and Ub
    are overwritten (phase C1), so a prep serves one backward."""
    if prep is not None and hs is not None:
        # phase A from the forward's prep: only dVloc, which needs dO
        gc, w, ub, tr = prep
        dv1 = prism_prep_dvloc(q, k, g, do, scale, BT)
    else:
        # phase A: state-free recompute (Tr, W, Ub) and dVloc
        gc, w, ub, sw, tr, dv1 = prism_fwd_prep(k, v, u, p, beta, g, BT, q=q, do=do, scale=scale,
                                                store_sw=hs is None)
        if hs is None:
            hs, _, _ = prism_fwd_h(k, w, ub, sw, gc, BT, initial_state, False)
            del sw
    # phase B: reverse pass over chunks (dv1 becomes dV1 in place)
    copy16 = "dh" in _keys_bf16(None, _keys_impl(None), k.dtype) and k.shape[0] > 1
    # DH16_WY: the WY erase kernel reads the bf16 copy too, so the fp32 dH' is not stored (split2 WY only)
    dh16_wy = copy16 and DH16_WY and _wy_impl(None) == "split2"
    dhs, dh0, *dhs16 = prism_bwd_dh(q, k, w, gc, do, dv1, dht, BT, initial_state is not None, scale, copy16,
                                    with_dhs32=not dh16_wy)
    # phase C1: WY part and first key; dY overwrites Ub, the partial dk1 overwrites W (chunk-local reuse; a bf16 W,
    # FWD_16 "w", gets an fp32 buffer instead)
    dkp = w if w.dtype == torch.float32 else torch.empty_like(w, dtype=torch.float32)
    dqp, dbp, dg = prism_bwd_wy(q, k, beta, gc, hs, dhs16[0] if dh16_wy else dhs, do, dv1, w, ub, tr, scale, BT,
                                dkp=dkp)
    del w
    # phase C2: extra keys and the solver's chain rule
    # (dV1 is dead after C1: its buffer holds the solver chain's running dr of the split keys phase)
    dq, dk, dv, du, dp, dbeta, dg = prism_bwd_keys(q, k, v, u, p, beta, gc, dhs, do, ub, dqp, dkp, dbp, dg, scale, BT,
                                                   dr=dv1, dhs16=dhs16[0] if dhs16 else None)
    return dq, dk, dv, du, dp, dbeta, dg, dh0


class PrismChunkFunction(torch.autograd.Function):
    """Autograd wrapper: saves the inputs and the chunk-start states h_c (fp32; None with FWD_IMPL="fla_gdn" at
    L = 1, then the backward recomputes them) and, with KEEP_PREP, the forward's prep (gc, W, Ub, Tr); the backward
    recomputes what was not kept (phase A) and runs phases B and C."""

    @staticmethod
    def forward(ctx, q, k, v, u, p, beta, g, scale, initial_state, output_final_state, chunk_size):
        o, ht, hs, prep = chunk_prism_fwd_prep(q, k, v, u, p, beta, g, scale, initial_state, output_final_state,
                                               chunk_size)
        ctx.save_for_backward(q, k, v, u, p, beta, g, initial_state, hs)
        ctx.scale, ctx.chunk_size = scale, chunk_size
        # a plain attribute, not saved_tensors: the backward consumes it (overwrites W and Ub), so a second
        # backward through the same graph (retain_graph) finds None and recomputes
        ctx.prep = prep if KEEP_PREP and any(ctx.needs_input_grad) else None
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, u, p, beta, g, initial_state, hs = ctx.saved_tensors
        prep, ctx.prep = ctx.prep, None
        dq, dk, dv, du, dp, dbeta, dg, dh0 = chunk_prism_bwd(
            q, k, v, u, p, beta, g, ctx.scale, initial_state, hs, do.contiguous(),
            dht.contiguous() if dht is not None else None, ctx.chunk_size, prep=prep)
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
        chunk_size: tokens per chunk: 16, 32 or 64 (default 64).

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
    if chunk_size not in (16, 32, 64):
        raise ValueError(f"chunk_size must be 16, 32 or 64 (the blocked solve), got chunk_size={chunk_size}")
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
                                    bool(output_final_state), _chunk(K, V, int(chunk_size)))
