"""Token mixers for the probing models, behind a small registry (name -> constructor).

A mixer maps `x [B, T, D] -> [B, T, D]` causally. Every constructor has the signature
`build(width, heads, device, **kw) -> nn.Module` and the module carries a `backend` string saying
which code computes it (results record it, so a substituted path is always labelled).

| name               | what                                                   | provided by                          |
|--------------------|--------------------------------------------------------|--------------------------------------|
| `transformer`      | causal softmax attention with RoPE                     | here (torch SDPA)                    |
| `linear-attn`      | plain (undecayed) linear attention, elu+1 features     | here, on fla `naive_chunk_linear_attn`|
| `gdn`              | Gated DeltaNet (gated delta rule, rank-1 write)         | here, on fla's op or PRISM's L=1 form |
| `prism`            | PRISM, solver depth L=2                                | `prismbench.kernels.prism.layer`     |
| `gla`              | Gated Linear Attention                                 | `prismbench.baselines.fla_ops.gla`   |
| `ttt-linear`       | TTT-Linear, per-token (mini-batch 1) explicit solver   | `prismbench.baselines.ttt.layer`     |

The three mixers written here share one front end (as the PRISM authors' probes do): a
depthwise causal short convolution and SiLU, then the projections. fla's own `ShortConvolution`
needs Triton on every device, so the convolution is a plain `nn.Conv1d` here.

The TTT layer has no short convolution of its own, so it gets the same front (`_ConvFront`); the
PRISM and GLA layers have theirs. Mixers other engineers provide are imported lazily; when one is missing or cannot run on the
device, its constructor raises `MixerUnavailable` with the reason, and the trainer reports the
run as unavailable (it is never dropped silently).

Example::

    >>> m = build_mixer("transformer", width=16, heads=1, device="cpu")
    >>> m(torch.randn(2, 10, 16)).shape, m.backend
    (torch.Size([2, 10, 16]), 'torch-sdpa')
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class MixerUnavailable(RuntimeError):
    """A mixer cannot be built here (module not written yet, no path for this device, ...)."""


@dataclass(frozen=True)
class MixerEntry:
    name: str
    build: Callable[..., nn.Module]
    description: str


MIXERS: dict[str, MixerEntry] = {}


def register_mixer(name: str, description: str):
    def deco(fn):
        if name in MIXERS:
            raise ValueError(f"mixer {name!r} registered twice")
        MIXERS[name] = MixerEntry(name, fn, description)
        return fn

    return deco


def build_mixer(name: str, width: int, heads: int = 1, device="cpu", **kw) -> nn.Module:
    """Build mixer `name` for model width `width` with `heads` heads on `device`.

    Raises:
        ValueError: unknown name, or width not divisible by heads.
        MixerUnavailable: the mixer exists in the registry but cannot be built here.
    """
    if name not in MIXERS:
        raise ValueError(f"mixer={name!r} is not one of {', '.join(MIXERS)}")
    if width < 1 or heads < 1 or width % heads:
        raise ValueError(f"mixer {name!r}: width={width} must be a positive multiple of heads={heads}")
    mod = MIXERS[name].build(width, heads, torch.device(device), **kw)
    if not isinstance(getattr(mod, "backend", None), str):
        raise TypeError(f"mixer {name!r}: module has no `backend` label")
    return mod.to(device)


# --------------------------------------------------------------------------------------------
# shared pieces


class CausalConv(nn.Module):
    """Depthwise causal convolution over time: `[B, T, D] -> [B, T, D]`."""

    def __init__(self, dim: int, size: int = 4):
        super().__init__()
        self.size = size
        self.conv = nn.Conv1d(dim, dim, size, groups=dim, padding=size - 1)

    def forward(self, x):
        return self.conv(x.transpose(1, 2))[..., : x.shape[1]].transpose(1, 2)


def rope(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding of `x [B, T, H, d]` (d even), rotate-half convention."""
    B, T, H, d = x.shape
    inv = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    ang = torch.arange(T, device=x.device, dtype=torch.float32)[:, None] * inv  # [T, d/2]
    cos, sin = ang.cos()[None, :, None, :].to(x.dtype), ang.sin()[None, :, None, :].to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


