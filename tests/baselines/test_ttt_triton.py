"""The fused TTT-Linear kernel (`ttt_linear_fused`, method `ttt-triton`) against the token loop.

Issue 6 item 4: `ttt-triton` == `ttt-loop` in fp32 (relative error <= 1e-5) for the output and all
eight input gradients; in the interpreter at tiny, awkward shapes (CPU) and on the GPU at T in
{256, 4096}. Without CUDA the kernels run under the Triton interpreter (fused.py sets
TRITON_INTERPRET=1 before defining them; set here too, before the import). torch.empty is
NaN-poisoned by tests/conftest.py, so an unwritten output fails.
"""

import pytest
import torch

from prismbench.baselines.ttt.fused import ttt_linear_fused
from prismbench.baselines.ttt.naive import make_ttt_inputs, ttt_linear_loop

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
#: the issue's gate: fused fp32 vs loop fp32
TOL_FP32 = 1e-5
#: bf16 inputs (fp32 state) vs the float64 loop
TOL_BF16 = 2e-2
NAMES = ("q", "k", "v", "eta", "gamma", "beta", "W0", "b0")


def rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    assert torch.isfinite(a).all(), "NaN/inf in result"
    return ((a - b).norm() / b.norm()).item()


def grads_of(fn, x, do, **kw):
    leaves = [x[n] for n in NAMES]
    o = fn(**x, **kw)
    o = o[0] if isinstance(o, tuple) else o
    return [o] + list(torch.autograd.grad(o, leaves, do))


def compare(B, T, H, D, seed, C=None, dtype=torch.float32, device=DEVICE, **kw):
    x = make_ttt_inputs(B, T, H, D, seed=seed, dtype=dtype, device=device, requires_grad=True)
    do = torch.randn(B, T, H, D, generator=torch.Generator().manual_seed(seed + 1)).to(device, dtype)
    if C is not None:
        kw["checkpoint_every"] = C
    tri = grads_of(ttt_linear_fused, x, do, **kw)
    ref = grads_of(ttt_linear_loop, x, do)                 # same dtype (fp32 state for bf16)
    x64 = {n: t.detach().double().requires_grad_(True) for n, t in x.items()}
    ref64 = grads_of(ttt_linear_loop, x64, do.double())
    names = ("o",) + tuple("d" + n for n in NAMES)
    return {n: (rel(a, b), rel(a, c)) for n, a, b, c in zip(names, tri, ref, ref64)}


# (B, T, H, D, C): D not a power of two, T not a multiple of C, C = 1, C > T
CASES = [(2, 7, 2, 8, 3), (1, 13, 2, 12, 4), (1, 20, 1, 16, 64), (1, 9, 1, 32, 1)]


@pytest.mark.parametrize("B,T,H,D,C", CASES, ids=[f"B{b}-T{t}-H{h}-D{d}-C{c}" for b, t, h, d, c in CASES])
def test_fused_matches_loop_fp32(B, T, H, D, C):
    errs = compare(B, T, H, D, seed=T, C=C)
    for name, (e_loop, e_64) in errs.items():
        assert e_loop <= TOL_FP32, f"{name}: triton vs loop fp32 {e_loop:.2e}"
        assert e_64 <= TOL_FP32, f"{name}: triton vs loop fp64 {e_64:.2e}"


def test_fused_without_prefetch_matches_loop():
    """The prefetch=False kernels (loads inside each token's iteration) compute the same thing."""
    errs = compare(2, 10, 2, 12, seed=9, C=3, prefetch=False)
    for name, (e_loop, _) in errs.items():
        assert e_loop <= TOL_FP32, f"{name}: triton (no prefetch) vs loop fp32 {e_loop:.2e}"


def test_fused_bf16_inputs():
    errs = compare(1, 11, 2, 16, seed=3, C=4, dtype=torch.bfloat16)
    for name, (_, e_64) in errs.items():
        assert e_64 <= TOL_BF16, f"{name}: triton bf16 vs loop fp64 {e_64:.2e}"


def test_fused_forward_without_grad_matches():
    x = make_ttt_inputs(1, 10, 2, 8, seed=5, device=DEVICE)
    with torch.no_grad():
        o = ttt_linear_fused(**x)
    assert rel(o, ttt_linear_loop(**x)[0]) <= TOL_FP32


def test_fused_bad_inputs():
    x = make_ttt_inputs(1, 4, 2, 8, device=DEVICE)
    with pytest.raises(ValueError, match="k.shape"):
        ttt_linear_fused(**{**x, "k": x["k"][..., :4]})
    with pytest.raises(ValueError, match="checkpoint_every"):
        ttt_linear_fused(**x, checkpoint_every=0)
    big = make_ttt_inputs(1, 2, 1, 136, device=DEVICE)
    with pytest.raises(ValueError, match="D=136"):
        ttt_linear_fused(**big)


def test_method_registered_with_loop_reference():
    from prismbench.registry import Shape, get
    m = get("ttt-triton")
    assert m.reference == "ttt-loop" and m.backend == "triton"
    shape = Shape(B=1, T=6, H=2, K=8, V=8, L=2, dtype=torch.float32, device=DEVICE)
    if DEVICE.type in m.devices:
        x = m.make_inputs(shape, 1)
        assert rel(m.fn(x, shape), get("ttt-loop").fn(x, shape)) <= TOL_FP32
    assert m.supports(shape.with_(K=256, V=256), "fwd") is not None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("B,T,H,D", [(2, 256, 4, 64), (2, 256, 3, 48), (1, 4096, 2, 64)])
def test_fused_matches_loop_fp32_gpu(B, T, H, D):
    errs = compare(B, T, H, D, seed=T)
    for name, (e_loop, _) in errs.items():
        assert e_loop <= TOL_FP32, f"{name}: triton vs loop fp32 {e_loop:.2e}"
