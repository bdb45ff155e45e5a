"""The PRISM Triton kernel (`chunk_prism`) against the float64 token loop.

On a machine without CUDA the kernels run under the Triton interpreter (tiny shapes, slow). Triton 3.6
reads TRITON_INTERPRET when `@triton.jit` decorates a kernel, i.e. when `prismbench.kernels.prism.chunk`
is imported, so it is set here before that import (chunk.py also sets it when there is no CUDA).
Every case backprops `(o * do).sum() + (ht * dht).sum()` and compares o, the final state and every input
gradient (q, k, v, u, p, beta, g, initial_state) by relative error `||x - ref|| / ||ref||`; torch.empty is
NaN-poisoned by tests/conftest.py, so an unwritten tile fails.
"""

import pytest
import torch

from prismbench.kernels.prism.chunk import chunk_prism
from prismbench.kernels.prism.inputs import make_prism_inputs
from prismbench.kernels.prism.naive import naive_recurrent_prism
from prismbench.registry import Shape

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TOL_FP32 = 1e-5          # fp32 inputs: the kernel is ~1e-7 from float64 under the interpreter
TOL_BF16 = 5e-3          # bf16 inputs, issue 5 item 3
NAMES = ("q", "k", "v", "u", "p", "beta", "g")


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.detach().double(), ref.detach().double()
    assert not torch.isnan(x).any(), "NaN in kernel result"
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def run_case(B, T, H, K, V, L, C, dtype, seed, use_h0=True, final=True, strong_decay=False):
    """Returns {name: rel_err} for o, ht and every gradient."""
    torch.manual_seed(seed)
    x = make_prism_inputs(Shape(B, T, H, K, V, L, dtype, DEVICE), seed)
    if strong_decay:   # some alpha ~ 1e-17: gamma underflows inside a chunk
        with torch.no_grad():
            resets = torch.rand(x["g"].shape, device=DEVICE) < 0.15
            x["g"].copy_(torch.where(resets, torch.full_like(x["g"], -40.0), x["g"]))
    h0 = torch.randn(B, H, K, V, device=DEVICE, dtype=torch.float32).requires_grad_() if use_h0 else None
    ref_in = {n: t.detach().double().requires_grad_() for n, t in x.items()}
    h0_ref = h0.detach().double().requires_grad_() if use_h0 else None

    o, ht = chunk_prism(**x, initial_state=h0, output_final_state=final, chunk_size=C)
    o_ref, ht_ref = naive_recurrent_prism(**ref_in, initial_state=h0_ref, output_final_state=final)
    assert o.shape == (B, T, H, V) and o.dtype == dtype
    do = torch.randn_like(o_ref)
    loss_ref = (o_ref * do).sum()
    loss = (o.float() * do.to(DEVICE).float()).sum()
    errs = {"o": rel_err(o, o_ref)}
    if final:
        assert ht.shape == (B, H, K, V) and ht.dtype == torch.float32
        dht = torch.randn_like(ht_ref)
        loss_ref = loss_ref + (ht_ref * dht).sum()
        loss = loss + (ht * dht.float()).sum()
        errs["ht"] = rel_err(ht, ht_ref)
    else:
        assert ht is None
    loss.backward()
    loss_ref.backward()
    for n in NAMES:
        assert x[n].grad is not None and x[n].grad.shape == x[n].shape, n
        errs["d" + n] = rel_err(x[n].grad, ref_in[n].grad)
    if use_h0:
        errs["dh0"] = rel_err(h0.grad, h0_ref.grad)
    return errs


def assert_errs(errs, tol):
    bad = {n: e for n, e in errs.items() if not e <= tol}
    assert not bad, f"rel. errors above {tol}: {bad} (all: {errs})"


CASES = [  # B, T, H, K, V, L, C   (T not a multiple of C: partial last chunk)
    pytest.param(1, 37, 2, 16, 16, 1, 16, id="B1-T37-H2-K16-V16-L1-C16"),
    pytest.param(1, 37, 2, 16, 16, 3, 16, id="B1-T37-H2-K16-V16-L3-C16"),
    pytest.param(2, 41, 1, 20, 24, 2, 16, id="B2-T41-H1-K20-V24-L2-C16"),
    pytest.param(1, 45, 1, 16, 16, 4, 32, id="B1-T45-H1-K16-V16-L4-C32"),
    pytest.param(1, 70, 1, 16, 16, 2, 64, id="B1-T70-H1-K16-V16-L2-C64"),      # 4 blocks in the solve
    pytest.param(1, 40, 1, 72, 72, 2, 64, id="B1-T40-H1-K72-V72-L2-C64"),      # K > 64: runs at chunk 32
]


@pytest.mark.parametrize("B,T,H,K,V,L,C", CASES)
def test_chunk_prism_fp32(B, T, H, K, V, L, C):
    assert_errs(run_case(B, T, H, K, V, L, C, torch.float32, seed=T + L), TOL_FP32)


