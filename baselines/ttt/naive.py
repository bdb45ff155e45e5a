"""TTT-Linear: the one definition every `ttt-*` backend cites (SPEC section 3).

Two variants, both kept here, plus the mini-batch ("dual") form:

* **exact** (``ttt_linear_loop``; the reference TTT-Linear of arXiv 2407.04620, mini-batch 1).
  Per head of width d (K = V = d), row vectors, inner model ``z = k W + b`` (W [d, d], b [d]).
  Token t, state (W, b) = (W_{t-1}, b_{t-1}) on entry::

      z   = k_t W + b
      zh  = (z - mean z) * rs,      rs = (var z + eps)^-1/2       population variance, eps = 1e-6
      P(x) = x - mean(x) - zh (x . zh) / d
      res = gamma * zh + beta - (v_t - k_t);   e = gamma * res
      g   = rs * P(e)                          = d l_t / d z, l_t = 1/2 ||LN(z) - (v_t - k_t)||^2
      W_t = W_{t-1} - eta_t k_t^T g;   b_t = b_{t-1} - eta_t g
      o_t = q_t + LN(q_t W_t + b_t)            read-out after the update, same LN (gamma, beta, eps)

  ``g`` is the exact gradient through the layer norm (``mean(zh^2) = var/(var+eps)`` is never
  replaced by 1). ``eta_t`` is the effective per-token, per-head step (already
  ``eta_base * sigmoid(theta_h . x_t + c_h) / d`` in a layer; positive).

* **simplified** (``ttt_linear_simplified_loop``; the PRISM authors' ``rec/models/TTT.py``, the
  baseline their 174x was timed against). No layer-norm Jacobian, pre-update read-out::

      y   = LN(k_t W_{t-1} + b_{t-1})          nn.LayerNorm semantics, eps = 1e-5, gamma/beta [d]
      err = y - (v_t - k_t)
      W_t = W_{t-1} - eta_t k_t^T err;   b_t = b_{t-1} - eta_t err
      o_t = q_t + y
      eta_t = eta_base * clamp(1/(t+1) + offset_t, 0) * lr_gate_t / sqrt(d)   (t absolute, from 0)

  Their code writes ``z = W k`` (W [d_out, d_in]); here ``W`` is its transpose. Their token-local
  ``theta_{q,k,v}`` linear maps, RoPE and L2 normalisation belong to the layer, not the solver.

* **mini-batch** (``ttt_linear_minibatch``): all gradients of a mini-batch of size b are taken at
  the mini-batch's starting state (the TTT paper's dual form). With ``eta_mode="token"`` token s's
  gradient is scaled by its own eta_s (the reference layer's mini-batch form; b = 1 is exactly the
  per-token loop); with ``eta_mode="row"`` the read-out of row t uses eta_t for every s <= t and
  the state update uses the mini-batch's last eta (fla ``chunk_ttt_linear``'s convention).
  Mini-batch b and mini-batch 1 are different models: label results with b.

Tensor layout of every backend (the "exact" method inputs): q, k, v [B, T, H, d]; eta [B, T, H];
gamma, beta [H, d] (per-head LN weight/bias); W0 [H, d, d]; b0 [H, d] (learned initial state,
shared across the batch). All are differentiable.

Example::

    >>> x = make_ttt_inputs(B=1, T=8, H=2, D=4, seed=0)
    >>> o, _ = ttt_linear_loop(**x)
    >>> o.shape
    torch.Size([1, 8, 2, 4])
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

#: LN eps of the reference TTT-Linear (ttt-lm-pytorch ln_fwd / ln_fused_l2_bwd).
EPS_EXACT = 1e-6
#: LN eps of the PRISM authors' variant (nn.LayerNorm default).
EPS_SIMPLIFIED = 1e-5
#: fla chunk_ttt_linear's mini-batch size used by the `ttt-fla-chunk` method.
FLA_MINI_BATCH = 16

__all__ = [
    "EPS_EXACT", "EPS_SIMPLIFIED", "FLA_MINI_BATCH",
    "ln_normalize", "ln_proj", "ln_loss_grad", "ln_loss_hvp",
    "ttt_linear_loop", "ttt_linear_simplified_loop", "ttt_linear_minibatch",
    "simplified_eta", "check_ttt_inputs", "make_ttt_inputs", "make_ttt_simplified_inputs",
]


# %% Layer-norm pieces (last dim is the head width d)

def ln_normalize(z: torch.Tensor, eps: float = EPS_EXACT):
    """zh = (z - mean z) * rs with rs = (var z + eps)^-1/2 (population variance), over the last dim.

    Args:
        z: `[..., d]`.
    Returns:
        zh `[..., d]`, rs `[..., 1]`.
    """
    c = z - z.mean(-1, keepdim=True)
    rs = torch.rsqrt((c * c).mean(-1, keepdim=True) + eps)
    return c * rs, rs


def ln_proj(x: torch.Tensor, zh: torch.Tensor) -> torch.Tensor:
    """P(x) = x - mean(x) - zh (x . zh) / d (symmetric); rs * P(x) is the VJP of normalize. `[..., d]`."""
    d = x.shape[-1]
    return x - x.mean(-1, keepdim=True) - zh * ((x * zh).sum(-1, keepdim=True) / d)


def ln_loss_grad(zh, rs, r, gamma, beta):
    """Inner-loss gradient g = dl/dz for l = 1/2 ||gamma*zh + beta - r||^2 (exact, eps included).

    Args:
        zh `[..., d]`, rs `[..., 1]` from `ln_normalize(z)`; r (target v - k) `[..., d]`;
        gamma, beta broadcastable to `[..., d]`.
    Returns:
        g `[..., d]`, e = gamma * res `[..., d]`, res = LN(z) - r `[..., d]`.
    """
    res = gamma * zh + beta - r
    e = gamma * res
    return rs * ln_proj(e, zh), e, res


def ln_loss_hvp(u, zh, rs, e, g, gamma):
    """H u, with H = dg/dz the (symmetric) Hessian of the LN loss wrt z, and ue = rs P(u) = dL/de.

    The closed form used by the fused backward (shared/reference/ttt_bwd.md); 27d FLOPs, no d x d.
    All arguments `[..., d]` except rs `[..., 1]`. Returns (Hu, ue).
    """
    d = u.shape[-1]
    uz = (u * zh).sum(-1, keepdim=True) / d
    ue = rs * (u - u.mean(-1, keepdim=True) - zh * uz)
    m = (e * zh).sum(-1, keepdim=True) / d
    p = gamma * gamma * ue - rs * (m * u + uz * e)
    hu = rs * (ln_proj(p, zh) - zh * ((u * g).sum(-1, keepdim=True) / d))
    return hu, ue


# %% Input checks

def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The loops keep the state in float64 for float64 inputs, else in float32 (never bf16)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_ttt_inputs(q, k, v, eta, gamma, beta, W0, b0, *, who: str = "ttt", eta_name: str = "eta",
                     gamma_shape: Optional[tuple] = None) -> tuple[int, int, int, int]:
    """Validate the exact-variant layout; returns (B, T, H, D). Raises ValueError naming the argument."""
    if q.dim() != 4:
        raise ValueError(f"{who}: q must be [B, T, H, D], got q.shape={tuple(q.shape)}")
    B, T, H, D = q.shape
    for name, t in (("k", k), ("v", v)):
        if tuple(t.shape) != (B, T, H, D):
            raise ValueError(f"{who}: {name}.shape={tuple(t.shape)} must equal q.shape={(B, T, H, D)} "
                             "(TTT-Linear needs K == V == d)")
    if tuple(eta.shape) != (B, T, H):
        raise ValueError(f"{who}: {eta_name}.shape={tuple(eta.shape)} must be [B, T, H]={(B, T, H)}")
    gshape = gamma_shape if gamma_shape is not None else (H, D)
    for name, t in (("gamma", gamma), ("beta", beta)):
        if tuple(t.shape) != gshape:
            raise ValueError(f"{who}: {name}.shape={tuple(t.shape)} must be {gshape}")
    if tuple(W0.shape) != (H, D, D):
        raise ValueError(f"{who}: W0.shape={tuple(W0.shape)} must be [H, D, D]={(H, D, D)}")
    if tuple(b0.shape) != (H, D):
        raise ValueError(f"{who}: b0.shape={tuple(b0.shape)} must be [H, D]={(H, D)}")
    devs = {t.device for t in (q, k, v, eta, gamma, beta, W0, b0)}
    if len(devs) != 1:
        raise ValueError(f"{who}: inputs on several devices: {sorted(map(str, devs))}")
    return B, T, H, D


# %% Exact variant: per-token loop (autograd through it; the way the paper's baseline ran)

def ttt_linear_loop(q, k, v, eta, gamma, beta, W0, b0, eps: float = EPS_EXACT,
                    output_final_state: bool = False):
    """Reference TTT-Linear, mini-batch 1, as a per-token PyTorch loop (differentiable by autograd).

    Args:
        q, k, v: `[B, T, H, D]` queries, keys, values.
        eta: `[B, T, H]` effective step sizes (positive).
        gamma, beta: `[H, D]` per-head LN weight and bias (inner loss and read-out).
        W0: `[H, D, D]`, b0: `[H, D]` initial inner model (row convention z = k W + b).
        eps: LN epsilon (1e-6, the reference).
        output_final_state: also return (W_T `[B, H, D, D]`, b_T `[B, H, D]`).

    Returns:
        o `[B, T, H, D]` in q.dtype (state and math in float32, or float64 for float64 inputs),
        and the final state or None.

    Example::

        >>> x = make_ttt_inputs(B=2, T=5, H=3, D=8, seed=1)
        >>> o, (W, b) = ttt_linear_loop(**x, output_final_state=True)
        >>> o.shape, W.shape
        (torch.Size([2, 5, 3, 8]), torch.Size([2, 3, 8, 8]))
    """
    B, T, H, D = check_ttt_inputs(q, k, v, eta, gamma, beta, W0, b0, who="ttt_linear_loop")
    in_dtype, cd = q.dtype, _compute_dtype(q.dtype)
    q, k, v, eta, gamma, beta, W0, b0 = (t.to(cd) for t in (q, k, v, eta, gamma, beta, W0, b0))
    W = W0.unsqueeze(0).expand(B, H, D, D)
    b = b0.unsqueeze(0).expand(B, H, D)
    outs = []
    for t in range(T):
        k_t, v_t, q_t, e_t = k[:, t], v[:, t], q[:, t], eta[:, t, :, None]       # [B, H, D], [B, H, 1]
        z = torch.einsum("bhi,bhij->bhj", k_t, W) + b
        zh, rs = ln_normalize(z, eps)
        g, _, _ = ln_loss_grad(zh, rs, v_t - k_t, gamma, beta)
        W = W - (e_t * k_t).unsqueeze(-1) * g.unsqueeze(-2)
        b = b - e_t * g
        zq = torch.einsum("bhi,bhij->bhj", q_t, W) + b
        zhq, _ = ln_normalize(zq, eps)
        outs.append(q_t + gamma * zhq + beta)
    o = torch.stack(outs, dim=1) if T > 0 else q.new_zeros(B, 0, H, D)
    return o.to(in_dtype), ((W, b) if output_final_state else None)


# %% Simplified variant (PRISM authors' TTT.py)

def simplified_eta(lr_gate: torch.Tensor, token_offset: torch.Tensor, D: int, eta_base: float = 1.0):
    """eta_t = eta_base * clamp(1/(t+1) + offset_t, 0) * lr_gate_t / sqrt(D) (t absolute, from 0).

    Args:
        lr_gate: `[B, T, H]` in (0, 1) (sigmoid of a projection).
        token_offset: `[T]` learned per-position offset (zeros at init in their code).
    Returns:
        eta `[B, T, H]`.
    """
    T = lr_gate.shape[1]
    pos = torch.arange(1, T + 1, device=lr_gate.device, dtype=lr_gate.dtype)
    tok = torch.clamp(1.0 / pos + token_offset.to(lr_gate.dtype), min=0.0)
    return eta_base * tok.view(1, T, 1) * lr_gate / math.sqrt(D)


def ttt_linear_simplified_loop(q, k, v, lr_gate, token_offset, gamma, beta, W0, b0,
                               eps: float = EPS_SIMPLIFIED, eta_base: float = 1.0,
                               output_final_state: bool = False):
    """The PRISM authors' TTT-Linear variant as a per-token loop (see the module docstring).

    Args:
        q, k, v: `[B, T, H, D]` (their layer L2-normalises them and applies RoPE to q, k first).
        lr_gate: `[B, T, H]` in (0, 1).  token_offset: `[T]`.
        gamma, beta: `[D]` one LayerNorm shared by all heads (their `ttt_norm`).
        W0: `[H, D, D]` (transpose of theirs), b0: `[H, D]`.

    Returns:
        o `[B, T, H, D]` and optionally (W_T `[B, H, D, D]`, b_T `[B, H, D]`).

    Example::

        >>> x = make_ttt_simplified_inputs(B=1, T=6, H=2, D=8, seed=0)
        >>> ttt_linear_simplified_loop(**x)[0].shape
        torch.Size([1, 6, 2, 8])
    """
    B, T, H, D = check_ttt_inputs(q, k, v, lr_gate, gamma, beta, W0, b0, who="ttt_linear_simplified_loop",
                                  eta_name="lr_gate", gamma_shape=(q.shape[-1],))
    if tuple(token_offset.shape) != (T,):
        raise ValueError(f"ttt_linear_simplified_loop: token_offset.shape={tuple(token_offset.shape)} "
                         f"must be [T]=({T},)")
    in_dtype, cd = q.dtype, _compute_dtype(q.dtype)
    q, k, v, lr_gate, token_offset, gamma, beta, W0, b0 = (
        t.to(cd) for t in (q, k, v, lr_gate, token_offset, gamma, beta, W0, b0))
    eta = simplified_eta(lr_gate, token_offset, D, eta_base)
    W = W0.unsqueeze(0).expand(B, H, D, D)
    b = b0.unsqueeze(0).expand(B, H, D)
    outs = []
    for t in range(T):
        k_t, v_t, q_t, e_t = k[:, t], v[:, t], q[:, t], eta[:, t, :, None]
        y = F.layer_norm(torch.einsum("bhi,bhij->bhj", k_t, W) + b, (D,), gamma, beta, eps)
        err = y - (v_t - k_t)
        W = W - (e_t * k_t).unsqueeze(-1) * err.unsqueeze(-2)
        b = b - e_t * err
        outs.append(q_t + y)
    o = torch.stack(outs, dim=1) if T > 0 else q.new_zeros(B, 0, H, D)
    return o.to(in_dtype), ((W, b) if output_final_state else None)


# %% Mini-batch (dual) form

def ttt_linear_minibatch(q, k, v, eta, gamma, beta, W0, b0, mini_batch_size: int = FLA_MINI_BATCH,
                         eta_mode: str = "token", eps: float = EPS_EXACT, return_z: bool = False,
                         output_final_state: bool = False):
    """Mini-batch TTT-Linear in its dual form (matrix products inside each mini-batch).

    Inside a mini-batch with starting state (W, b), tokens s = 1..b, all gradients g_s are taken
    at (W, b); with E[t, s] = eta_s ("token") or eta_t ("row", fla's convention)::

        Zq_t = q_t W + b - sum_{s<=t} E[t, s] (q_t . k_s + 1) g_s      o_t = q_t + LN(Zq_t)
        W   -= sum_s E[last, s] k_s^T g_s,   b -= sum_s E[last, s] g_s

    A partial last mini-batch is simply shorter (outputs equal fla's, which pads).
    mini_batch_size = 1 is the per-token loop (`ttt_linear_loop`) in either mode.

    Args:
        q, k, v `[B, T, H, D]`; eta `[B, T, H]`; gamma, beta `[H, D]`; W0 `[H, D, D]`; b0 `[H, D]`.
        return_z: return the pre-LN read-out Zq `[B, T, H, D]` instead of o.

    Returns:
        o (or Zq) `[B, T, H, D]`, and (W_T, b_T) or None.

    Example::

        >>> x = make_ttt_inputs(B=1, T=20, H=2, D=8, seed=0)
        >>> ttt_linear_minibatch(**x, mini_batch_size=16, eta_mode="row")[0].shape
        torch.Size([1, 20, 2, 8])
    """
    B, T, H, D = check_ttt_inputs(q, k, v, eta, gamma, beta, W0, b0, who="ttt_linear_minibatch")
    if eta_mode not in ("token", "row"):
        raise ValueError(f"ttt_linear_minibatch: eta_mode={eta_mode!r} must be 'token' or 'row'")
    if mini_batch_size < 1:
        raise ValueError(f"ttt_linear_minibatch: mini_batch_size={mini_batch_size} must be >= 1")
    in_dtype, cd = q.dtype, _compute_dtype(q.dtype)
    q, k, v, eta, gamma, beta, W0, b0 = (t.to(cd) for t in (q, k, v, eta, gamma, beta, W0, b0))
    # [B, H, T, D] for matrix products over time
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
    eh = eta.transpose(1, 2)                                             # [B, H, T]
    W = W0.unsqueeze(0).expand(B, H, D, D)
    b = b0.unsqueeze(0).expand(B, H, D).unsqueeze(-2)                     # [B, H, 1, D]
    outs = []
    for t0 in range(0, T, mini_batch_size):
        t1 = min(t0 + mini_batch_size, T)
        n = t1 - t0
        qi, ki, vi, ei = qh[:, :, t0:t1], kh[:, :, t0:t1], vh[:, :, t0:t1], eh[:, :, t0:t1]
        zh, rs = ln_normalize(ki @ W + b, eps)
        g, _, _ = ln_loss_grad(zh, rs, vi - ki, gamma[:, None], beta[:, None])   # [B, H, n, D]
        mask = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
        if eta_mode == "token":
            E = ei.unsqueeze(-2).expand(B, H, n, n)                      # E[t, s] = eta_s
        else:
            E = ei.unsqueeze(-1).expand(B, H, n, n)                      # E[t, s] = eta_t
        E = E.masked_fill(~mask, 0.0)
        A = E * (qi @ ki.transpose(-1, -2) + 1.0)
        outs.append(qi @ W + b - A @ g)
        e_last = E[:, :, -1, :].unsqueeze(-1)                            # [B, H, n, 1]
        W = W - ki.transpose(-1, -2) @ (e_last * g)
        b = b - (e_last * g).sum(-2, keepdim=True)
    Z = torch.cat(outs, dim=2).transpose(1, 2) if T > 0 else q.new_zeros(B, 0, H, D)
    if return_z:
        out = Z
    else:
        zhq, _ = ln_normalize(Z, eps)
        out = q + gamma * zhq + beta
    return out.to(in_dtype), ((W, b.squeeze(-2)) if output_final_state else None)


# %% Input builders (shared by the methods, tests and the GPU script)

def make_ttt_inputs(B: int, T: int, H: int, D: int, seed: int = 0, dtype=torch.float32,
                    device="cpu", requires_grad: bool = False, eta_scale: float = 1.0):
    """Random valid exact-variant inputs.

    q, k, v ~ N(0, 1) `[B, T, H, D]`; eta = eta_scale * sigmoid(N(0,1)) / D `[B, T, H]` (SPEC's
    eta_base * sigmoid(.) / d); gamma ~ 1 + 0.1 N, beta ~ 0.1 N `[H, D]`; W0 ~ N(0, 1/D) `[H, D, D]`;
    b0 ~ 0.1 N `[H, D]`. Drawn in float32 on the CPU from `seed`, then moved/cast.

    Example::

        >>> sorted(make_ttt_inputs(1, 4, 2, 8))
        ['W0', 'b0', 'beta', 'eta', 'gamma', 'k', 'q', 'v']
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def n(*s):
        return torch.randn(*s, generator=gen, dtype=torch.float32)

    x = dict(q=n(B, T, H, D), k=n(B, T, H, D), v=n(B, T, H, D),
             eta=eta_scale * torch.sigmoid(n(B, T, H)) / D,
             gamma=1.0 + 0.1 * n(H, D), beta=0.1 * n(H, D),
             W0=n(H, D, D) / math.sqrt(D), b0=0.1 * n(H, D))
    return {name: t.to(device=device, dtype=dtype).requires_grad_(requires_grad) for name, t in x.items()}


def make_ttt_simplified_inputs(B: int, T: int, H: int, D: int, seed: int = 0, dtype=torch.float32,
                               device="cpu", requires_grad: bool = False):
    """Random valid simplified-variant inputs (the authors' layer after its projections).

    q, k, v `[B, T, H, D]` L2-normalised per head; lr_gate = sigmoid(N) `[B, T, H]`;
    token_offset ~ 0.01 N `[T]`; gamma ~ 1 + 0.1 N, beta ~ 0.1 N `[D]`; W0 ~ 0.1 N / sqrt(D)
    `[H, D, D]`; b0 ~ 0.01 N `[H, D]` (their init is zeros; small noise makes every gradient live).

    Example::

        >>> sorted(make_ttt_simplified_inputs(1, 4, 2, 8))
        ['W0', 'b0', 'beta', 'gamma', 'k', 'lr_gate', 'q', 'token_offset', 'v']
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def n(*s):
        return torch.randn(*s, generator=gen, dtype=torch.float32)

    x = dict(q=F.normalize(n(B, T, H, D), dim=-1), k=F.normalize(n(B, T, H, D), dim=-1),
             v=F.normalize(n(B, T, H, D), dim=-1), lr_gate=torch.sigmoid(n(B, T, H)),
             token_offset=0.01 * n(T), gamma=1.0 + 0.1 * n(D), beta=0.1 * n(D),
             W0=0.1 * n(H, D, D) / math.sqrt(D), b0=0.01 * n(H, D))
    return {name: t.to(device=device, dtype=dtype).requires_grad_(requires_grad) for name, t in x.items()}
