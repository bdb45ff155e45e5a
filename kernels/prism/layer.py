"""The PRISM layer (SPEC section 1): short-conv anchor, token-local projections, unrolled solver,
the PRISM recurrence through a chosen backend, output norm, gate and projection.

    u     = SiLU(ShortConv(x))                         anchor, causal depthwise conv of width conv_size
    q     = W_q u                                      [B, T, H, K]
    v     = W_v u                                      [B, T, H, V]
    g     = log sigmoid(W_a u)                         [B, T, H]      (log alpha, one decay per head)
    k_l   = L2norm(W_k,l u)                            [L, B, T, H, K]
    p_l   = W_p,l u                                    [L, B, T, H, V] (solver gains)
    beta_l = sigmoid(W_b,l u)                          [L, B, T, H]
    r1    = v - (u's head slice)                       residual seed; delta = prism_solver(v, u_h, p)
    o     = PRISM recurrence (backend)                 [B, T, H, V]
    y     = W_o (RMSNorm(o) * SiLU(W_g x))             [B, T, D]

The anchor's per-head slice must have width V: when `hidden_size == num_heads * head_v_dim` it is
`u` itself split into heads; otherwise a linear map `seed_proj` (D -> H*V) of `u` gives it.

Example::

    >>> layer = PRISM(PRISMConfig(hidden_size=64, num_heads=2, head_k_dim=16, num_steps=2))
    >>> y, state = layer(torch.randn(3, 10, 64), output_final_state=True)
    >>> y.shape, state.recurrent.shape, state.conv.shape
    (torch.Size([3, 10, 64]), torch.Size([3, 2, 16, 32]), torch.Size([3, 3, 64]))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from prismbench.kernels.prism.naive import chunk_prism_torch, naive_recurrent_prism

Backend = Literal["reference", "torch", "triton"]
BACKENDS: tuple[str, ...] = ("reference", "torch", "triton")


@dataclass
class PRISMConfig:
    """Configuration of one PRISM layer.

    Attributes:
        hidden_size: model width D (input and output of the layer).
        num_heads: heads H.
        head_k_dim: key / query width K per head (state rows).
        head_v_dim: value width V per head (state columns); None means `hidden_size // num_heads`.
        num_steps: solver depth L (number of keys, gains and step sizes per token; the paper uses 2-4).
        conv_size: width w of the causal depthwise short convolution of the anchor (paper: 4-5).
        conv_bias: whether the short convolution has a bias.
        backend: recurrence backend, "reference" (token loop), "torch" (chunked PyTorch) or
            "triton" (`prismbench.kernels.prism.chunk.chunk_prism`, once it exists).
        chunk_size: chunk length C of the "torch" backend.
        use_gate: multiply the normed output by SiLU(W_g x).
        norm_eps: epsilon of the per-head output RMSNorm.
        decay_init: (alpha_min, alpha_max): each head's decay bias is initialised so that
            sigmoid(bias) is uniform in this range (alpha near 1 is a long memory).
    """

    hidden_size: int = 512
    num_heads: int = 8
    head_k_dim: int = 64
    head_v_dim: Optional[int] = None
    num_steps: int = 2
    conv_size: int = 4
    conv_bias: bool = False
    backend: Backend = "torch"
    chunk_size: int = 64
    use_gate: bool = True
    norm_eps: float = 1e-5
    decay_init: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self):
        for name in ("hidden_size", "num_heads", "head_k_dim", "num_steps", "conv_size", "chunk_size"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"PRISMConfig.{name} must be an int >= 1, got {name}={val!r}")
        if self.head_v_dim is None:
            if self.hidden_size % self.num_heads:
                raise ValueError(
                    f"PRISMConfig.head_v_dim=None needs hidden_size divisible by num_heads, got "
                    f"hidden_size={self.hidden_size}, num_heads={self.num_heads}"
                )
            self.head_v_dim = self.hidden_size // self.num_heads
        elif isinstance(self.head_v_dim, bool) or not isinstance(self.head_v_dim, int) or self.head_v_dim < 1:
            raise ValueError(f"PRISMConfig.head_v_dim must be an int >= 1 or None, got head_v_dim={self.head_v_dim!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"PRISMConfig.backend must be one of {BACKENDS}, got backend={self.backend!r}")
        if not (self.norm_eps > 0):
            raise ValueError(f"PRISMConfig.norm_eps must be > 0, got norm_eps={self.norm_eps!r}")
        lo, hi = self.decay_init
        if not (0 < lo <= hi < 1):
            raise ValueError(f"PRISMConfig.decay_init must satisfy 0 < min <= max < 1, got decay_init={self.decay_init!r}")


class PRISMState(NamedTuple):
    """Layer state carried between calls.

    recurrent: `[B, H, K, V]`, the PRISM state h.
    conv: `[B, conv_size - 1, D]`, the last conv_size - 1 inputs of the short convolution.
    """

    recurrent: torch.Tensor
    conv: torch.Tensor


def _load_triton_kernel():
    try:
        from prismbench.kernels.prism.chunk import chunk_prism
    except ImportError as e:
        raise RuntimeError(
            "PRISM backend='triton' needs prismbench.kernels.prism.chunk.chunk_prism, which is not "
            f"available ({type(e).__name__}: {e}); use backend='torch'"
        ) from e
    return chunk_prism


class PRISM(nn.Module):
    """PRISM token mixer: `forward(x [B, T, D]) -> (y [B, T, D], PRISMState or None)`.

    Args:
        config: a `PRISMConfig`; keyword arguments override its fields (or build one without it).

    Example::

        >>> layer = PRISM(hidden_size=64, num_heads=4, num_steps=3, backend="torch")
        >>> x = torch.randn(2, 20, 64)
        >>> y1, s = layer(x[:, :12], output_final_state=True)
        >>> y2, _ = layer(x[:, 12:], initial_state=s)
        >>> torch.allclose(torch.cat([y1, y2], 1), layer(x)[0], atol=1e-5)
        True
    """

    def __init__(self, config: Optional[PRISMConfig] = None, **overrides):
        super().__init__()
        if config is None:
            config = PRISMConfig(**overrides)
        elif overrides:
            fields = {f: getattr(config, f) for f in config.__dataclass_fields__}
            fields.update(overrides)
            config = PRISMConfig(**fields)
        self.config = config
        D, H, K, V, L = config.hidden_size, config.num_heads, config.head_k_dim, config.head_v_dim, config.num_steps
        self.hidden_size, self.num_heads, self.head_k_dim, self.head_v_dim, self.num_steps = D, H, K, V, L
        self.backend: str = config.backend
        self.conv = nn.Conv1d(D, D, config.conv_size, groups=D, bias=config.conv_bias)  # applied causally
        self.seed_proj = nn.Identity() if D == H * V else nn.Linear(D, H * V, bias=False)
        self.q_proj = nn.Linear(D, H * K, bias=False)
        self.v_proj = nn.Linear(D, H * V, bias=False)
        self.a_proj = nn.Linear(D, H, bias=True)
        self.k_proj = nn.Linear(D, L * H * K, bias=False)
        self.p_proj = nn.Linear(D, L * H * V, bias=False)
        self.b_proj = nn.Linear(D, L * H, bias=True)
        self.o_norm = nn.RMSNorm(V, eps=config.norm_eps)
        self.g_proj = nn.Linear(D, H * V, bias=False) if config.use_gate else None
        self.o_proj = nn.Linear(H * V, D, bias=False)
        self._init_decay()

    @torch.no_grad()
    def _init_decay(self):
        lo, hi = self.config.decay_init
        alpha = torch.rand(self.num_heads) * (hi - lo) + lo
        self.a_proj.bias.copy_(torch.log(alpha) - torch.log1p(-alpha))  # logit(alpha)

    def extra_repr(self) -> str:
        c = self.config
        return (f"hidden_size={c.hidden_size}, num_heads={c.num_heads}, K={c.head_k_dim}, V={c.head_v_dim}, "
                f"L={c.num_steps}, conv_size={c.conv_size}, backend={self.backend!r}")

    def state_size(self, sequence_length: int = 0) -> int:
        """Floats of recurrent state per sequence (independent of the sequence length): H*K*V + (w-1)*D."""
        return self.num_heads * self.head_k_dim * self.head_v_dim + (self.config.conv_size - 1) * self.hidden_size

    def _recurrence(self, backend: str):
        if backend == "reference":
            return naive_recurrent_prism
        if backend == "torch":
            C = self.config.chunk_size
            return lambda *a, **kw: chunk_prism_torch(*a, chunk_size=C, **kw)
        if backend == "triton":
            return _load_triton_kernel()
        raise ValueError(f"backend must be one of {BACKENDS}, got backend={backend!r}")

    def forward(
        self,
        x: torch.Tensor,
        initial_state: Optional[Union[PRISMState, tuple, torch.Tensor]] = None,
        output_final_state: bool = False,
        backend: Optional[str] = None,
    ) -> tuple[torch.Tensor, Optional[PRISMState]]:
        """Run the layer.

        Args:
            x: `[B, T, D]`.
            initial_state: a `PRISMState` (recurrent `[B, H, K, V]`, conv `[B, conv_size-1, D]`) from a
                previous call, or a bare recurrent state `[B, H, K, V]` (conv history zero); None: zeros.
            output_final_state: also return the `PRISMState` after the last token.
            backend: override `self.backend` for this call ("reference", "torch", "triton").

        Returns:
            y: `[B, T, D]`.
            final_state: `PRISMState` or None.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.hidden_size:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be [B, T, D] with D = hidden_size = {self.hidden_size}, got x.shape={shape}")
        B, T, D = x.shape
        if T < 1:
            raise ValueError(f"x: T = x.shape[1] = {T} must be >= 1")
        H, K, V, L = self.num_heads, self.head_k_dim, self.head_v_dim, self.num_steps
        W = self.config.conv_size
        recurrent, conv_state = None, None
        if isinstance(initial_state, torch.Tensor):
            recurrent = initial_state
        elif initial_state is not None:
            if len(initial_state) != 2:
                raise ValueError(f"initial_state must be a PRISMState (recurrent, conv) or a tensor, got {len(initial_state)} items")
            recurrent, conv_state = initial_state
        if conv_state is not None and conv_state.shape != (B, W - 1, D):
            raise ValueError(
                f"initial_state.conv must be [B, conv_size-1, D] = {(B, W - 1, D)}, got shape {tuple(conv_state.shape)}"
            )
        kernel = self._recurrence(backend or self.backend)

        # anchor: causal depthwise conv over [history, x], then SiLU
        if conv_state is None:
            conv_state = x.new_zeros(B, W - 1, D)
        xx = torch.cat([conv_state.to(x.dtype), x], 1)                     # [B, W-1+T, D]
        u = F.silu(self.conv(xx.transpose(1, 2)).transpose(1, 2))        # [B, T, D]
        new_conv = xx[:, xx.shape[1] - (W - 1):]                          # [B, W-1, D]

        seed = self.seed_proj(u).view(B, T, H, V)
        q = self.q_proj(u).view(B, T, H, K)
        v = self.v_proj(u).view(B, T, H, V)
        a = self.a_proj(u)
        g = F.logsigmoid(a.to(torch.promote_types(a.dtype, torch.float32)))  # [B, T, H], float32 at least
        k = F.normalize(self.k_proj(u).view(B, T, L, H, K), dim=-1).permute(2, 0, 1, 3, 4).contiguous()
        p = self.p_proj(u).view(B, T, L, H, V).permute(2, 0, 1, 3, 4).contiguous()
        beta = torch.sigmoid(self.b_proj(u)).view(B, T, L, H).permute(2, 0, 1, 3).contiguous()

        # one dtype for the recurrence's inputs (g excepted: float32 at least): under autocast F.normalize and
        # sigmoid return float32 while the projections return bf16, and the kernels take a single dtype
        k, v, seed, p, beta = (t.to(q.dtype) for t in (k, v, seed, p, beta))
        o, h = kernel(q, k, v, seed, p, beta, g, initial_state=recurrent, output_final_state=output_final_state)
        o = self.o_norm(o.to(x.dtype))                                    # [B, T, H, V]
        if self.g_proj is not None:
            o = o * F.silu(self.g_proj(x).view(B, T, H, V))
        y = self.o_proj(o.reshape(B, T, H * V))
        return y, (PRISMState(h, new_conv) if output_final_state else None)
