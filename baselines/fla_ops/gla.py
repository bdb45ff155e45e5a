"""Gated linear attention (GLA) through fla-core: ops, input builder, float64 reference and a thin layer.

Recurrence per head (state `h` is K x V, fla's column convention), per-channel decay `gk <= 0`:

    h_t = diag(exp(gk_t)) h_{t-1} + k_t v_t^T,        o_t = h_t^T (scale * q_t),  scale = K**-0.5

Backends:
    `gla_chunk`      fla `chunk_gla` (Triton, training; cuda only)
    `gla_recurrent`  fla `fused_recurrent_gla` (Triton, decoding-style token loop; cuda only)
    `gla_naive`      fla `fla.ops.gla.naive.naive_recurrent_gla` (pure PyTorch, any device)

Precision note: fla's `naive_recurrent_gla` casts every input to float32 and keeps its state in
float32, whatever the input dtype, and always uses scale = K**-0.5. A float64 call of it is
therefore a float32 computation. `gla_naive` keeps fla's naive for every dtype except float64,
where it runs `gla_recurrent_fp64`, a float64 token loop of the same recurrence (checked against
fla's naive in tests/baselines/test_fla_ops.py), so that the harness's float64 reference is float64.

Decay dtype: fla's chunk ops accumulate `gk` in float32 (`chunk_local_cumsum(..., output_dtype=float)`)
whatever its dtype; `make_gla_inputs` keeps `gk` in float32 (as PRISM keeps `g`) unless the shape's
dtype is float64.
"""
from __future__ import annotations

from typing import Literal, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from prismbench.inputs import as_leaves, seeded_normal
from prismbench.registry import Inputs, Shape

GATE_LOGIT_NORMALIZER = 16.0  # fla's GLA layer default: gk = logsigmoid(.) / 16, so alpha ~ 0.95..1


def _check_qkvg(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gk: torch.Tensor, who: str) -> None:
    if q.dim() != 4:
        raise ValueError(f"{who}: q must be [B, T, H, K], got q.shape={tuple(q.shape)}")
    if k.shape != q.shape:
        raise ValueError(f"{who}: k.shape={tuple(k.shape)} must equal q.shape={tuple(q.shape)}")
    if gk.shape != q.shape:
        raise ValueError(f"{who}: gk.shape={tuple(gk.shape)} must equal q.shape={tuple(q.shape)} (per-channel decay)")
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"{who}: v must be [B, T, H, V] with B, T, H of q={tuple(q.shape)}, got v.shape={tuple(v.shape)}")


def make_gla_inputs(shape: Shape, seed: int) -> Inputs:
    """Random valid GLA kernel inputs for `shape` (all leaves require grad; `shape.L` is ignored).

    q, k [B, T, H, K] (standard normal; GLA does not normalise keys); v [B, T, H, V];
    gk [B, T, H, K] = logsigmoid(N(0, 1)) / 16 <= 0 (fla's layer normaliser: alpha in ~(0.9, 1)),
    kept in float32 (float64 when shape.dtype is float64).

    Example::

        >>> s = Shape(B=2, T=10, H=3, K=8, V=6, L=1, dtype=torch.float32, device=torch.device("cpu"))
        >>> make_gla_inputs(s, seed=0)["gk"].shape
        torch.Size([2, 10, 3, 8])
    """
    B, T, H, K, V = shape.B, shape.T, shape.H, shape.K, shape.V
    rnd = seeded_normal(seed)

    x = {
        "q": rnd(B, T, H, K),
        "k": rnd(B, T, H, K),
        "v": rnd(B, T, H, V),
        "gk": F.logsigmoid(rnd(B, T, H, K)) / GATE_LOGIT_NORMALIZER,
    }
    return as_leaves(x, shape, keep_fp32=("gk",))


def gla_state_size(shape: Shape) -> int:
    """Floats of recurrent state per sequence: H * K * V."""
    return shape.H * shape.K * shape.V


