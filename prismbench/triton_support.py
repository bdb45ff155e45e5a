"""Running the project's Triton kernels without a GPU (the interpreter), in one place.

Triton reads TRITON_INTERPRET when `@triton.jit` decorates a function, which for Triton's own
helpers (`tl.sum`, `tl.cumsum`, ...) is the first `import triton` of the process. So the variable
must be set before Python imports Triton (or anything that imports it, such as fla):

    TRITON_INTERPRET=1 python -m pytest ...        # what tests/conftest.py arranges on the CPU

Nothing in prismbench sets it behind the user's back: without it, Triton methods are CUDA-only
and report `unsupported` on the CPU.
"""
from __future__ import annotations

import os


def interpreting() -> bool:
    """True when Triton kernels run in the interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def patch_interpreter() -> None:
    """Make Triton 3.6's interpreter run our kernels as a GPU does (idempotent; no-op unless interpreting).

    1. NumPy >= 2.4: the interpreter holds kernel scalars as 1-element 1-d NumPy arrays and converts them
       with `int(array)`, which NumPy 2.4 refuses, so `range(n)` over a runtime scalar inside a kernel
       raises TypeError. Convert through the single element instead.
    2. fp32 -> bf16 casts (`x.to(tl.bfloat16)`, and a store of fp32 into a bf16 tensor): the interpreter
       truncates the mantissa (round toward zero), a GPU rounds to nearest even. Truncation is biased, so a
       kernel that rounds an operand to bf16 before a dot (as fla's recompute_w_u does) loses up to twice
       the GPU's accuracy under the interpreter (measured: 6.5e-3 against 3.1e-3 on PRISM's L = 1 output).
       Round to nearest even instead (`_bf16_rne`).
    Compiled kernels are unaffected.
    """
    if not interpreting():
        return
    from triton.runtime import interpreter as _interp

    _patch_bf16_cast(_interp)
    patch = getattr(_interp, "_patch_lang_tensor", None)
    if patch is None or getattr(patch, "_prismbench_patched", False):
        return

    def _patch_lang_tensor(tensor, scope):
        patch(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    _patch_lang_tensor._prismbench_patched = True
    _interp._patch_lang_tensor = _patch_lang_tensor


def _bf16_rne(x):
    """float32 NumPy array -> bfloat16 bit patterns (uint16), rounded to nearest, ties to even; NaN stays NaN."""
    import numpy as np

    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = ((b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(x)
    if np.any(nan):
        r = np.where(nan, ((b >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16), r)
    return r


def _patch_bf16_cast(_interp) -> None:
    """InterpreterBuilder.cast_impl with fp32 -> bf16 rounded to nearest even (see patch_interpreter)."""
    import triton.language as tl

    cls = getattr(_interp, "InterpreterBuilder", None)
    cast = getattr(cls, "cast_impl", None)
    if cast is None or getattr(cast, "_prismbench_patched", False):
        return

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            return _interp.TensorHandle(_bf16_rne(src.data), dst_type.scalar)
        return cast(self, src, dst_type)

    cast_impl._prismbench_patched = True
    cls.cast_impl = cast_impl
