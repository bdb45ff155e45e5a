"""A TTT-Linear layer (`nn.Module`): projections, the inner solver chosen by `backend=`, output
norm, gate and output projection (after ttt-lm-pytorch's TTTLinear block; SPEC section 3).

Backends (all compute the math of `naive.py`):
    "loop"        exact TTT-Linear, mini-batch 1, PyTorch per-token loop
    "triton"      exact TTT-Linear, mini-batch 1, fused kernel (`fused.ttt_linear_fused`)
    "fla_chunk"   mini-batch 16 (fla's per-row step), `fla_chunk.ttt_linear_fla_chunk`
    "simplified"  the PRISM authors' variant: q, k, v L2-normalised, RoPE on q and k, one LN shared
                  by the heads (eps 1e-5), position-clamped step, W0 = b0 = 0 at init

Example::

    >>> layer = TTTLinearLayer(hidden_size=128, num_heads=2, backend="loop")
    >>> layer(torch.randn(2, 10, 128)).shape
    torch.Size([2, 10, 128])
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fla_chunk import ttt_linear_fla_chunk
from .naive import EPS_EXACT, EPS_SIMPLIFIED, ttt_linear_loop, ttt_linear_simplified_loop

BACKENDS = ("loop", "triton", "fla_chunk", "simplified")

__all__ = ["TTTLinearLayer", "BACKENDS", "rope_interleaved"]


def rope_interleaved(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary embedding on interleaved pairs (2i, 2i+1) of the last dim, positions 0..T-1.

    Args:
        x: `[B, T, H, D]`, D even.
    Returns:
        `[B, T, H, D]`.
    """
    B, T, H, D = x.shape
    if D % 2:
        raise ValueError(f"rope_interleaved: D={D} must be even")
    pos = torch.arange(T, device=x.device, dtype=torch.float32)[:, None]
    inv = torch.exp(-2 * math.log(base) * torch.arange(D // 2, device=x.device, dtype=torch.float32) / D)
    ang = (pos * inv).repeat_interleave(2, dim=-1)                 # [T, D]
    cos, sin = ang.cos()[None, :, None].to(x.dtype), ang.sin()[None, :, None].to(x.dtype)
    rot = torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).reshape(x.shape)
    return x * cos + rot * sin


class TTTLinearLayer(nn.Module):
    """TTT-Linear token mixer.

    Args:
        hidden_size: model width; must equal num_heads * head_dim.
        num_heads: H.  head_dim: d (default hidden_size // num_heads).
        backend: one of BACKENDS.
        eta_base: base inner learning rate (1.0 for TTT-Linear).
        max_seq_len: positions with a learned step offset ("simplified" only).
        use_gate: GELU(tanh) output gate, as the reference block.

    Shapes: x `[B, T, hidden_size]` -> `[B, T, hidden_size]`.
    """

    def __init__(self, hidden_size: int, num_heads: int, head_dim: int | None = None, backend: str = "loop",
                 eta_base: float = 1.0, max_seq_len: int = 4096, use_gate: bool = True):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"TTTLinearLayer: backend={backend!r} not in {BACKENDS}")
        d = head_dim or hidden_size // num_heads
        if d * num_heads != hidden_size:
            raise ValueError(f"TTTLinearLayer: num_heads*head_dim={num_heads}*{d} != hidden_size={hidden_size}")
        self.hidden_size, self.num_heads, self.head_dim = hidden_size, num_heads, d
        self.backend, self.eta_base, self.max_seq_len = backend, eta_base, max_seq_len
        simplified = backend == "simplified"
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.lr_proj = nn.Linear(hidden_size, num_heads)          # theta_h . x + c_h per head
        ln_shape = (d,) if simplified else (num_heads, d)
        self.ttt_norm_weight = nn.Parameter(torch.ones(ln_shape))
        self.ttt_norm_bias = nn.Parameter(torch.zeros(ln_shape))
        self.W0 = nn.Parameter(torch.zeros(num_heads, d, d) if simplified else 0.02 * torch.randn(num_heads, d, d))
        self.b0 = nn.Parameter(torch.zeros(num_heads, d))
        if simplified:
            self.token_offset = nn.Parameter(torch.zeros(max_seq_len))
        self.post_norm = nn.LayerNorm(hidden_size, eps=1e-6)
        self.g_proj = nn.Linear(hidden_size, hidden_size, bias=False) if use_gate else None
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.hidden_size:
            raise ValueError(f"TTTLinearLayer: x.shape={tuple(x.shape)} must be [B, T, {self.hidden_size}]")
        B, T, _ = x.shape
        H, d = self.num_heads, self.head_dim
        q, k, v = (p(x).view(B, T, H, d) for p in (self.q_proj, self.k_proj, self.v_proj))
        gate = torch.sigmoid(self.lr_proj(x))                    # [B, T, H]
        if self.backend == "simplified":
            if T > self.max_seq_len:
                raise ValueError(f"TTTLinearLayer: T={T} > max_seq_len={self.max_seq_len}")
            q, k, v = (F.normalize(t, dim=-1, eps=1e-6) for t in (q, k, v))
            q, k = rope_interleaved(q), rope_interleaved(k)
            o = ttt_linear_simplified_loop(q, k, v, gate, self.token_offset[:T], self.ttt_norm_weight,
                                           self.ttt_norm_bias, self.W0, self.b0, eps=EPS_SIMPLIFIED,
                                           eta_base=self.eta_base)[0]
        else:
            eta = self.eta_base * gate / d
            args = (q, k, v, eta, self.ttt_norm_weight, self.ttt_norm_bias, self.W0, self.b0)
            if self.backend == "loop":
                o = ttt_linear_loop(*args, eps=EPS_EXACT)[0]
            elif self.backend == "triton":
                from .fused import ttt_linear_fused
                o = ttt_linear_fused(*args, eps=EPS_EXACT)
            else:
                o = ttt_linear_fla_chunk(*args, eps=EPS_EXACT)
        o = self.post_norm(o.reshape(B, T, H * d))
        if self.g_proj is not None:
            o = F.gelu(self.g_proj(x), approximate="tanh") * o
        return self.o_proj(o)
