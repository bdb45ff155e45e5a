"""Gated DeltaNet (GDN) and Gated DeltaProduct (GDP) through fla-core, with float64 references.

Gated delta product with n Householder steps per token (GDN is n = 1; PRISM at L = 1 is GDN with
v := delta^(1), SPEC section 1). Per head, state `h` K x V:

    h <- exp(g_t) h;   for j = 1..n:  h <- h + beta_tj k_tj (v_tj - h^T k_tj)^T;   o_t = h^T (scale * q_t)

Layouts (fla's): q `[B, T, H, K]`, g `[B, T, H]` (log decay <= 0, one per token), and the per-step
tensors interleaved per token: k `[B, T*n, H, K]`, v `[B, T*n, H, V]`, beta `[B, T*n, H]`, step j of
token t at index t*n + j. With n = 1 these are GDN's `[B, T, H, *]` tensors, so both methods share
one input builder and one float64 reference.

fla facts (0.6.0), checked in its source:
- `chunk_gated_delta_rule` and `chunk_gated_delta_product` both take `g` in log space and accumulate
  it in float32 (`chunk_local_cumsum(..., output_dtype=float)`); we keep g float32.
- `chunk_gated_delta_product` asserts q.dtype != float32 (bf16/fp16 only).
- Both backward passes call `fla.ops.common.chunk_o.chunk_bwd_dqkwg`, which raises
  `RuntimeError("Triton >= 3.4.0 and < 3.7.1 on Hopper GPUs produces incorrect results ... (see #640) ...")`
  on Hopper with those Tritons (unless the optional tilelang backend takes over). `gdn_chunk` and
  `gdp_chunk` turn exactly that error into `prismbench.registry.Unsupported` (raised from the backward
  pass); every other error propagates.
- fla's naive references (`naive_recurrent_gated_delta_rule`, `naive_recurrent_gated_delta_product`)
  compute in float32 whatever the input dtype (the former also returns float32). For float64 inputs
  `gdp_naive` therefore runs `gated_delta_product_fp64`, a float64 token loop of the same recurrence
  (checked against both fla naives in the tests).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from prismbench.inputs import as_leaves, seeded_normal
from prismbench.registry import Inputs, Shape, Unsupported

# substring of fla's refusal message in chunk_bwd_dqkwg (fla issue 640)
FLA_HOPPER_REFUSAL = "on Hopper GPUs produces incorrect results"


def make_gdp_inputs(shape: Shape, seed: int, n: Optional[int] = None) -> Inputs:
    """Random valid gated-delta-product inputs with n = `n` (default shape.L) steps per token.

    q [B, T, H, K]; k [B, T*n, H, K] (L2-normalised); v [B, T*n, H, V]; beta [B, T*n, H] in (0, 1);
    g [B, T, H] = logsigmoid(N(0,1) + 2) <= 0 (alpha in ~(0.6, 1), as PRISM's inputs), float32
    (float64 when shape.dtype is float64). All leaves require grad.

    Example::

        >>> s = Shape(B=1, T=5, H=2, K=8, V=8, L=3, dtype=torch.bfloat16, device=torch.device("cpu"))
        >>> make_gdp_inputs(s, 0)["k"].shape
        torch.Size([1, 15, 2, 8])
    """
    n = shape.L if n is None else n
    if n is None or n < 1:
        raise ValueError(f"make_gdp_inputs: n (Householder steps, = shape.L) must be >= 1, got {n}")
    B, T, H, K, V = shape.B, shape.T, shape.H, shape.K, shape.V
    rnd = seeded_normal(seed)

    x = {
        "q": rnd(B, T, H, K),
        "k": F.normalize(rnd(B, T * n, H, K), dim=-1),
        "v": rnd(B, T * n, H, V),
        "beta": torch.sigmoid(rnd(B, T * n, H)),
        "g": F.logsigmoid(rnd(B, T, H) + 2.0),
    }
    return as_leaves(x, shape, keep_fp32=("g",))


def make_gdn_inputs(shape: Shape, seed: int) -> Inputs:
    """Gated DeltaNet inputs: `make_gdp_inputs` with n = 1 (shape.L ignored).

    q, k [B, T, H, K] (k L2-normalised); v [B, T, H, V]; beta [B, T, H] in (0, 1); g [B, T, H] <= 0.

    Example::

        >>> make_gdn_inputs(shape, seed=0)["k"].shape   # [B, T, H, K]
    """
    return make_gdp_inputs(shape, seed, n=1)


def delta_state_size(shape: Shape) -> int:
    """Floats of recurrent state per sequence: H * K * V."""
    return shape.H * shape.K * shape.V


def _householder_steps(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                       g: torch.Tensor, who: str) -> int:
    """Validates the GDP layout and returns n."""
    if q.dim() != 4:
        raise ValueError(f"{who}: q must be [B, T, H, K], got q.shape={tuple(q.shape)}")
    B, T, H, K = q.shape
    if k.dim() != 4 or k.shape[0] != B or k.shape[2:] != (H, K) or k.shape[1] % T:
        raise ValueError(f"{who}: k must be [B, T*n, H, K] with q.shape={tuple(q.shape)}, got k.shape={tuple(k.shape)}")
    n = k.shape[1] // T
    if v.dim() != 4 or v.shape[:3] != k.shape[:3]:
        raise ValueError(f"{who}: v must be [B, T*n, H, V] with k.shape={tuple(k.shape)}, got v.shape={tuple(v.shape)}")
    if beta.shape != k.shape[:3]:
        raise ValueError(f"{who}: beta must be [B, T*n, H]={tuple(k.shape[:3])}, got beta.shape={tuple(beta.shape)}")
    if g.shape != q.shape[:3]:
        raise ValueError(f"{who}: g must be [B, T, H]={tuple(q.shape[:3])}, got g.shape={tuple(g.shape)}")
    return n


def gated_delta_product_fp64(q, k, v, beta, g, scale: Optional[float] = None) -> torch.Tensor:
    """Token loop of the gated delta product in q's dtype (the float64 reference; n from k's length).

    Args:
        q: `[B, T, H, K]`; k: `[B, T*n, H, K]`; v: `[B, T*n, H, V]`; beta: `[B, T*n, H]`;
        g: `[B, T, H]` log decays. scale: default K**-0.5.

    Returns:
        o: `[B, T, H, V]` in q's dtype.

    Example::

        >>> x = make_gdp_inputs(shape64, seed=0)          # shape64.dtype = float64
        >>> gated_delta_product_fp64(**x).shape            # [B, T, H, V]
    """
    n = _householder_steps(q, k, v, beta, g, "gated_delta_product_fp64")
    dt = q.dtype
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    q, k, v, beta, g = (x.to(dt).transpose(1, 2) for x in (q, k, v, beta, g))  # [B, H, T(*n), ...]
    h = q.new_zeros(B, H, K, V)
    outs = []
    for t in range(T):
        h = h * g[:, :, t, None, None].exp()
        for j in range(n):
            i = t * n + j
            kj = k[:, :, i]
            err = v[:, :, i] - torch.einsum("bhk,bhkv->bhv", kj, h)
            h = h + (beta[:, :, i, None] * kj)[..., None] * err[..., None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, :, t] * scale, h))
    return torch.stack(outs, 2).transpose(1, 2)


def gdp_naive(q, k, v, beta, g, scale: Optional[float] = None) -> torch.Tensor:
    """fla's pure-PyTorch references (GDN's when n = 1, GDP's otherwise); float64 -> `gated_delta_product_fp64`.

    Shapes as `gated_delta_product_fp64`; returns o `[B, T, H, V]` in q's dtype.

    Example::

        >>> o = gdp_naive(**make_gdp_inputs(shape, 0))   # any device
    """
    from fla.ops.gated_delta_product.naive import naive_recurrent_gated_delta_product
    from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule

    n = _householder_steps(q, k, v, beta, g, "gdp_naive")
    if q.dtype == torch.float64:
        return gated_delta_product_fp64(q, k, v, beta, g, scale=scale)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if n == 1:
        return naive_recurrent_gated_delta_rule(q, k, v, beta, g, scale=scale)[0].to(q.dtype)
    return naive_recurrent_gated_delta_product(q, k, v, g, beta, scale=scale, num_householder=n)[0]


class _RefusalGuard(torch.autograd.Function):
    """Runs `op(*tensors)` as one autograd node whose backward maps fla's Hopper refusal to `Unsupported`.

    The inner graph is built under enable_grad on detached leaves and differentiated with
    `torch.autograd.grad(retain_graph=True)`, so repeated backward calls (retain_graph timing loops) work;
    it is freed with this node.
    """

    @staticmethod
    def forward(ctx, op: Callable, *tensors: torch.Tensor):
        leaves = tuple(t.detach().requires_grad_(t.requires_grad) for t in tensors)
        with torch.enable_grad():
            out = op(*leaves)
        ctx.inner = (leaves, out)
        return out.detach()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        leaves, out = ctx.inner
        wanted = [t for t in leaves if t.requires_grad]
        try:
            grads = torch.autograd.grad(out, wanted, grad_out, retain_graph=True, allow_unused=True)
        except RuntimeError as e:
            if FLA_HOPPER_REFUSAL in str(e):
                raise Unsupported(f"fla refuses the backward: {e}") from e
            raise
        it = iter(grads)
        return (None, *(next(it) if t.requires_grad else None for t in leaves))


def _guarded(op: Callable, *tensors: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _RefusalGuard.apply(op, *tensors)
    return op(*tensors)


def gdn_chunk(q, k, v, beta, g, scale: Optional[float] = None) -> torch.Tensor:
    """fla `chunk_gated_delta_rule` (cuda). q, k `[B, T, H, K]`, v `[B, T, H, V]`, beta, g `[B, T, H]`.

    Returns o `[B, T, H, V]`. Its backward raises `Unsupported` where fla refuses it (Hopper, Triton
    3.4-3.7.0); keys must already be L2-normalised (no in-kernel norm).

    Example::

        >>> o = gdn_chunk(**make_gdn_inputs(shape_cuda_bf16, 0)); o.sum().backward()   # may raise Unsupported
    """
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    n = _householder_steps(q, k, v, beta, g, "gdn_chunk")
    if n != 1:
        raise ValueError(f"gdn_chunk: k.shape[1]={k.shape[1]} must equal T={q.shape[1]} (one key per token)")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return _guarded(lambda q_, k_, v_, b_, g_: chunk_gated_delta_rule(q_, k_, v_, g_, b_, scale=scale)[0],
                    q, k, v, beta, g)


def gdp_chunk(q, k, v, beta, g, scale: Optional[float] = None) -> torch.Tensor:
    """fla `chunk_gated_delta_product` with n = k.shape[1] // T Householder steps (cuda, bf16/fp16).

    q `[B, T, H, K]`, k `[B, T*n, H, K]`, v `[B, T*n, H, V]`, beta `[B, T*n, H]`, g `[B, T, H]` -> o `[B, T, H, V]`.
    Backward refusal as `gdn_chunk`.

    Example::

        >>> o = gdp_chunk(**make_gdp_inputs(shape_cuda_bf16_L3, 0))
    """
    from fla.ops.gated_delta_product import chunk_gated_delta_product

    n = _householder_steps(q, k, v, beta, g, "gdp_chunk")
    if q.dtype == torch.float32 or q.dtype == torch.float64:
        raise Unsupported(f"fla chunk_gated_delta_product supports bf16/fp16 only, got {q.dtype}")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return _guarded(
        lambda q_, k_, v_, b_, g_: chunk_gated_delta_product(q_, k_, v_, g_, b_, num_householder=n, scale=scale)[0],
        q, k, v, beta, g)
