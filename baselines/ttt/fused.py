"""Fused per-token TTT-Linear (exact variant, mini-batch 1) in Triton: `ttt_linear_fused`.

Computes exactly `naive.ttt_linear_loop` (the math, the LN eps and the read-out are defined there).
One program per (batch, head) keeps the inner model W [d, d] and b [d] in fp32 registers and walks
the tokens in order; nothing of size d x d touches HBM per token.

Forward, token t (state W_{t-1}, b_{t-1} on chip):
    z = k W + b -> zh, rs -> g = rs P(gamma * (gamma zh + beta - (v - k)))
    W -= eta k^T g;  b -= eta g;  o = q + LN(q W + b)
  and, when a backward will follow, it saves per token zh_t [d] and rs_t (fp32) and, every C
  tokens, the state after the segment (W, b): `ckpt_W [B, H, NC, d, d]`, `ckpt_b [B, H, NC, d]`.

Backward (shared/reference/ttt_bwd.md, with one change): segments last to first; at the start of
a segment the state after it is reloaded from its checkpoint, then tokens are reversed one by one,
undoing each update (W_{t-1} = W_t + eta k^T g) with g rebuilt from the saved zh_t, rs_t. Storing
zh_t, rs_t (4(d+1) bytes per token and head, as much as an fp32 copy of q) instead of recomputing
each segment's forward removes the 4d^2 recompute; the checkpoints bound the undo drift to C tokens.
The Hessian-vector product of the LN loss is closed form (`naive.ln_loss_hvp`, 27d FLOPs).
Per token and head: fwd 6d^2 + O(d) FLOPs, bwd 14d^2 + O(d) (7 passes over W or dW).

Example::

    >>> import torch; from prismbench.baselines.ttt.naive import make_ttt_inputs
    >>> x = make_ttt_inputs(B=2, T=64, H=4, D=64, device="cuda", requires_grad=True)
    >>> o = ttt_linear_fused(**x)          # [2, 64, 4, 64]
    >>> o.sum().backward()
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from prismbench.triton_support import interpreting, patch_interpreter

from .naive import EPS_EXACT, check_ttt_inputs

# Without CUDA the kernels run only in Triton's interpreter: set TRITON_INTERPRET=1 before Python
# imports Triton (prismbench/triton_support.py; tests/conftest.py does it on the CPU).
patch_interpreter()

#: default checkpoint interval C (tokens between saved states in the forward)
CHECKPOINT_EVERY = 64
MAX_D = 128
#: load token t+-1's inputs while token t computes (both settings are checked by scripts/gpu/ttt_check.py)
PREFETCH = True

__all__ = ["ttt_linear_fused", "ttt_linear_fused_fwd", "ttt_linear_fused_bwd", "TTTLinearFusedFunction",
           "CHECKPOINT_EVERY"]


# The segment count NC bounds a loop, so it is a constexpr: Triton 3.6's interpreter with NumPy 2
# cannot use a runtime scalar as a loop bound (`int()` of a 1-element array). Compiled, this costs
# one compile per distinct ceil(T / C); the autotuned num_warps is chosen at the first call per key.


def _configs():
    if interpreting():
        return [triton.Config({}, num_warps=4)]
    return [triton.Config({}, num_warps=w) for w in (1, 2, 4, 8)]


# %% Forward

@triton.autotune(configs=_configs(), key=["BD", "SAVE", "PREFETCH"])
@triton.jit(do_not_specialize=["T"])
def ttt_linear_fwd_kernel(
    q, k, v, eta, gamma, beta, W0, b0,            # inputs
    o, WT, bT, ckpt_W, ckpt_b, zh_buf, rs_buf,    # outputs
    T, eps,
    NC: tl.constexpr, H: tl.constexpr, D: tl.constexpr, BD: tl.constexpr, C: tl.constexpr,
    SAVE: tl.constexpr, PREFETCH: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    o_d = tl.arange(0, BD)
    m_d = o_d < D
    m_dd = m_d[:, None] & m_d[None, :]
    # inner model, fp32 on chip: padded rows/columns stay exactly 0
    b_W = tl.load(W0 + i_h * D * D + o_d[:, None] * D + o_d[None, :], mask=m_dd, other=0.).to(tl.float32)
    b_b = tl.load(b0 + i_h * D + o_d, mask=m_d, other=0.).to(tl.float32)
    b_gamma = tl.load(gamma + i_h * D + o_d, mask=m_d, other=0.).to(tl.float32)
    b_beta = tl.load(beta + i_h * D + o_d, mask=m_d, other=0.).to(tl.float32)

    # PREFETCH: token t+1's inputs are loaded while token t computes (the loop is latency-bound and a
    # load issued at the top of an iteration is otherwise waited on by that same iteration)
    o_x0 = (i_b * T * H + i_h) * D
    b_k_n = tl.load(k + o_x0 + o_d, mask=m_d & (T > 0), other=0.).to(tl.float32)
    b_v_n = tl.load(v + o_x0 + o_d, mask=m_d & (T > 0), other=0.).to(tl.float32)
    b_q_n = tl.load(q + o_x0 + o_d, mask=m_d & (T > 0), other=0.).to(tl.float32)
    b_eta_n = tl.load(eta + i_b * T * H + i_h, mask=T > 0, other=0.).to(tl.float32)
    for i_s in range(NC):
        for j in range(C):
            t = i_s * C + j
            if t < T:
                o_x = ((i_b * T + t) * H + i_h) * D
                if PREFETCH:
                    b_k, b_v, b_q, b_eta = b_k_n, b_v_n, b_q_n, b_eta_n
                    m_n = t + 1 < T
                    b_k_n = tl.load(k + o_x + H * D + o_d, mask=m_d & m_n, other=0.).to(tl.float32)
                    b_v_n = tl.load(v + o_x + H * D + o_d, mask=m_d & m_n, other=0.).to(tl.float32)
                    b_q_n = tl.load(q + o_x + H * D + o_d, mask=m_d & m_n, other=0.).to(tl.float32)
                    b_eta_n = tl.load(eta + (i_b * T + t + 1) * H + i_h, mask=m_n, other=0.).to(tl.float32)
                else:
                    b_k = tl.load(k + o_x + o_d, mask=m_d, other=0.).to(tl.float32)
                    b_v = tl.load(v + o_x + o_d, mask=m_d, other=0.).to(tl.float32)
                    b_q = tl.load(q + o_x + o_d, mask=m_d, other=0.).to(tl.float32)
                    b_eta = tl.load(eta + (i_b * T + t) * H + i_h).to(tl.float32)
                # inner loss gradient at the current state
                b_z = tl.sum(b_k[:, None] * b_W, axis=0) + b_b
                b_c = tl.where(m_d, b_z - tl.sum(b_z, axis=0) / D, 0.)
                b_rs = 1. / tl.sqrt(tl.sum(b_c * b_c, axis=0) / D + eps)
                b_zh = b_c * b_rs
                b_e = b_gamma * (b_gamma * b_zh + b_beta - (b_v - b_k))
                b_g = b_rs * (b_e - tl.sum(b_e, axis=0) / D - b_zh * (tl.sum(b_e * b_zh, axis=0) / D))
                b_g = tl.where(m_d, b_g, 0.)
                if SAVE:
                    tl.store(zh_buf + (i_bh * T + t) * D + o_d, b_zh, mask=m_d)
                    tl.store(rs_buf + i_bh * T + t, b_rs)
                # explicit step
                b_W -= (b_eta * b_k)[:, None] * b_g[None, :]
                b_b -= b_eta * b_g
                # read-out after the update
                b_zq = tl.sum(b_q[:, None] * b_W, axis=0) + b_b
                b_cq = tl.where(m_d, b_zq - tl.sum(b_zq, axis=0) / D, 0.)
                b_rsq = 1. / tl.sqrt(tl.sum(b_cq * b_cq, axis=0) / D + eps)
                b_o = b_q + b_gamma * (b_cq * b_rsq) + b_beta
                tl.store(o + o_x + o_d, b_o.to(o.dtype.element_ty), mask=m_d)
        if SAVE:
            tl.store(ckpt_W + (i_bh * NC + i_s) * D * D + o_d[:, None] * D + o_d[None, :], b_W, mask=m_dd)
            tl.store(ckpt_b + (i_bh * NC + i_s) * D + o_d, b_b, mask=m_d)
    tl.store(WT + i_bh * D * D + o_d[:, None] * D + o_d[None, :], b_W, mask=m_dd)
    tl.store(bT + i_bh * D + o_d, b_b, mask=m_d)


# %% Backward

@triton.autotune(configs=_configs(), key=["BD", "PREFETCH"])
@triton.jit(do_not_specialize=["T"])
def ttt_linear_bwd_kernel(
    q, k, v, eta, gamma, beta, do, ckpt_W, ckpt_b, zh_buf, rs_buf,   # inputs
    dq, dk, dv, deta, dgamma, dbeta, dW0, db0,                       # outputs (last four per program)
    T, eps,
    NC: tl.constexpr, H: tl.constexpr, D: tl.constexpr, BD: tl.constexpr, C: tl.constexpr,
    PREFETCH: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    o_d = tl.arange(0, BD)
    m_d = o_d < D
    m_dd = m_d[:, None] & m_d[None, :]
    b_gamma = tl.load(gamma + i_h * D + o_d, mask=m_d, other=0.).to(tl.float32)
    b_beta = tl.load(beta + i_h * D + o_d, mask=m_d, other=0.).to(tl.float32)
    # gradients wrt the running state (W_t, b_t), and the per-program LN parameter partials
    b_dW = tl.zeros([BD, BD], dtype=tl.float32)
    b_db = tl.zeros([BD], dtype=tl.float32)
    b_dgamma = tl.zeros([BD], dtype=tl.float32)
    b_dbeta = tl.zeros([BD], dtype=tl.float32)

    # PREFETCH: token t-1's inputs are loaded while token t computes (first: the last token, T-1)
    o_xl = ((i_b * T + T - 1) * H + i_h) * D
    b_k_n = tl.load(k + o_xl + o_d, mask=m_d, other=0.).to(tl.float32)
    b_v_n = tl.load(v + o_xl + o_d, mask=m_d, other=0.).to(tl.float32)
    b_q_n = tl.load(q + o_xl + o_d, mask=m_d, other=0.).to(tl.float32)
    b_do_n = tl.load(do + o_xl + o_d, mask=m_d, other=0.).to(tl.float32)
    b_eta_n = tl.load(eta + (i_b * T + T - 1) * H + i_h).to(tl.float32)
    b_zh_n = tl.load(zh_buf + (i_bh * T + T - 1) * D + o_d, mask=m_d, other=0.)
    b_rs_n = tl.load(rs_buf + i_bh * T + T - 1)
    for i_r in range(NC):
        i_s = NC - 1 - i_r
        # the state after this segment (W_{t1-1}): resets the undo drift every C tokens
        b_W = tl.load(ckpt_W + (i_bh * NC + i_s) * D * D + o_d[:, None] * D + o_d[None, :], mask=m_dd, other=0.)
        b_b = tl.load(ckpt_b + (i_bh * NC + i_s) * D + o_d, mask=m_d, other=0.)
        for j in range(C):
            t = i_s * C + C - 1 - j
            if t < T:
                o_x = ((i_b * T + t) * H + i_h) * D
                if PREFETCH:
                    b_k, b_v, b_q, b_do, b_eta, b_zh, b_rs = b_k_n, b_v_n, b_q_n, b_do_n, b_eta_n, b_zh_n, b_rs_n
                    m_n = t > 0
                    b_k_n = tl.load(k + o_x - H * D + o_d, mask=m_d & m_n, other=0.).to(tl.float32)
                    b_v_n = tl.load(v + o_x - H * D + o_d, mask=m_d & m_n, other=0.).to(tl.float32)
                    b_q_n = tl.load(q + o_x - H * D + o_d, mask=m_d & m_n, other=0.).to(tl.float32)
                    b_do_n = tl.load(do + o_x - H * D + o_d, mask=m_d & m_n, other=0.).to(tl.float32)
                    b_eta_n = tl.load(eta + (i_b * T + t - 1) * H + i_h, mask=m_n, other=0.).to(tl.float32)
                    b_zh_n = tl.load(zh_buf + (i_bh * T + t - 1) * D + o_d, mask=m_d & m_n, other=0.)
                    b_rs_n = tl.load(rs_buf + i_bh * T + t - 1, mask=m_n, other=0.)
                else:
                    b_k = tl.load(k + o_x + o_d, mask=m_d, other=0.).to(tl.float32)
                    b_v = tl.load(v + o_x + o_d, mask=m_d, other=0.).to(tl.float32)
                    b_q = tl.load(q + o_x + o_d, mask=m_d, other=0.).to(tl.float32)
                    b_do = tl.load(do + o_x + o_d, mask=m_d, other=0.).to(tl.float32)
                    b_eta = tl.load(eta + (i_b * T + t) * H + i_h).to(tl.float32)
                    b_zh = tl.load(zh_buf + (i_bh * T + t) * D + o_d, mask=m_d, other=0.)
                    b_rs = tl.load(rs_buf + i_bh * T + t)
                # this token's inner gradient g, rebuilt from the saved normalisation (O(d))
                b_res = b_gamma * b_zh + b_beta - (b_v - b_k)
                b_e = b_gamma * b_res
                b_m = tl.sum(b_e * b_zh, axis=0) / D
                b_g = tl.where(m_d, b_rs * (b_e - tl.sum(b_e, axis=0) / D - b_zh * b_m), 0.)
                # (1) read-out o = q + LN(q W_t + b_t), recomputed
                b_zq = tl.sum(b_q[:, None] * b_W, axis=0) + b_b
                b_cq = tl.where(m_d, b_zq - tl.sum(b_zq, axis=0) / D, 0.)
                b_rsq = 1. / tl.sqrt(tl.sum(b_cq * b_cq, axis=0) / D + eps)
                b_zhq = b_cq * b_rsq
                b_dgamma += b_do * b_zhq
                b_dbeta += b_do
                b_gd = b_gamma * b_do
                b_dzq = tl.where(m_d, b_rsq * (b_gd - tl.sum(b_gd, axis=0) / D
                                               - b_zhq * (tl.sum(b_gd * b_zhq, axis=0) / D)), 0.)
                # one sweep over W and dW: W dzq^T, dW g^T, k dW (dW is still dL/dW_t without q^T dzq)
                b_Wdzq = tl.sum(b_W * b_dzq[None, :], axis=1)
                b_dWg = tl.sum(b_dW * b_g[None, :], axis=1)
                b_kdW = tl.sum(b_k[:, None] * b_dW, axis=0)
                b_dq = b_do + b_Wdzq
                # (2) update W_t = W_{t-1} - eta k^T g: with dW_t = dW + q^T dzq, db_t = db + dzq
                b_a = b_kdW + tl.sum(b_k * b_q, axis=0) * b_dzq + b_db + b_dzq
                b_deta = -tl.sum(b_a * b_g, axis=0)
                b_u = -b_eta * b_a
                b_dk = -b_eta * (b_dWg + b_q * tl.sum(b_dzq * b_g, axis=0))
                # (3) g(z): dz = H u (closed-form Hessian-vector product), ue = rs P(u)
                b_uz = tl.sum(b_u * b_zh, axis=0) / D
                b_ue = tl.where(m_d, b_rs * (b_u - tl.sum(b_u, axis=0) / D - b_zh * b_uz), 0.)
                b_p = b_gamma * b_gamma * b_ue - b_rs * (b_m * b_u + b_uz * b_e)
                b_dz = b_rs * (b_p - tl.sum(b_p, axis=0) / D - b_zh * (tl.sum(b_p * b_zh, axis=0) / D)
                               - b_zh * (tl.sum(b_u * b_g, axis=0) / D))
                b_dz = tl.where(m_d, b_dz, 0.)
                b_dgamma += b_ue * (b_res + b_gamma * b_zh)
                b_dbeta += b_gamma * b_ue
                b_dv = -b_gamma * b_ue
                # W_{t-1} dz^T = W_t dz^T + eta k (g . dz); then undo the update
                b_dk += tl.sum(b_W * b_dz[None, :], axis=1) + b_eta * b_k * tl.sum(b_g * b_dz, axis=0) - b_dv
                b_W += (b_eta * b_k)[:, None] * b_g[None, :]
                b_b += b_eta * b_g
                b_dW += b_q[:, None] * b_dzq[None, :] + b_k[:, None] * b_dz[None, :]
                b_db += b_dzq + b_dz
                tl.store(dq + o_x + o_d, b_dq.to(dq.dtype.element_ty), mask=m_d)
                tl.store(dk + o_x + o_d, b_dk.to(dk.dtype.element_ty), mask=m_d)
                tl.store(dv + o_x + o_d, b_dv.to(dv.dtype.element_ty), mask=m_d)
                tl.store(deta + (i_b * T + t) * H + i_h, b_deta)
    tl.store(dW0 + i_bh * D * D + o_d[:, None] * D + o_d[None, :], b_dW, mask=m_dd)
    tl.store(db0 + i_bh * D + o_d, b_db, mask=m_d)
    tl.store(dgamma + i_bh * D + o_d, b_dgamma, mask=m_d)
    tl.store(dbeta + i_bh * D + o_d, b_dbeta, mask=m_d)


# %% Launchers

def ttt_linear_fused_fwd(q, k, v, eta, gamma, beta, W0, b0, eps: float = EPS_EXACT, save: bool = True,
                         checkpoint_every: int = CHECKPOINT_EVERY, prefetch: bool = PREFETCH):
    """Launch the forward kernel. Inputs as `ttt_linear_fused` (contiguous).

    Returns:
        o `[B, T, H, D]` (q.dtype), W_T `[B, H, D, D]` and b_T `[B, H, D]` (fp32), and `saved`:
        (ckpt_W `[B, H, NC, D, D]`, ckpt_b `[B, H, NC, D]`, zh `[B, H, T, D]`, rs `[B, H, T]`),
        all fp32, NC = ceil(T / C) (None when save=False).
    """
    B, T, H, D = q.shape
    C = checkpoint_every
    NC = triton.cdiv(T, C)
    dev = q.device
    o = torch.empty_like(q)
    WT = torch.empty(B, H, D, D, device=dev, dtype=torch.float32)
    bT = torch.empty(B, H, D, device=dev, dtype=torch.float32)
    if save:
        ckpt_W = torch.empty(B, H, NC, D, D, device=dev, dtype=torch.float32)
        ckpt_b = torch.empty(B, H, NC, D, device=dev, dtype=torch.float32)
        zh = torch.empty(B, H, T, D, device=dev, dtype=torch.float32)
        rs = torch.empty(B, H, T, device=dev, dtype=torch.float32)
    else:
        ckpt_W = ckpt_b = zh = rs = WT                                  # never written
    ttt_linear_fwd_kernel[(B * H,)](
        q, k, v, eta, gamma, beta, W0, b0, o, WT, bT, ckpt_W, ckpt_b, zh, rs, T, eps,
        NC=NC, H=H, D=D, BD=max(triton.next_power_of_2(D), 16), C=C, SAVE=save, PREFETCH=prefetch)
    return o, WT, bT, ((ckpt_W, ckpt_b, zh, rs) if save else None)


def ttt_linear_fused_bwd(do, q, k, v, eta, gamma, beta, saved, eps: float = EPS_EXACT,
                         checkpoint_every: int = CHECKPOINT_EVERY, prefetch: bool = PREFETCH):
    """Launch the backward kernel; returns dq, dk, dv `[B, T, H, D]`, deta `[B, T, H]`, dgamma,
    dbeta `[H, D]`, dW0 `[H, D, D]`, db0 `[H, D]` (parameter partials summed over the batch)."""
    B, T, H, D = q.shape
    ckpt_W, ckpt_b, zh, rs = saved
    dev = q.device
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    deta = torch.empty(B, T, H, device=dev, dtype=torch.float32)
    dgamma = torch.empty(B, H, D, device=dev, dtype=torch.float32)
    dbeta = torch.empty(B, H, D, device=dev, dtype=torch.float32)
    dW0 = torch.empty(B, H, D, D, device=dev, dtype=torch.float32)
    db0 = torch.empty(B, H, D, device=dev, dtype=torch.float32)
    ttt_linear_bwd_kernel[(B * H,)](
        q, k, v, eta, gamma, beta, do, ckpt_W, ckpt_b, zh, rs,
        dq, dk, dv, deta, dgamma, dbeta, dW0, db0, T, eps,
        NC=triton.cdiv(T, checkpoint_every), H=H, D=D, BD=max(triton.next_power_of_2(D), 16), C=checkpoint_every,
        PREFETCH=prefetch)
    return (dq, dk, dv, deta.to(eta.dtype), dgamma.sum(0).to(gamma.dtype), dbeta.sum(0).to(beta.dtype),
            dW0.sum(0), db0.sum(0))


class TTTLinearFusedFunction(torch.autograd.Function):
    """autograd wrapper: forward saves checkpoints + (zh, rs); backward reverses the recurrence."""

    @staticmethod
    def forward(ctx, q, k, v, eta, gamma, beta, W0, b0, eps, checkpoint_every, save, prefetch):
        o, _, _, saved = ttt_linear_fused_fwd(q, k, v, eta, gamma, beta, W0, b0, eps, save, checkpoint_every,
                                              prefetch)
        if save:
            ctx.save_for_backward(q, k, v, eta, gamma, beta, *saved)
            ctx.w_dtypes = (W0.dtype, b0.dtype)
        ctx.eps, ctx.C, ctx.save, ctx.prefetch = eps, checkpoint_every, save, prefetch
        return o

    @staticmethod
    def backward(ctx, do):
        if not ctx.save:
            raise RuntimeError("ttt_linear_fused: forward ran without saving for backward")
        q, k, v, eta, gamma, beta, *saved = ctx.saved_tensors
        dq, dk, dv, deta, dgamma, dbeta, dW0, db0 = ttt_linear_fused_bwd(
            do.contiguous(), q, k, v, eta, gamma, beta, saved, ctx.eps, ctx.C, ctx.prefetch)
        return (dq, dk, dv, deta, dgamma, dbeta, dW0.to(ctx.w_dtypes[0]), db0.to(ctx.w_dtypes[1]),
                None, None, None, None)


def ttt_linear_fused(q, k, v, eta, gamma, beta, W0, b0, eps: float = EPS_EXACT,
                     checkpoint_every: int = CHECKPOINT_EVERY, prefetch: bool = PREFETCH) -> torch.Tensor:
    """Exact TTT-Linear (mini-batch 1), fused per-token explicit solver; equals `naive.ttt_linear_loop`.

    Args:
        q, k, v: `[B, T, H, D]` (fp32 / bf16 / fp16; the state and all reductions are fp32).
        eta: `[B, T, H]` effective step sizes.
        gamma, beta: `[H, D]` per-head LN weight/bias; W0 `[H, D, D]`, b0 `[H, D]` initial state.
        eps: LN epsilon (1e-6). checkpoint_every: C, tokens between saved states (backward).
        prefetch: load the next token's inputs while the current one computes (same results).

    Returns:
        o `[B, T, H, D]` in q.dtype. Differentiable wrt every input (deta is wrt the effective step).

    Example::

        >>> x = make_ttt_inputs(B=1, T=33, H=2, D=16, device="cuda", requires_grad=True)
        >>> ttt_linear_fused(**x).shape
        torch.Size([1, 33, 2, 16])
    """
    B, T, H, D = check_ttt_inputs(q, k, v, eta, gamma, beta, W0, b0, who="ttt_linear_fused")
    if D > MAX_D:
        raise ValueError(f"ttt_linear_fused: D={D} > {MAX_D} (W must fit on chip)")
    if checkpoint_every < 1:
        raise ValueError(f"ttt_linear_fused: checkpoint_every={checkpoint_every} must be >= 1")
    if q.device.type != "cuda" and not interpreting():
        raise ValueError(f"ttt_linear_fused: q.device={q.device} needs CUDA (or TRITON_INTERPRET=1 on the CPU)")
    if T == 0:
        return torch.empty_like(q)
    ts = [t.contiguous() for t in (q, k, v, eta, gamma, beta, W0, b0)]
    save = torch.is_grad_enabled() and any(t.requires_grad for t in ts)
    return TTTLinearFusedFunction.apply(*ts, eps, checkpoint_every, save, prefetch)