@pytest.mark.parametrize("C", [16, 64])
def test_chunk_prism_split_solve(monkeypatch, C):
    """SPLIT_SOLVE (the solve as its own kernel, off by default): same results."""
    from prismbench.kernels.prism import chunk as pc

    monkeypatch.setattr(pc, "SPLIT_SOLVE", True)
    assert_errs(run_case(1, 70, 1, 16, 16, 3, C, torch.float32, seed=C), TOL_FP32)


def test_chunk_prism_no_state_args():
    """No initial state, no final state: gradients still exact."""
    assert_errs(run_case(1, 20, 2, 16, 16, 2, 16, torch.float32, seed=3, use_h0=False, final=False), TOL_FP32)


def test_chunk_prism_strong_decay():
    """alpha ~ e^-40 at some tokens: cumulative decay underflows inside a chunk, dg must stay exact."""
    assert_errs(run_case(1, 40, 1, 16, 16, 3, 16, torch.float32, seed=5, strong_decay=True), TOL_FP32)


def test_chunk_prism_bf16():
    """bf16 inputs (fp32 state and solve inside)."""
    assert_errs(run_case(1, 37, 1, 16, 16, 2, 16, torch.bfloat16, seed=11), TOL_BF16)


def test_chunk_prism_l1_is_gated_delta_rule():
    """L = 1: the same as fla's gated delta rule (float64 token loop) with v := GELU(p (v - u))."""
    from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule

    from prismbench.kernels.prism.solver import prism_solver

    x = make_prism_inputs(Shape(1, 21, 2, 16, 16, 1, torch.float32, DEVICE), 7)
    o, _ = chunk_prism(**x, chunk_size=16)
    d = prism_solver(*(x[n].detach().double() for n in ("v", "u", "p")))[0]
    o_ref, _ = naive_recurrent_gated_delta_rule(
        q=x["q"].detach().double(), k=x["k"][0].detach().double(), v=d, beta=x["beta"][0].detach().double(),
        g=x["g"].detach().double(), scale=16 ** -0.5)
    assert rel_err(o, o_ref) <= TOL_FP32


@pytest.mark.parametrize("bad,match", [
    (dict(chunk_size=24), "chunk_size"),
    (dict(chunk_size=8), "chunk_size"),
])
def test_chunk_prism_rejects_bad_chunk_size(bad, match):
    x = make_prism_inputs(Shape(1, 8, 1, 16, 16, 1, torch.float32, DEVICE), 0)
    with pytest.raises(ValueError, match=match):
        chunk_prism(**x, **bad)


def test_chunk_prism_rejects_bad_inputs():
    x = make_prism_inputs(Shape(1, 8, 1, 16, 16, 2, torch.float32, DEVICE), 0)
    with pytest.raises(ValueError, match="k"):
        chunk_prism(**{**x, "k": x["k"][:, :, :4]})
    with pytest.raises(ValueError, match="dtype"):
        chunk_prism(**{**x, "v": x["v"].detach().half()})
    x64 = make_prism_inputs(Shape(1, 8, 1, 16, 16, 2, torch.float64, DEVICE), 0)
    with pytest.raises(ValueError, match="float64"):
        chunk_prism(**x64)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("T,L,K", [(64, 1, 64), (1000, 3, 64)])
def test_chunk_prism_gpu_bf16(T, L, K):
    """Issue 5 item 3 (small subset; scripts/gpu/prism_triton_check.py runs the full grid)."""
    assert_errs(run_case(2, T, 4, K, K, L, 64, torch.bfloat16, seed=T + L), TOL_BF16)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("L", [1, 3])
def test_chunk_prism_gpu_bf16_k128(L):
    """K = V = 128 (runs at chunk 32): forward and every gradient."""
    assert_errs(run_case(1, 300, 2, 128, 128, L, 64, torch.bfloat16, seed=L), TOL_BF16)


def test_solve_tril_blocks():
    """The blocked solve alone: Tr (I + A) = I for chunk lengths 16, 32, 64, partial last chunk included."""
    from prismbench.kernels.prism.chunk import prism_fwd_prep

    for BT, T in ((16, 21), (32, 40), (64, 100)):
        x = {n: t.detach() for n, t in make_prism_inputs(Shape(1, T, 2, 16, 16, 1, torch.float32, DEVICE), BT).items()}
        gc, w, ub, sw, tr, _ = prism_fwd_prep(x["k"], x["v"], x["u"], x["p"], x["beta"], x["g"], BT)
        for h in range(2):
            for c0 in range(0, T, BT):
                n = min(BT, T - c0)
                k1, b1, gcc = (x["k"][0, 0, c0:c0 + n, h].double(), x["beta"][0, 0, c0:c0 + n, h].double(),
                               gc[0, c0:c0 + n, h].double())
                A = torch.tril(b1[:, None] * torch.exp(gcc[:, None] - gcc[None, :]) * (k1 @ k1.T), -1)
                Tr = tr[0, c0:c0 + n, h, :n].double()
                err = (Tr @ (torch.eye(n, dtype=torch.float64) + A) - torch.eye(n, dtype=torch.float64)).abs().max()
                assert err < 1e-5, (BT, T, h, c0, err.item())