class _Front(nn.Module):
    """Short conv + SiLU, then a fused projection split into named `[B, T, H, d]` pieces."""

    def __init__(self, width: int, heads: int, sizes: dict[str, int], conv: int = 4):
        super().__init__()
        self.width, self.heads, self.sizes = width, heads, sizes
        self.conv = CausalConv(width, conv)
        self.proj = nn.Linear(width, sum(sizes.values()), bias=False)

    def forward(self, x):
        B, T, _ = x.shape
        h = F.silu(self.conv(x))
        parts = self.proj(h).split(list(self.sizes.values()), -1)
        return {k: p.view(B, T, self.heads, -1) for k, p in zip(self.sizes, parts)}


# --------------------------------------------------------------------------------------------
# written here


class SoftmaxAttention(nn.Module):
    """Causal softmax attention (torch SDPA) with RoPE on q and k. `[B, T, D] -> [B, T, D]`."""

    backend = "torch-sdpa"

    def __init__(self, width: int, heads: int, conv: int = 4):
        super().__init__()
        self.front = _Front(width, heads, {"q": width, "k": width, "v": width}, conv)
        self.out = nn.Linear(width, width, bias=False)

    def forward(self, x):
        p = self.front(x)
        q, k = rope(p["q"]), rope(p["k"])
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), p["v"].transpose(1, 2), is_causal=True)
        return self.out(o.transpose(1, 2).reshape(x.shape))


class LinearAttention(nn.Module):
    """Plain linear attention: `S_t = S_{t-1} + phi(k_t) v_t^T`, `o_t = S_t^T phi(q_t) / (phi(q_t) . sum phi(k))`,
    phi = elu + 1 (no decay, no delta rule), computed by fla's `naive_chunk_linear_attn`.
    `[B, T, D] -> [B, T, D]`."""

    backend = "fla-naive-chunk-linear-attn"

    def __init__(self, width: int, heads: int, conv: int = 4):
        super().__init__()
        self.front = _Front(width, heads, {"q": width, "k": width, "v": width}, conv)
        self.out = nn.Linear(width, width, bias=False)

    def forward(self, x):
        from fla.ops.linear_attn.naive import naive_chunk_linear_attn

        p = self.front(x)
        T = x.shape[1]
        pad = (-T) % 64  # fla's naive chunk form needs T % 64 == 0; padding at the end is causal-safe
        q, k, v = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (F.elu(p["q"]) + 1, F.elu(p["k"]) + 1, p["v"]))
        o = naive_chunk_linear_attn(q, k, v, normalize=True)[:, :T]
        return self.out(o.reshape(x.shape))


def _gdn_op(device: torch.device, requested: str) -> tuple[Callable, str]:
    """The gated delta rule op for `device`: fla's Triton chunk kernel where its backward runs, else PRISM's
    chunked PyTorch form at L = 1 with the delta given (`prism-torch`: one triangular solve per chunk, the same
    math, exact against fla's token loop); `naive` picks fla's own PyTorch chunk reference instead (a row loop
    per chunk: several times more kernel launches)."""
    from fla.ops.gated_delta_rule.naive import naive_chunk_gated_delta_rule

    from prismbench.kernels.prism.naive import chunk_gated_delta_rule_torch

    def naive(q, k, v, g, beta):
        return naive_chunk_gated_delta_rule(q, k, v, g, beta, chunk_size=32)[0].to(v.dtype)

    def prism_torch(q, k, v, g, beta):
        return chunk_gated_delta_rule_torch(q, k, v, g, beta, chunk_size=64)[0].to(v.dtype)

    if requested == "naive":
        return naive, "fla-naive-chunk-gated-delta-rule"
    if requested == "prism-torch":
        return prism_torch, "prism-torch (L=1, delta given) as gated delta rule"
    if device.type != "cuda":
        if requested == "fla-chunk":
            raise MixerUnavailable(f"gdn: backend='fla-chunk' needs CUDA, device is {device}")
        return prism_torch, "prism-torch (L=1, delta given) as gated delta rule"
    refusal = fla_gdn_refusal(str(device))
    if refusal is not None:
        if requested == "fla-chunk":
            raise MixerUnavailable(f"gdn: fla chunk_gated_delta_rule backward fails here: {refusal[1]}")
        return prism_torch, f"prism-torch (L=1, delta given) as gated delta rule (fla chunk refused: {refusal[0]})"
    return _fla_gdn_chunk, "fla-chunk-gated-delta-rule"


def _fla_gdn_chunk(q, k, v, g, beta):
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    return chunk_gated_delta_rule(q, k, v, g=g, beta=beta)[0]


