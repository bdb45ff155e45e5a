"""TTT-Linear baselines (SPEC section 3): one definition (`naive`), four backends.

`ttt_linear_loop` / `ttt_linear_simplified_loop` / `ttt_linear_minibatch` (naive.py, PyTorch),
`ttt_linear_fused` (fused.py, Triton per-token explicit solver), `ttt_linear_fla_chunk`
(fla_chunk.py, fla `chunk_ttt_linear`, mini-batch 16) and the `TTTLinearLayer` (layer.py).
fused.py (Triton) is imported lazily, by methods and layer, when first used.
"""
from .naive import (
    EPS_EXACT,
    EPS_SIMPLIFIED,
    make_ttt_inputs,
    make_ttt_simplified_inputs,
    ttt_linear_loop,
    ttt_linear_minibatch,
    ttt_linear_simplified_loop,
)

__all__ = [
    "EPS_EXACT", "EPS_SIMPLIFIED", "make_ttt_inputs", "make_ttt_simplified_inputs",
    "ttt_linear_loop", "ttt_linear_minibatch", "ttt_linear_simplified_loop",
]
