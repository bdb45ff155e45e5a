"""prismbench.triton_support.patch_interpreter: the interpreter's fp32 -> bf16 casts round as a GPU does."""
import numpy as np
import pytest
import torch

from prismbench.triton_support import _bf16_rne, interpreting


def test_bf16_rne_matches_torch():
    """_bf16_rne equals torch's fp32 -> bf16 conversion (round to nearest, ties to even) bit for bit, including
    ties, values that carry into the exponent, infinities, NaN and subnormals."""
    x = torch.cat([torch.randn(4096) * 10.0 ** torch.randint(-30, 30, (4096,)).float(),
                   torch.tensor([1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 1.0 - 2 ** -25, 3.3895e38, float("inf"),
                                 -float("inf"), 1e-40, -1e-42, 0.0, -0.0])])
    ref = x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(_bf16_rne(x.numpy()), ref)
    nan = _bf16_rne(np.array([float("nan")], dtype=np.float32))
    assert torch.isnan(torch.from_numpy(nan.view(np.int16)).view(torch.bfloat16)).all()


@pytest.mark.skipif(not interpreting(), reason="interpreter only")
def test_interpreter_bf16_cast_rounds_to_nearest():
    """Under TRITON_INTERPRET=1 a kernel's x.to(tl.bfloat16) and a store of fp32 into a bf16 tensor both give
    torch's (the GPU's) rounding; Triton 3.6's interpreter alone truncates (about half the entries differ)."""
    import triton
    import triton.language as tl

    from prismbench.triton_support import patch_interpreter

    patch_interpreter()   # what importing prismbench.kernels does

    @triton.jit
    def cast_kernel(x, y, z, N: tl.constexpr):
        o = tl.arange(0, N)
        b = tl.load(x + o)
        tl.store(y + o, b.to(tl.bfloat16).to(tl.float32))
        tl.store(z + o, b)

    x = torch.randn(1024)
    y, z = torch.empty(1024), torch.empty(1024, dtype=torch.bfloat16)
    cast_kernel[(1,)](x, y, z, N=1024)
    ref = x.to(torch.bfloat16)
    assert torch.equal(y, ref.float()) and torch.equal(z, ref)
