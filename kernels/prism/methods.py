"""Registers the PRISM kernel methods (SPEC section 4, family "prism").

- `prism-reference`: the token loop (`naive_recurrent_prism`); its own float64 reference.
- `prism-torch`: the chunked PyTorch form (`chunk_prism_torch`); measured against `prism-reference`.
- `prism-triton`: the Triton kernel (`chunk.chunk_prism`, imported when called; reports
  `unsupported` while it does not exist); measured against `prism-torch` in float64, which equals the
  token loop to ~1e-15 (tests/kernels/test_prism_reference.py) and is far cheaper at long T.

All take `make_prism_inputs` (q, k, v, u, p, beta, g), depend on L, and report the state size
H*K*V; the sweep over L and K=V comes from bench.toml.
"""
from __future__ import annotations

from typing import Optional

import torch

from prismbench.kernels.prism.inputs import make_prism_inputs, prism_state_size
from prismbench.kernels.prism.naive import chunk_prism_torch, naive_recurrent_prism
from prismbench.triton_support import interpreting
from prismbench.registry import Inputs, Method, Shape, Unsupported, register

# Largest B*T*H at which the float64 token loop (with autograd) serves as a reference: it keeps
# one K x V state per token and head alive for the backward pass (K=V=256, T=2048, H=16: ~17 GB
# in float64) and runs T Python steps.
REFERENCE_MAX_TOKENS = 1 << 15
# The float64 chunked form keeps one state per chunk (C = 64), so it affords the whole default
# budget (B*T = 32768 tokens, H = 16) up to K = V = 256.
TORCH_REF_MAX_TOKENS = 1 << 20


# The token loop keeps one K x V state per token and head for autograd; points whose states alone
# would pass this many bytes are reported unsupported rather than run out of memory.
REFERENCE_MAX_STATE_BYTES = 32 << 30
# chunk_prism's widest K and V (kernels/prism/chunk.py refuses wider ones).
TRITON_MAX_WIDTH = 256


def _reference_supports(shape: Shape, mode: str) -> Optional[str]:
    nbytes = shape.B * shape.T * shape.H * shape.K * shape.V * torch.finfo(shape.dtype).bits // 8
    if nbytes > REFERENCE_MAX_STATE_BYTES:
        return (f"token loop would keep {nbytes / 2**30:.0f} GiB of per-token states "
                f"(limit {REFERENCE_MAX_STATE_BYTES / 2**30:.0f} GiB)")
    return None


def _triton_supports(shape: Shape, mode: str) -> Optional[str]:
    if max(shape.K, shape.V) > TRITON_MAX_WIDTH:
        return f"chunk_prism supports K, V <= {TRITON_MAX_WIDTH}, got K={shape.K}, V={shape.V}"
    return None


def _reference_fn(x: Inputs, shape: Shape) -> torch.Tensor:
    return naive_recurrent_prism(**x)[0]


def _torch_fn(x: Inputs, shape: Shape) -> torch.Tensor:
    return chunk_prism_torch(**x)[0]


def _triton_fn(x: Inputs, shape: Shape) -> torch.Tensor:
    try:
        from prismbench.kernels.prism.chunk import chunk_prism
    except ModuleNotFoundError as e:
        if e.name in ("prismbench.kernels.prism.chunk",):
            raise Unsupported("prism-triton: prismbench.kernels.prism.chunk does not exist yet") from e
        raise
    return chunk_prism(**x)[0]


def _triton_devices() -> tuple[str, ...]:
    return ("cuda", "cpu") if interpreting() else ("cuda",)


register(Method(
    name="prism-reference",
    family="prism",
    backend="torch-loop",
    make_inputs=make_prism_inputs,
    fn=_reference_fn,
    devices=("cpu", "cuda"),
    dtypes=("float64", "float32"),
    reference="prism-reference",
    supports=_reference_supports,
    uses_L=True,
    state_size=prism_state_size,
    ref_max_tokens=REFERENCE_MAX_TOKENS,
    description="PRISM token loop (naive_recurrent_prism), the float64 ground truth",
))

register(Method(
    name="prism-torch",
    family="prism",
    backend="torch",
    make_inputs=make_prism_inputs,
    fn=_torch_fn,
    devices=("cpu", "cuda"),
    dtypes=("float32", "bfloat16", "float16", "float64"),
    reference="prism-reference",
    uses_L=True,
    state_size=prism_state_size,
    ref_max_tokens=TORCH_REF_MAX_TOKENS,
    description="PRISM chunked PyTorch form (chunk_prism_torch, C=64, fp32 inside), autograd backward",
))

register(Method(
    name="prism-triton",
    family="prism",
    backend="triton",
    make_inputs=make_prism_inputs,
    fn=_triton_fn,
    devices=_triton_devices(),
    dtypes=("float32", "bfloat16", "float16"),
    reference="prism-torch",
    supports=_triton_supports,
    uses_L=True,
    state_size=prism_state_size,
    description="PRISM chunked Triton kernel (chunk_prism)",
))
