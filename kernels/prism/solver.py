"""PRISM's unrolled solver, shared by every backend (SPEC section 1).

    r^(1) = v - u,   delta^(l) = GELU(p^(l) * r^(l)),   r^(l+1) = r^(l) - delta^(l)

GELU is the exact (erf) GELU. Triton kernels rebuild the deltas on chip from (v, u, p) and must
match this function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def prism_solver(v: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Unrolled solver deltas.

    Args:
        v: values `[B, T, H, V]`.
        u: anchor slice of the head `[B, T, H, V]`.
        p: gains `[L, B, T, H, V]` (one per solver step).

    Returns:
        delta: `[L, B, T, H, V]`, delta[l] = GELU(p[l] * r_l) with r_1 = v - u, r_{l+1} = r_l - delta[l].

    Example::

        >>> v, u = torch.randn(2, 1, 8, 1, 4).unbind(0); p = torch.randn(3, 1, 8, 1, 4)
        >>> prism_solver(v, u, p).shape
        torch.Size([3, 1, 8, 1, 4])
    """
    if v.shape != u.shape:
        raise ValueError(f"prism_solver: v.shape={tuple(v.shape)} != u.shape={tuple(u.shape)}")
    if p.dim() != v.dim() + 1 or p.shape[1:] != v.shape:
        raise ValueError(f"prism_solver: p.shape={tuple(p.shape)} must be [L, *v.shape] with v.shape={tuple(v.shape)}")
    if p.shape[0] < 1:
        raise ValueError(f"prism_solver: L = p.shape[0] = {p.shape[0]} must be >= 1")
    r = v - u
    deltas = []
    for l in range(p.shape[0]):
        d = F.gelu(p[l] * r)
        deltas.append(d)
        r = r - d
    return torch.stack(deltas, 0)
