"""PRISM on fla operators: the token-expanded DPLR form (SPEC section 1), as the paper's code ran it.

fla's diagonal-plus-low-rank rule (`fla.ops.generalized_delta_rule.dplr`) is, per (sub-)token,

    S <- diag(exp(gk)) S + b (a^T S) + k v^T,      o = S^T (scale * q)

Each PRISM token t becomes L sub-tokens, interleaved (sub-token l of token t at index t*L + l - 1):
    sub-token 1:      gk = log alpha_t (all K channels), a = k^(1), b = -alpha_t beta^(1) k^(1),
                      k = k^(1), v = beta^(1) delta^(1)
    sub-tokens l>=2:  gk = 0, a = b = 0, k = k^(l), v = beta^(l) delta^(l)
with the deltas from `prism_solver(v, u, p)`, and the output read at the last sub-token (q is placed
there only; the other sub-tokens get q = 0, which does not change the output). This reproduces

    h_t = alpha_t (I - beta^(1) k^(1) k^(1)^T) h_{t-1} + sum_l beta^(l) k^(l) delta^(l)^T,  o_t = h_t^T (scale q_t)

at L times the sequence length: the peer a fused PRISM kernel must beat.

Backends: cuda -> fla `chunk_dplr_delta_rule` (default chunk size: 16, as fla picks without a gate
lower bound; its first call autotunes for minutes); CPU -> fla's `dplr_recurrence` (naive token loop).
fla's `dplr_recurrence` computes in float32 whatever the input dtype and hard-codes scale = K**-0.5
(other scales are applied by pre-multiplying q); the float64 reference for this method is
`prism-reference`.
"""
from __future__ import annotations

from typing import Optional

import torch

from prismbench.kernels.prism.solver import prism_solver


def _check_prism(q, k, v, u, p, beta, g) -> int:
    if q.dim() != 4:
        raise ValueError(f"prism_fla_dplr: q must be [B, T, H, K], got q.shape={tuple(q.shape)}")
    B, T, H, K = q.shape
    if k.dim() != 5 or k.shape[1:] != q.shape:
        raise ValueError(f"prism_fla_dplr: k must be [L, B, T, H, K] with q.shape={tuple(q.shape)}, got k.shape={tuple(k.shape)}")
    L = k.shape[0]
    if v.dim() != 4 or v.shape[:3] != (B, T, H) or u.shape != v.shape:
        raise ValueError(f"prism_fla_dplr: v, u must be [B, T, H, V] with B, T, H = {(B, T, H)}, "
                         f"got v.shape={tuple(v.shape)}, u.shape={tuple(u.shape)}")
    if p.shape != (L, *v.shape):
        raise ValueError(f"prism_fla_dplr: p must be [L, B, T, H, V]={(L, *v.shape)}, got p.shape={tuple(p.shape)}")
    if beta.shape != (L, B, T, H):
        raise ValueError(f"prism_fla_dplr: beta must be [L, B, T, H]={(L, B, T, H)}, got beta.shape={tuple(beta.shape)}")
    if g.shape != (B, T, H):
        raise ValueError(f"prism_fla_dplr: g must be [B, T, H]={(B, T, H)}, got g.shape={tuple(g.shape)}")
    return L


def _interleave(parts: list[torch.Tensor]) -> torch.Tensor:
    """L tensors `[B, T, H, D]` -> `[B, T*L, H, D]`, sub-token l of token t at t*L + l."""
    x = torch.stack(parts, 2)  # [B, T, L, H, D]
    B, T, L = x.shape[:3]
    return x.reshape(B, T * L, *x.shape[3:])


def expand_prism_to_dplr(q, k, v, u, p, beta, g) -> tuple[torch.Tensor, ...]:
    """Token-expand PRISM inputs into fla DPLR inputs (module docstring gives the map).

    Args:
        q: `[B, T, H, K]`; k: `[L, B, T, H, K]`; v, u: `[B, T, H, V]`; p: `[L, B, T, H, V]`;
        beta: `[L, B, T, H]`; g: `[B, T, H]` (log alpha <= 0).

    Returns:
        (q_e, k_e, v_e, a_e, b_e, gk_e): `[B, T*L, H, K]` except v_e `[B, T*L, H, V]`; all in q's dtype
        except gk_e, float32 (float64 for float64 inputs).

    Example::

        >>> xe = expand_prism_to_dplr(**make_prism_inputs(shape, 0))
        >>> xe[0].shape    # [B, T*L, H, K]
    """
    L = _check_prism(q, k, v, u, p, beta, g)
    dt = q.dtype
    gdt = torch.float64 if dt == torch.float64 else torch.float32
    delta = prism_solver(v, u, p)  # [L, B, T, H, V]
    zeros_k = torch.zeros_like(q)
    k1 = k[0]
    gk1 = g.to(gdt)[..., None].expand(*g.shape, q.shape[-1])
    b1 = (-(g.to(gdt).exp() * beta[0].to(gdt)))[..., None] * k1.to(gdt)
    q_e = _interleave([zeros_k] * (L - 1) + [q])
    k_e = _interleave([k[l] for l in range(L)]).to(dt)
    v_e = _interleave([beta[l][..., None] * delta[l] for l in range(L)]).to(dt)
    a_e = _interleave([k1] + [zeros_k] * (L - 1)).to(dt)
    b_e = _interleave([b1.to(dt)] + [zeros_k] * (L - 1))
    gk_e = _interleave([gk1] + [torch.zeros_like(gk1)] * (L - 1))
    return q_e, k_e, v_e, a_e, b_e, gk_e


def prism_fla_dplr(q, k, v, u, p, beta, g, scale: Optional[float] = None) -> torch.Tensor:
    """PRISM output through fla's DPLR op on the token-expanded sequence.

    Args:
        as `expand_prism_to_dplr`; scale: query scale, default K**-0.5 (SPEC: applied to q).

    Returns:
        o: `[B, T, H, V]` in q's dtype (cuda: fla `chunk_dplr_delta_rule`; CPU: fla `dplr_recurrence`).

    Example::

        >>> x = make_prism_inputs(shape, seed=0)
        >>> prism_fla_dplr(**x).shape   # [B, T, H, V]
    """
    L = _check_prism(q, k, v, u, p, beta, g)
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    q_e, k_e, v_e, a_e, b_e, gk_e = expand_prism_to_dplr(q, k, v, u, p, beta, g)
    if q.device.type == "cuda":
        from fla.ops.generalized_delta_rule.dplr import chunk_dplr_delta_rule

        o_e = chunk_dplr_delta_rule(q_e, k_e, v_e, a_e, b_e, gk_e.float(), scale=scale)[0]
    else:
        from fla.ops.generalized_delta_rule.dplr.naive import dplr_recurrence

        if scale != K ** -0.5:
            q_e = q_e * (scale / K ** -0.5)
        # fla's naive wants [B, H, T, *] and mixes dtypes badly (it leaves `a` uncast): give it float32.
        args = (x.float().transpose(1, 2) for x in (q_e, k_e, v_e, a_e, b_e, gk_e))
        o_e = dplr_recurrence(*args, output_final_state=False)[0].transpose(1, 2).to(q.dtype)
    return o_e.reshape(B, T, L, H, V)[:, :, L - 1]
