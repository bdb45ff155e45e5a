"""Harness registration of the TTT-Linear baselines (family "ttt"; SPEC sections 3-4).

| method | backend | computes | reference |
|---|---|---|---|
| `ttt-loop` | torch-loop | exact TTT-Linear, mini-batch 1, per-token PyTorch loop | itself, float64 |
| `ttt-loop-simplified` | torch-loop | the PRISM authors' variant (their TTT.py), mini-batch 1 | itself, float64 |
| `ttt-triton` | triton | exact TTT-Linear, mini-batch 1, fused per-token solver | `ttt-loop` |
| `ttt-fla-chunk` | fla | mini-batch 16 (fla's per-row step), corrected read-out | itself, float64 (dual form) |

Inputs (exact variant; `ttt-loop`, `ttt-triton`, `ttt-fla-chunk` share one builder, so the same
dict feeds a method and its reference): q, k, v `[B, T, H, D]`, eta `[B, T, H]`, gamma, beta
`[H, D]`, W0 `[H, D, D]`, b0 `[H, D]`, D = K = V. The simplified variant takes lr_gate `[B, T, H]`
and token_offset `[T]` instead of eta, and gamma, beta `[D]`. Every input requires grad. All
methods ignore L and need K == V.
"""
from __future__ import annotations

from typing import Optional

import torch

from prismbench.triton_support import interpreting
from prismbench.registry import Method, Shape, register

from .fla_chunk import ttt_linear_fla_chunk
from .fused import ttt_linear_fused
from .naive import make_ttt_inputs, make_ttt_simplified_inputs, ttt_linear_loop, ttt_linear_simplified_loop

#: largest B*T*H the float64 token loop runs as a reference (one sequence of T=4096 at H=16)
LOOP_REF_MAX_TOKENS = 1 << 16


def ttt_state_size(shape: Shape) -> int:
    """Floats of recurrent state per sequence: H * (K * V + V) (W and b per head)."""
    return shape.H * (shape.K * shape.V + shape.V)


def _inputs(shape: Shape, seed: int):
    return make_ttt_inputs(shape.B, shape.T, shape.H, shape.K, seed=seed, dtype=shape.dtype,
                           device=shape.device, requires_grad=True)


def _simplified_inputs(shape: Shape, seed: int):
    return make_ttt_simplified_inputs(shape.B, shape.T, shape.H, shape.K, seed=seed, dtype=shape.dtype,
                                      device=shape.device, requires_grad=True)


def _needs_square(shape: Shape, mode: str) -> Optional[str]:
    if shape.K != shape.V:
        return f"TTT-Linear needs K == V (got K={shape.K}, V={shape.V})"
    return None


def _triton_supports(shape: Shape, mode: str) -> Optional[str]:
    return _needs_square(shape, mode) or (f"K={shape.K} > 128: W does not fit on chip" if shape.K > 128 else None)


def _fla_supports(shape: Shape, mode: str) -> Optional[str]:
    reason = _needs_square(shape, mode)
    if reason is None and torch.device(shape.device).type == "cuda" and shape.K > 128:
        reason = f"fla chunk_ttt_linear needs K <= 128 (got K={shape.K})"
    return reason


def _loop(x, shape):
    return ttt_linear_loop(**x)[0]


def _simplified(x, shape):
    return ttt_linear_simplified_loop(**x)[0]


def _triton(x, shape):
    return ttt_linear_fused(**x)


def _fla(x, shape):
    return ttt_linear_fla_chunk(**x)


register(Method(
    name="ttt-loop", family="ttt", backend="torch-loop", make_inputs=_inputs, fn=_loop,
    devices=("cpu", "cuda"), dtypes=("float32", "bfloat16", "float16", "float64"),
    reference="ttt-loop", supports=_needs_square, uses_L=False, state_size=ttt_state_size,
    ref_max_tokens=LOOP_REF_MAX_TOKENS,
    description="TTT-Linear (exact LN gradient, read-out after the update), mini-batch 1, per-token "
                "PyTorch loop with autograd; state in fp32 (fp64 for fp64 inputs)",
))

register(Method(
    name="ttt-loop-simplified", family="ttt", backend="torch-loop", make_inputs=_simplified_inputs,
    fn=_simplified, devices=("cpu", "cuda"), dtypes=("float32", "bfloat16", "float16", "float64"),
    reference="ttt-loop-simplified", supports=_needs_square, uses_L=False, state_size=ttt_state_size,
    ref_max_tokens=LOOP_REF_MAX_TOKENS,
    description="PRISM authors' TTT-Linear variant (rec/models/TTT.py): no LN Jacobian, pre-update "
                "read-out, eps 1e-5, position-clamped step; mini-batch 1, per-token PyTorch loop",
))

register(Method(
    name="ttt-triton", family="ttt", backend="triton", make_inputs=_inputs, fn=_triton,
    devices=("cuda", "cpu") if interpreting() else ("cuda",),  # CPU only in Triton's interpreter
    dtypes=("float32", "bfloat16", "float16"),
    reference="ttt-loop", supports=_triton_supports, uses_L=False, state_size=ttt_state_size,
    description="TTT-Linear (exact), mini-batch 1, fused per-token explicit solver: one program per "
                "(batch, head), W and b in fp32 on chip; backward reverses the recurrence from "
                "checkpoints every 64 tokens",
))

register(Method(
    name="ttt-fla-chunk", family="ttt", backend="fla", make_inputs=_inputs, fn=_fla,
    devices=("cpu", "cuda"), dtypes=("float32", "bfloat16", "float16", "float64"),
    reference="ttt-fla-chunk", supports=_fla_supports, uses_L=False, state_size=ttt_state_size,
    ref_max_tokens=1 << 20,
    description="TTT-Linear mini-batch 16 (fla's per-row step size): fla chunk_ttt_linear on CUDA with "
                "scale=1 and the q + LN(Z) read-out; on the CPU and in float64 the same dual form in "
                "PyTorch (equal to fla.ops.ttt.naive)",
    extra={"mini_batch": 16},
))
