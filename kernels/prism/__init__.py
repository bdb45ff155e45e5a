"""PRISM (arXiv 2602.10796): solver, references, chunked PyTorch form, the layer; the Triton kernel lazily.

- `prism_solver(v, u, p)`: the unrolled solver deltas, shared by every backend.
- `naive_recurrent_prism(...)`: float64 token-loop reference.
- `chunk_prism_torch(...)`: chunked PyTorch form (CPU fast path, GPU fallback, float64 reference for Triton).
- `chunk_prism(...)`: the Triton kernel (`chunk.py`), imported on first access; absent until it exists.
- `PRISM`, `PRISMConfig`: the layer.

Example::

    from prismbench.kernels.prism import PRISM, PRISMConfig
    layer = PRISM(PRISMConfig(hidden_size=256, num_heads=4, num_steps=2))
    y, state = layer(torch.randn(2, 100, 256), output_final_state=True)
"""
from prismbench.kernels.prism.layer import PRISM, PRISMConfig, PRISMState
from prismbench.kernels.prism.naive import (
    check_prism_inputs,
    chunk_prism_torch,
    naive_recurrent_prism,
    prism_write_term,
)
from prismbench.kernels.prism.solver import prism_solver

__all__ = [
    "PRISM",
    "PRISMConfig",
    "PRISMState",
    "check_prism_inputs",
    "chunk_prism_torch",
    "naive_recurrent_prism",
    "prism_solver",
    "prism_write_term",
]


def __getattr__(name: str):
    # `chunk_prism` lives in chunk.py (the Triton kernel), which may not exist yet: import it on
    # first access so that this package imports without it; a missing dependency inside chunk.py
    # still raises.
    if name == "chunk_prism":
        try:
            from prismbench.kernels.prism.chunk import chunk_prism
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.chunk":
                raise AttributeError(f"{__name__}.chunk_prism is not available: {__name__}.chunk does not exist") from e
            raise
        return chunk_prism
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
