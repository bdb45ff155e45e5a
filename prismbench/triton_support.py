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
    """Make Triton 3.6's interpreter work with NumPy >= 2.4 (idempotent; no-op unless interpreting).

    The interpreter holds kernel scalars as 1-element 1-d NumPy arrays and converts them with
    `int(array)`, which NumPy 2.4 refuses, so `range(n)` over a runtime scalar inside a kernel
    raises TypeError. Convert through the single element instead; compiled kernels are unaffected.
    """
    if not interpreting():
        return
    from triton.runtime import interpreter as _interp

    patch = getattr(_interp, "_patch_lang_tensor", None)
    if patch is None or getattr(patch, "_prismbench_patched", False):
        return

    def _patch_lang_tensor(tensor, scope):
        patch(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    _patch_lang_tensor._prismbench_patched = True
    _interp._patch_lang_tensor = _patch_lang_tensor
