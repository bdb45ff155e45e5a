"""Causal softmax attention through `torch.nn.functional.scaled_dot_product_attention` (the Transformer peer).

    o_t = sum_{i <= t} softmax_i(scale * q_t . k_i) v_i,    scale = K**-0.5

Inputs use fla's layout `[B, T, H, *]` and are transposed to SDPA's `[B, H, T, *]`. PyTorch picks the
backend (flash / memory-efficient on cuda for bf16/fp16; the math backend for float64, which keeps
float64 on the CPU and on cuda, so `sdpa` in float64 is its own reference). The float64 math backend
materialises B*H*T*T scores: see `SDPA_REF_MAX_TOKENS` in methods.py.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from prismbench.registry import Inputs, Shape


def make_sdpa_inputs(shape: Shape, seed: int) -> Inputs:
    """Random attention inputs: q, k `[B, T, H, K]`, v `[B, T, H, V]` (standard normal, require grad).

    Example::

        >>> s = Shape(B=2, T=9, H=3, K=8, V=4, L=1, dtype=torch.float32, device=torch.device("cpu"))
        >>> make_sdpa_inputs(s, 0)["v"].shape
        torch.Size([2, 9, 3, 4])
    """
    B, T, H, K, V = shape.B, shape.T, shape.H, shape.K, shape.V
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = {
        "q": torch.randn(B, T, H, K, generator=gen),
        "k": torch.randn(B, T, H, K, generator=gen),
        "v": torch.randn(B, T, H, V, generator=gen),
    }
    return {n: t.to(device=shape.device, dtype=shape.dtype).requires_grad_(True) for n, t in x.items()}


def kv_cache_size(shape: Shape) -> int:
    """Floats in the KV cache of one sequence at length T: H * T * (K + V) (= 2*H*T*K when K = V)."""
    return shape.H * shape.T * (shape.K + shape.V)


def sdpa_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None) -> torch.Tensor:
    """Causal SDPA on `[B, T, H, *]` tensors.

    Args:
        q, k: `[B, T, H, K]`; v: `[B, T, H, V]`; scale: default K**-0.5.

    Returns:
        o: `[B, T, H, V]`.

    Example::

        >>> q = k = torch.randn(1, 6, 2, 4); v = torch.randn(1, 6, 2, 3)
        >>> sdpa_causal(q, k, v).shape
        torch.Size([1, 6, 2, 3])
    """
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f"sdpa_causal: q, k must be [B, T, H, K] and equal, got q.shape={tuple(q.shape)}, "
                         f"k.shape={tuple(k.shape)}")
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"sdpa_causal: v must be [B, T, H, V] with B, T, H of q={tuple(q.shape)}, got v.shape={tuple(v.shape)}")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                       is_causal=True, scale=scale)
    return o.transpose(1, 2)
