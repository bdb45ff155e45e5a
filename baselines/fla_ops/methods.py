"""Registers the fla-core baselines and peers (SPEC section 4) with the harness.

Methods (name [family] backend, devices; reference):
    gla-fla-chunk      [gla]   fla chunk_gla, cuda;                        gla-naive
    gla-fla-recurrent  [gla]   fla fused_recurrent_gla, cuda;              gla-naive
    gla-naive          [gla]   fla naive_recurrent_gla, cpu + cuda;        gla-naive
    gdn-fla-chunk      [peer]  fla chunk_gated_delta_rule, cuda;           gdn-naive
    gdp-fla-chunk      [peer]  fla chunk_gated_delta_product (n = L), cuda; gdp-naive
    sdpa               [peer]  torch scaled_dot_product_attention, cpu + cuda; sdpa
    prism-fla-dplr     [prism] fla chunk_dplr_delta_rule on L-expanded tokens (CPU: fla dplr_recurrence);
                               prism-torch (the chunked float64 form: equal to the token loop to ~1e-15,
                               tests/kernels/test_prism_reference.py, and affordable at every shape)

Two extra reference methods, not in SPEC's list: `gdn-naive` and `gdp-naive` (fla's naive token loops;
float64 inputs run our float64 loop, since fla's naives compute in float32). `gla-naive` likewise runs
fla's naive for float32/bf16/fp16 and a float64 loop for float64. The naive methods are declared for
cuda too so that they can serve as the float64 reference of the cuda methods on the GPU; as timed
methods they are CPU baselines (a Python token loop on a GPU measures launch overhead).
"""
from __future__ import annotations

from typing import Optional

from prismbench.kernels.prism.inputs import make_prism_inputs, prism_state_size
from prismbench.registry import Method, Shape, register

from .dplr import prism_fla_dplr
from .gated_delta import delta_state_size, gdn_chunk, gdp_chunk, gdp_naive, make_gdn_inputs, make_gdp_inputs
from .gla import gla_chunk, gla_naive, gla_recurrent, gla_state_size, make_gla_inputs
from .sdpa import kv_cache_size, make_sdpa_inputs, sdpa_causal

FLA_GPU_DTYPES = ("bfloat16", "float16", "float32")
ALL_DTYPES = ("float32", "bfloat16", "float16", "float64")
# float64 token loops keep ~3 states [B, H, K, V] per step for autograd: at K = V = 64 a budget of
# 2**16 B*T*H is ~6 GB; larger points measure the first sequence only (see Method.ref_max_tokens).
LOOP_REF_MAX_TOKENS = 1 << 16
# float64 math-backend attention materialises [B, H, T, T] scores (and their grads): at 2**17 B*T*H
# (one sequence of T = 8192, H = 16) each such matrix is 8.6 GB.
SDPA_REF_MAX_TOKENS = 1 << 17


def _no_fp64_on_cuda(shape: Shape, mode: str) -> Optional[str]:
    if shape.device.type == "cuda" and str(shape.dtype) == "torch.float64":
        return "unsupported: fla's Triton DPLR kernels do not run in float64 (use prism-reference)"
    return None


METHODS = [
    Method(
        name="gla-fla-chunk", family="gla", backend="fla-triton",
        make_inputs=make_gla_inputs, fn=lambda x, s: gla_chunk(**x),
        devices=("cuda",), dtypes=FLA_GPU_DTYPES, reference="gla-naive", state_size=gla_state_size,
        description="fla chunk_gla: per-channel log decay gk [B,T,H,K], rank-1 write, chunked (training)",
    ),
    Method(
        name="gla-fla-recurrent", family="gla", backend="fla-triton",
        make_inputs=make_gla_inputs, fn=lambda x, s: gla_recurrent(**x),
        devices=("cuda",), dtypes=FLA_GPU_DTYPES, reference="gla-naive", state_size=gla_state_size,
        description="fla fused_recurrent_gla: token-by-token kernel (decoding-style)",
    ),
    Method(
        name="gla-naive", family="gla", backend="fla-naive",
        make_inputs=make_gla_inputs, fn=lambda x, s: gla_naive(**x),
        devices=("cpu", "cuda"), dtypes=ALL_DTYPES, reference="gla-naive", state_size=gla_state_size,
        ref_max_tokens=LOOP_REF_MAX_TOKENS,
        description="fla naive_recurrent_gla (float32 inside); float64 inputs: float64 token loop. "
                    "CPU baseline; on cuda only meant as the float64 reference",
    ),
    Method(
        name="gdn-fla-chunk", family="peer", backend="fla-triton",
        make_inputs=make_gdn_inputs, fn=lambda x, s: gdn_chunk(**x),
        devices=("cuda",), dtypes=FLA_GPU_DTYPES, reference="gdn-naive", state_size=delta_state_size,
        description="fla chunk_gated_delta_rule (PRISM at L=1); backward refused by fla on Hopper with "
                    "Triton 3.4-3.7.0 -> unsupported",
    ),
    Method(
        name="gdn-naive", family="peer", backend="fla-naive",
        make_inputs=make_gdn_inputs, fn=lambda x, s: gdp_naive(**x),
        devices=("cpu", "cuda"), dtypes=ALL_DTYPES, reference="gdn-naive", state_size=delta_state_size,
        ref_max_tokens=LOOP_REF_MAX_TOKENS,
        description="reference for gdn-fla-chunk: fla naive_recurrent_gated_delta_rule (float32 inside); "
                    "float64 inputs: float64 token loop",
    ),
    Method(
        name="gdp-fla-chunk", family="peer", backend="fla-triton",
        make_inputs=make_gdp_inputs, fn=lambda x, s: gdp_chunk(**x),
        devices=("cuda",), dtypes=("bfloat16", "float16"), reference="gdp-naive", uses_L=True,
        state_size=delta_state_size,
        description="fla chunk_gated_delta_product, n = L Householder steps per token (bf16/fp16 only); "
                    "backward refusal as gdn-fla-chunk",
    ),
    Method(
        name="gdp-naive", family="peer", backend="fla-naive",
        make_inputs=make_gdp_inputs, fn=lambda x, s: gdp_naive(**x),
        devices=("cpu", "cuda"), dtypes=ALL_DTYPES, reference="gdp-naive", uses_L=True,
        state_size=delta_state_size, ref_max_tokens=LOOP_REF_MAX_TOKENS,
        description="reference for gdp-fla-chunk: fla naive_recurrent_gated_delta_product (float32 inside); "
                    "float64 inputs: float64 token loop",
    ),
    Method(
        name="sdpa", family="peer", backend="torch",
        make_inputs=make_sdpa_inputs, fn=lambda x, s: sdpa_causal(**x),
        devices=("cpu", "cuda"), dtypes=ALL_DTYPES, reference="sdpa", state_size=kv_cache_size,
        ref_max_tokens=SDPA_REF_MAX_TOKENS,
        description="torch scaled_dot_product_attention, causal, scale K**-0.5 (float64: math backend)",
    ),
    Method(
        name="prism-fla-dplr", family="prism", backend="fla",
        make_inputs=make_prism_inputs, fn=lambda x, s: prism_fla_dplr(**x),
        devices=("cpu", "cuda"), dtypes=ALL_DTYPES, reference="prism-torch", uses_L=True,
        supports=_no_fp64_on_cuda, state_size=prism_state_size,
        description="PRISM token-expanded to L sub-tokens through fla chunk_dplr_delta_rule (CPU: fla "
                    "dplr_recurrence, float32 inside)",
    ),
]

for _m in METHODS:
    register(_m)