def gla_recurrent_fp64(q, k, v, gk, scale: Optional[float] = None, initial_state: Optional[torch.Tensor] = None,
                       output_final_state: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Token-loop GLA in q's dtype (used for float64, where fla's naive would drop to float32).

    Args:
        q, k: `[B, T, H, K]`; v: `[B, T, H, V]`; gk: `[B, T, H, K]` log decays (<= 0).
        scale: query scale, default K**-0.5. initial_state: `[B, H, K, V]` or None (zeros).

    Returns:
        (o `[B, T, H, V]` in q's dtype, final state `[B, H, K, V]` or None), as fla's ops.

    Example::

        >>> q, k, gk = torch.randn(3, 1, 5, 2, 4, dtype=torch.float64).unbind(0); v = torch.randn(1, 5, 2, 3, dtype=torch.float64)
        >>> gla_recurrent_fp64(q, k, v, -gk.abs())[0].shape
        torch.Size([1, 5, 2, 3])
    """
    _check_qkvg(q, k, v, gk, "gla_recurrent_fp64")
    dt = q.dtype
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    q, k, v, gk = (x.to(dt).transpose(1, 2) for x in (q, k, v, gk))  # [B, H, T, *]
    h = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dt)
    outs = []
    for t in range(T):
        h = h * gk[:, :, t, :, None].exp() + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, :, t] * scale, h))
    return torch.stack(outs, 2).transpose(1, 2), (h if output_final_state else None)


GLAMode = Literal["chunk", "fused_recurrent", "naive"]
GLA_MODES: tuple[str, ...] = ("chunk", "fused_recurrent", "naive")


def gla(q, k, v, gk, mode: GLAMode = "naive", scale: Optional[float] = None,
        initial_state: Optional[torch.Tensor] = None,
        output_final_state: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """GLA through the fla op named by `mode`, fla-style return.

    Args:
        q, k, gk: `[B, T, H, K]`; v: `[B, T, H, V]`; mode: "chunk" (fla chunk_gla, cuda),
            "fused_recurrent" (fla fused_recurrent_gla, cuda) or "naive" (fla naive_recurrent_gla, any
            device; float64 inputs run `gla_recurrent_fp64`); scale: default K**-0.5;
            initial_state: `[B, H, K, V]` (float32 for the fla ops) or None.

    Returns:
        (o `[B, T, H, V]` in q's dtype, final state `[B, H, K, V]` (float32 except the float64 path) or None).

    Example::

        >>> o, ht = gla(q, k, v, gk, mode="chunk", output_final_state=True)   # cuda
    """
    _check_qkvg(q, k, v, gk, "gla")
    K = q.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    if initial_state is not None and initial_state.shape != (q.shape[0], q.shape[2], K, v.shape[-1]):
        raise ValueError(f"gla: initial_state must be [B, H, K, V]={(q.shape[0], q.shape[2], K, v.shape[-1])}, "
                         f"got initial_state.shape={tuple(initial_state.shape)}")
    if mode == "chunk":
        from fla.ops.gla import chunk_gla

        h0 = None if initial_state is None else initial_state.float()
        return chunk_gla(q, k, v, gk, scale=scale, initial_state=h0, output_final_state=output_final_state)
    if mode == "fused_recurrent":
        from fla.ops.gla import fused_recurrent_gla

        return fused_recurrent_gla(q, k, v, gk=gk, scale=scale, initial_state=initial_state,
                                   output_final_state=output_final_state)
    if mode == "naive":
        from fla.ops.gla.naive import naive_recurrent_gla

        if q.dtype == torch.float64:
            return gla_recurrent_fp64(q, k, v, gk, scale=scale, initial_state=initial_state,
                                      output_final_state=output_final_state)
        if scale != K ** -0.5:  # fla's naive hard-codes K**-0.5
            q = q * (scale / K ** -0.5)
        return naive_recurrent_gla(q, k, v, gk, initial_state=initial_state, output_final_state=output_final_state)
    raise ValueError(f"gla: mode={mode!r} is not one of {GLA_MODES}")


def gla_chunk(q, k, v, gk, scale: Optional[float] = None) -> torch.Tensor:
    """fla `chunk_gla` (cuda). q, k, gk `[B, T, H, K]`, v `[B, T, H, V]` -> o `[B, T, H, V]`.

    scale defaults to K**-0.5 (fla's default too; passed explicitly).

    Example::

        >>> o = gla_chunk(q, k, v, gk)   # q on cuda, bf16; gk float32
    """
    return gla(q, k, v, gk, mode="chunk", scale=scale)[0]


def gla_recurrent(q, k, v, gk, scale: Optional[float] = None) -> torch.Tensor:
    """fla `fused_recurrent_gla` (cuda). q, k, gk `[B, T, H, K]`, v `[B, T, H, V]` -> o `[B, T, H, V]`.

    Example::

        >>> o = gla_recurrent(q, k, v, gk)   # q on cuda, bf16; gk float32
    """
    return gla(q, k, v, gk, mode="fused_recurrent", scale=scale)[0]


def gla_naive(q, k, v, gk, scale: Optional[float] = None) -> torch.Tensor:
    """fla's pure-PyTorch GLA (`naive_recurrent_gla`); float64 inputs go to `gla_recurrent_fp64`.

    q, k, gk `[B, T, H, K]`, v `[B, T, H, V]` -> o `[B, T, H, V]` in q's dtype. fla's naive hard-codes
    scale = K**-0.5; another scale is applied by pre-multiplying q.

    Example::

        >>> o = gla_naive(q, k, v, gk)   # any device
    """
    return gla(q, k, v, gk, mode="naive", scale=scale)[0]


class GLAState(NamedTuple):
    """GLA layer state carried between calls: recurrent `[B, H, K, V]`, conv `[B, conv_size - 1, D]`."""

    recurrent: torch.Tensor
    conv: torch.Tensor


class GLALayer(nn.Module):
    """A thin gated-linear-attention layer with the PRISM layer's outer structure (SPEC section 1,
    `prismbench.kernels.prism.layer.PRISM`):

        u  = SiLU(ShortConv(x))                      anchor, causal depthwise conv of width conv_size
        q  = W_q u, k = W_k u                        [B, T, H, K]
        v  = W_v u                                   [B, T, H, V]
        gk = logsigmoid(W_a2 W_a1 u) / 16            [B, T, H, K] per-channel log decay (low-rank map, fla's GLA)
        o  = GLA recurrence (fla op by `mode`)       [B, T, H, V]
        y  = W_o (RMSNorm(o) * SiLU(W_g x))          [B, T, D]

    Args:
        hidden_size: D. num_heads: H. head_k_dim / head_v_dim: K / V (None: D / H).
        conv_size: short convolution width. conv_bias: its bias.
        mode: "chunk", "fused_recurrent", "naive" or None, which picks "naive" off cuda, and on cuda
            "fused_recurrent" when not training and T <= 64, else "chunk" (as fla's layers do).
        use_gate: output gate SiLU(W_g x). gate_low_rank_dim: rank of the decay map (fla: 16).

    `forward(x [B, T, D], initial_state=None, output_final_state=False) -> (y [B, T, D], GLAState or None)`.

    Example::

        >>> layer = GLALayer(hidden_size=64, num_heads=4)
        >>> y, state = layer(torch.randn(2, 10, 64), output_final_state=True)
        >>> y.shape, state.recurrent.shape
        (torch.Size([2, 10, 64]), torch.Size([2, 4, 16, 16]))
    """

    def __init__(self, hidden_size: int, num_heads: int, head_k_dim: Optional[int] = None,
                 head_v_dim: Optional[int] = None, conv_size: int = 4, conv_bias: bool = False,
                 mode: Optional[GLAMode] = None, use_gate: bool = True, gate_low_rank_dim: int = 16,
                 norm_eps: float = 1e-5):
        super().__init__()
        for name, val in (("hidden_size", hidden_size), ("num_heads", num_heads), ("conv_size", conv_size),
                          ("gate_low_rank_dim", gate_low_rank_dim)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"GLALayer: {name} must be an int >= 1, got {name}={val!r}")
        if (head_k_dim is None or head_v_dim is None) and hidden_size % num_heads:
            raise ValueError(f"GLALayer: hidden_size={hidden_size} is not divisible by num_heads={num_heads} "
                             f"(give head_k_dim and head_v_dim)")
        if mode is not None and mode not in GLA_MODES:
            raise ValueError(f"GLALayer: mode={mode!r} is not one of None, {GLA_MODES}")
        D, H = hidden_size, num_heads
        K = head_k_dim or D // H
        V = head_v_dim or D // H
        self.hidden_size, self.num_heads, self.head_k_dim, self.head_v_dim = D, H, K, V
        self.conv_size, self.mode = conv_size, mode
        self.conv = nn.Conv1d(D, D, conv_size, groups=D, bias=conv_bias)  # applied causally
        self.q_proj = nn.Linear(D, H * K, bias=False)
        self.k_proj = nn.Linear(D, H * K, bias=False)
        self.v_proj = nn.Linear(D, H * V, bias=False)
        self.gk_proj = nn.Sequential(nn.Linear(D, gate_low_rank_dim, bias=False),
                                     nn.Linear(gate_low_rank_dim, H * K, bias=True))
        self.o_norm = nn.RMSNorm(V, eps=norm_eps)
        self.g_proj = nn.Linear(D, H * V, bias=False) if use_gate else None
        self.o_proj = nn.Linear(H * V, D, bias=False)

    def state_size(self, sequence_length: int = 0) -> int:
        """Floats of recurrent state per sequence: H*K*V + (conv_size-1)*D."""
        return self.num_heads * self.head_k_dim * self.head_v_dim + (self.conv_size - 1) * self.hidden_size

    def _pick_mode(self, x: torch.Tensor) -> GLAMode:
        if self.mode is not None:
            return self.mode
        if x.device.type != "cuda":
            return "naive"
        return "fused_recurrent" if (not self.training and x.shape[1] <= 64) else "chunk"

    def forward(self, x: torch.Tensor, initial_state: Optional[GLAState] = None,
                output_final_state: bool = False) -> tuple[torch.Tensor, Optional[GLAState]]:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.hidden_size:
            shp = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"GLALayer: x must be [B, T, D] with D = {self.hidden_size}, got x.shape={shp}")
        B, T, D = x.shape
        H, K, V, W = self.num_heads, self.head_k_dim, self.head_v_dim, self.conv_size
        recurrent, conv_state = (None, None) if initial_state is None else initial_state
        if conv_state is not None and conv_state.shape != (B, W - 1, D):
            raise ValueError(f"GLALayer: initial_state.conv must be [B, conv_size-1, D]={(B, W - 1, D)}, "
                             f"got shape {tuple(conv_state.shape)}")
        if conv_state is None:
            conv_state = x.new_zeros(B, W - 1, D)
        xx = torch.cat([conv_state.to(x.dtype), x], 1)                    # [B, W-1+T, D]
        u = F.silu(self.conv(xx.transpose(1, 2)).transpose(1, 2))       # anchor [B, T, D]
        new_conv = xx[:, xx.shape[1] - (W - 1):]
        q = self.q_proj(u).view(B, T, H, K)
        k = self.k_proj(u).view(B, T, H, K)
        v = self.v_proj(u).view(B, T, H, V)
        a = self.gk_proj(u)
        gk = (F.logsigmoid(a.to(torch.promote_types(a.dtype, torch.float32))) / GATE_LOGIT_NORMALIZER).view(B, T, H, K)
        o, h = gla(q, k, v, gk, mode=self._pick_mode(x), initial_state=recurrent,
                   output_final_state=output_final_state)
        o = self.o_norm(o.to(x.dtype))                                   # [B, T, H, V]
        if self.g_proj is not None:
            o = o * F.silu(self.g_proj(x).view(B, T, H, V))
        y = self.o_proj(o.reshape(B, T, H * V))
        return y, (GLAState(h, new_conv) if output_final_state else None)