@functools.lru_cache(maxsize=None)
def fla_gdn_refusal(device: str) -> Optional[tuple[str, str]]:
    """None if fla's chunk gated delta rule runs forward and backward on `device`, else (error type, message).
    Probed once per device and process (fla 0.6.0 refuses the backward on Hopper with Triton >= 3.4, < 3.7.1,
    and the probe's first call compiles and autotunes fla's kernels); the LM stack asks the same question."""
    try:
        t = [torch.randn(1, 64, 1, 16, device=device, requires_grad=True) for _ in range(3)]
        gl = F.logsigmoid(torch.randn(1, 64, 1, device=device)).requires_grad_()
        b = torch.rand(1, 64, 1, device=device).requires_grad_()
        _fla_gdn_chunk(t[0], F.normalize(t[1], dim=-1), t[2], gl, b).sum().backward()
    except Exception as e:  # noqa: BLE001 - any refusal means: use the PyTorch path
        return type(e).__name__, str(e)
    return None


class GatedDeltaNet(nn.Module):
    """Gated DeltaNet mixer: `h_t = a_t (I - b_t k_t k_t^T) h_{t-1} + b_t k_t v_t^T`, `o_t = h_t^T q_t / sqrt(d)`,
    q, k L2-normalised, a_t = sigmoid decay per head, b_t = sigmoid step per head, output RMS-normed
    and SiLU-gated. `[B, T, D] -> [B, T, D]`.

    backend: "auto" (fla's Triton chunk op on CUDA when its backward runs, else PRISM's chunked PyTorch form
    at L = 1), "prism-torch", "naive" (fla's PyTorch chunk reference) or "fla-chunk".
    """

    def __init__(self, width: int, heads: int, device: torch.device, conv: int = 4, backend: str = "auto"):
        super().__init__()
        if backend not in ("auto", "prism-torch", "naive", "fla-chunk"):
            raise ValueError(f"gdn: backend={backend!r} must be 'auto', 'prism-torch', 'naive' or 'fla-chunk'")
        self.heads = heads
        self.front = _Front(width, heads, {"q": width, "k": width, "v": width, "gate": width, "a": heads, "b": heads}, conv)
        self.norm = nn.RMSNorm(width // heads, eps=1e-5)
        self.out = nn.Linear(width, width, bias=False)
        self.op, self.backend = _gdn_op(device, backend)

    def forward(self, x):
        p = self.front(x)
        q, k = F.normalize(p["q"], dim=-1), F.normalize(p["k"], dim=-1)
        g = F.logsigmoid(p["a"][..., 0].float() + 3.0)  # decay starts near 0.95
        beta = torch.sigmoid(p["b"][..., 0])
        o = self.op(q, k, p["v"], g, beta)
        o = self.norm(o) * F.silu(p["gate"])
        return self.out(o.reshape(x.shape))


@register_mixer("transformer", "causal softmax attention with RoPE (torch SDPA)")
def _build_transformer(width, heads, device, conv: int = 4):
    return SoftmaxAttention(width, heads, conv)


@register_mixer("linear-attn", "plain linear attention, elu+1 features, normalised (fla naive chunk op)")
def _build_linear_attn(width, heads, device, conv: int = 4):
    return LinearAttention(width, heads, conv)


@register_mixer("gdn", "Gated DeltaNet (fla gated delta rule op; PyTorch reference where fla's kernel refuses)")
def _build_gdn(width, heads, device, conv: int = 4, backend: str = "auto"):
    return GatedDeltaNet(width, heads, device, conv, backend)


# --------------------------------------------------------------------------------------------
# provided by other areas (lazy)


def _import(module: str, what: str):
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise MixerUnavailable(f"{what}: module {module} is not available ({e})") from e
    return mod


class _TupleOut(nn.Module):
    """Wraps a layer whose forward returns `(y, state)` so that the mixer returns `y`."""

    def __init__(self, layer: nn.Module, backend: str):
        super().__init__()
        self.layer, self.backend = layer, backend

    def forward(self, x):
        y = self.layer(x)
        return y[0] if isinstance(y, tuple) else y


@register_mixer("prism", "PRISM layer, solver depth L=2 (prismbench.kernels.prism.layer)")
def _build_prism(width, heads, device, L: int = 2, conv: int = 4, backend: str = "torch", chunk_size: int = 64):
    """backend: the PRISM layer's "torch" (chunked PyTorch, any device; the default) or "triton"."""
    mod = _import("prismbench.kernels.prism.layer", "prism")
    if backend == "triton" and device.type != "cuda":
        raise MixerUnavailable(f"prism: backend='triton' needs CUDA, device is {device}")
    layer = mod.PRISM(hidden_size=width, num_heads=heads, head_k_dim=width // heads, num_steps=L,
                      conv_size=conv, backend=backend, chunk_size=chunk_size)
    if backend == "triton":
        try:
            mod._load_triton_kernel()
        except RuntimeError as e:
            raise MixerUnavailable(f"prism: {e}") from e
    return _TupleOut(layer, f"prism-layer-{backend} (L={L})")


@register_mixer("gla", "Gated Linear Attention (prismbench.baselines.fla_ops.gla.GLALayer)")
def _build_gla(width, heads, device, conv: int = 4, backend: str = "auto"):
    """backend: "auto" (on CUDA fla's `fused_recurrent_gla`, forward and backward, at every width; fla's naive token
    loop off CUDA), "chunk" (fla's `chunk_gla` for training) or "fused_recurrent".

    Why "auto" does not use `chunk_gla`: at width 16 (one 16-wide head, float32) its first GPU run (H100, Triton
    3.6.0, fla-core 0.6.0) failed with `CUDA error: misaligned address` (every `tl.dot` kernel on its path autotunes
    only tiles wider than the head, BK, BV >= 32, while `fused_recurrent_gla` tiles by 16 and has no `tl.dot`); at
    width 64 its first call autotuned for more than 90 s (2026-12-06), per new head width. The probing tasks are
    128 tokens long, where the chunked form saves nothing, and one kernel at every width keeps the width sweep
    comparable. Same math either way; the record's backend says which ran (results/accuracy/README.md)."""
    if backend not in ("auto", "chunk", "fused_recurrent"):
        raise ValueError(f"gla: backend={backend!r} must be 'auto', 'chunk' or 'fused_recurrent'")
    mod = _import("prismbench.baselines.fla_ops.gla", "gla")
    if device.type != "cuda":
        if backend != "auto":
            raise MixerUnavailable(f"gla: backend={backend!r} needs CUDA, device is {device}")
        return _TupleOut(mod.GLALayer(hidden_size=width, num_heads=heads, conv_size=conv), "fla-naive-recurrent-gla")
    if backend == "auto":
        backend = "fused_recurrent"
    if backend == "chunk":
        # the layer picks chunk_gla while training, fused_recurrent_gla for evaluation at T <= 64 (as fla's layers do)
        layer = mod.GLALayer(hidden_size=width, num_heads=heads, conv_size=conv)
        return _TupleOut(layer, "fla-chunk-gla (train) / fla-fused-recurrent-gla (eval, T<=64)")
    layer = mod.GLALayer(hidden_size=width, num_heads=heads, conv_size=conv, mode="fused_recurrent")
    return _TupleOut(layer, "fla-fused-recurrent-gla")


class _ConvFront(nn.Module):
    """`SiLU(CausalConv(x))` in front of a layer that has no short convolution of its own, so that
    every mixer sees the same local context (the PRISM authors' probes give each mixer one)."""

    def __init__(self, width: int, conv: int, layer: nn.Module, backend: str):
        super().__init__()
        self.conv, self.layer, self.backend = CausalConv(width, conv), layer, backend

    def forward(self, x):
        return self.layer(F.silu(self.conv(x)))


@register_mixer("ttt-linear", "TTT-Linear, per-token (mini-batch 1) explicit solver (prismbench.baselines.ttt.layer)")
def _build_ttt(width, heads, device, conv: int = 4, backend: str = "auto"):
    """backend: "auto" (the fused Triton kernel on CUDA, the PyTorch per-token loop elsewhere),
    "loop", "triton", or the layer's other backends ("fla_chunk" is mini-batch 16: a different model)."""
    mod = _import("prismbench.baselines.ttt.layer", "ttt-linear")
    if backend == "auto":
        backend = "triton" if device.type == "cuda" else "loop"
    if backend not in mod.BACKENDS:
        raise ValueError(f"ttt-linear: backend={backend!r} not in {mod.BACKENDS}")
    if backend in ("triton", "fla_chunk") and device.type != "cuda":
        raise MixerUnavailable(f"ttt-linear: backend={backend!r} needs CUDA, device is {device}")
    layer = mod.TTTLinearLayer(hidden_size=width, num_heads=heads, backend=backend)
    mb = "mini-batch 16" if backend == "fla_chunk" else "mini-batch 1"
    return _ConvFront(width, conv, layer, f"conv{conv}+ttt-layer-{backend} ({mb})")
