"""TTT-Linear baselines: definitions (float64), the mini-batch form, fla's reference, the methods, the layer.

The fused Triton kernel is checked in test_ttt_triton.py (interpreter on the CPU, and on the GPU).
"""
import pytest
import torch
import torch.nn.functional as F

from prismbench.baselines.ttt.naive import (EPS_EXACT, EPS_SIMPLIFIED, ln_loss_grad, ln_loss_hvp, ln_normalize,
                                            make_ttt_inputs, make_ttt_simplified_inputs, simplified_eta,
                                            ttt_linear_loop, ttt_linear_minibatch, ttt_linear_simplified_loop)

#: float64 identities (same math, different order of operations)
TOL_F64 = 1e-12
#: finite differences in float64 (central, h = 1e-6)
TOL_FD = 1e-6
#: fla's fp32 naive reference vs our float64 dual form
TOL_FLA_NAIVE_FP32 = 1e-5
NAMES = ("q", "k", "v", "eta", "gamma", "beta", "W0", "b0")


def rel(a, b):
    assert torch.isfinite(a).all(), "NaN/inf in result"
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def f64(x):
    return {n: t.detach().double().requires_grad_(True) for n, t in x.items()}


# %% definitions

@pytest.mark.parametrize("d", [5, 16, 60])
def test_ln_loss_grad_matches_autograd_and_finite_differences(d):
    """g (closed form, eps kept) == autograd of the LN loss == finite differences; H u == Jacobian of g."""
    gen = torch.Generator().manual_seed(d)
    n = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)     # noqa: E731
    z, r, gamma, beta, u = n(d), n(d), 1 + 0.3 * n(d), 0.3 * n(d), n(d)
    z = z * 0.01                                      # var(z) ~ 1e-4: eps matters, mean(zh^2) != 1

    def loss(zz):
        return 0.5 * ((F.layer_norm(zz, (d,), gamma, beta, EPS_EXACT) - r) ** 2).sum()
    zh, rs = ln_normalize(z)
    g, e, _ = ln_loss_grad(zh, rs, r, gamma, beta)
    zr = z.clone().requires_grad_(True)
    g_auto, = torch.autograd.grad(loss(zr), zr)
    assert rel(g, g_auto) < TOL_F64
    h = 1e-6 * z.abs().mean()
    g_fd = torch.stack([(loss(z + h * ei) - loss(z - h * ei)) / (2 * h) for ei in torch.eye(d, dtype=torch.float64)])
    assert rel(g, g_fd) < TOL_FD
    jac = torch.autograd.functional.jacobian(lambda zz: ln_loss_grad(*ln_normalize(zz), r, gamma, beta)[0], z)
    hu, _ = ln_loss_hvp(u, zh, rs, e, g, gamma)
    assert rel(hu, jac.T @ u) < TOL_F64
    assert rel(jac, jac.T) < TOL_F64                  # the Hessian of l is symmetric


def test_loop_matches_double_backward_definition():
    """The loop's closed-form g equals the inner gradient taken by autograd through F.layer_norm."""
    x = make_ttt_inputs(2, 11, 3, 8, seed=3, dtype=torch.float64)
    o, (WT, bT) = ttt_linear_loop(**x, output_final_state=True)
    B, T, H, D = x["q"].shape
    for b in range(B):
        for h in range(H):
            W, bb = x["W0"][h].clone().requires_grad_(True), x["b0"][h].clone()
            gam, bet = x["gamma"][h], x["beta"][h]
            for t in range(T):
                k, v, q, eta = x["k"][b, t, h], x["v"][b, t, h], x["q"][b, t, h], x["eta"][b, t, h]
                zr = (k @ W + bb).detach().requires_grad_(True)
                l_t = 0.5 * ((F.layer_norm(zr, (D,), gam, bet, EPS_EXACT) - (v - k)) ** 2).sum()
                g, = torch.autograd.grad(l_t, zr)
                W, bb = (W - eta * torch.outer(k, g)).detach(), bb - eta * g
                o_ref = q + F.layer_norm(q @ W + bb, (D,), gam, bet, EPS_EXACT)
                assert rel(o[b, t, h], o_ref) < TOL_F64
            assert rel(WT[b, h], W) < TOL_F64


def test_loop_gradients_match_finite_differences():
    """torch.autograd.gradcheck through the whole token loop (float64, tiny), all eight inputs."""
    x = make_ttt_inputs(1, 4, 2, 5, seed=4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: ttt_linear_loop(*a)[0], tuple(x[n] for n in NAMES),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("T", [1, 7, 23])
def test_minibatch_1_dual_form_is_per_token_descent(T):
    """Mini-batch 1 of the dual form == the per-token loop, outputs, final state and every gradient."""
    x = make_ttt_inputs(2, T, 3, 12, seed=T, dtype=torch.float64, requires_grad=True)
    do = torch.randn(2, T, 3, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    leaves = [x[n] for n in NAMES]
    o_l, (W_l, b_l) = ttt_linear_loop(**x, output_final_state=True)
    g_l = torch.autograd.grad((o_l * do).sum(), leaves)
    for mode in ("token", "row"):
        o_m, (W_m, b_m) = ttt_linear_minibatch(**x, mini_batch_size=1, eta_mode=mode, output_final_state=True)
        g_m = torch.autograd.grad((o_m * do).sum(), leaves)
        assert rel(o_m, o_l) < TOL_F64 and rel(W_m, W_l) < TOL_F64 and rel(b_m, b_l) < TOL_F64
        for n, a, b in zip(NAMES, g_m, g_l):
            assert rel(a, b) < TOL_F64, n


def test_minibatch_16_differs_from_per_token():
    """Mini-batch 16 is a different model: label results with the mini-batch size."""
    x = make_ttt_inputs(1, 40, 2, 16, seed=5, dtype=torch.float64)
    o1, _ = ttt_linear_loop(**x)
    o16, _ = ttt_linear_minibatch(**x, mini_batch_size=16)
    assert rel(o16[:, :1], o1[:, :1]) < TOL_F64       # first token: same state, same step
    assert rel(o16, o1) > 1e-4


@pytest.mark.parametrize("B,T,H,D", [(2, 37, 3, 16), (1, 16, 2, 32)])
def test_row_dual_form_equals_fla_naive(B, T, H, D):
    """eta_mode='row' is fla's mini-batch form: fla.ops.ttt.naive (fp32, scale=1, its Z + LN(Z) read-out)."""
    pytest.importorskip("fla")
    from fla.ops.ttt.naive import chunk_ttt_linear_ref
    x = make_ttt_inputs(B, T, H, D, seed=6)
    o_fla, h_fla, hb_fla = chunk_ttt_linear_ref(
        x["q"].clone(), x["k"].clone(), x["v"].clone(), x["gamma"], x["beta"], x["eta"][..., None].clone(),
        scale=1.0, eps=EPS_EXACT, mini_batch_size=16, initial_state=x["W0"][None].expand(B, H, D, D).clone(),
        initial_state_bias=x["b0"][None, :, None].expand(B, H, 1, D).clone(), output_final_state=True)
    x64 = {n: t.double() for n, t in x.items()}
    Z, (W, b) = ttt_linear_minibatch(**x64, mini_batch_size=16, eta_mode="row", return_z=True,
                                     output_final_state=True)
    zh, _ = ln_normalize(Z)
    assert rel(o_fla, Z + x64["gamma"] * zh + x64["beta"]) < TOL_FLA_NAIVE_FP32
    if T % 16 == 0:                                   # fla pads a partial mini-batch into its final state
        assert rel(h_fla, W) < TOL_FLA_NAIVE_FP32 and rel(hb_fla.squeeze(-2), b) < TOL_FLA_NAIVE_FP32


def test_simplified_variant_definition():
    """The authors' variant: explicit token loop with nn.LayerNorm(eps 1e-5), step clamp(1/(t+1)+offset, 0)."""
    x = make_ttt_simplified_inputs(2, 9, 2, 8, seed=7, dtype=torch.float64)
    x["token_offset"] = x["token_offset"] - 0.4 * (torch.arange(9) > 5)    # exercise the clamp at 0
    o, _ = ttt_linear_simplified_loop(**x)
    eta = simplified_eta(x["lr_gate"], x["token_offset"], 8)
    assert (eta[:, 6:] == 0).all() and (eta[:, :6] > 0).all()
    ln = torch.nn.LayerNorm(8, eps=EPS_SIMPLIFIED, dtype=torch.float64)
    with torch.no_grad():
        ln.weight.copy_(x["gamma"]), ln.bias.copy_(x["beta"])
    for b in range(2):
        for h in range(2):
            W, bb = x["W0"][h].T.clone(), x["b0"][h].clone()      # their convention: z = W k
            for t in range(9):
                k, v, q = x["k"][b, t, h], x["v"][b, t, h], x["q"][b, t, h]
                y = ln(W @ k + bb)
                err = y - (v - k)
                W, bb = W - eta[b, t, h] * torch.outer(err, k), bb - eta[b, t, h] * err
                assert rel(o[b, t, h], q + y) < TOL_F64


def test_bad_inputs_raise_value_error():
    x = make_ttt_inputs(1, 4, 2, 8)
    with pytest.raises(ValueError, match="v.shape"):
        ttt_linear_loop(**{**x, "v": x["v"][..., :4]})
    with pytest.raises(ValueError, match="eta.shape"):
        ttt_linear_loop(**{**x, "eta": x["eta"][..., None]})
    with pytest.raises(ValueError, match="W0.shape"):
        ttt_linear_minibatch(**{**x, "W0": x["W0"][:1]})
    with pytest.raises(ValueError, match="eta_mode"):
        ttt_linear_minibatch(**x, eta_mode="col")


def test_low_precision_loop_keeps_fp32_state():
    x = make_ttt_inputs(1, 12, 2, 16, seed=8)
    o32, _ = ttt_linear_loop(**x)
    obf, _ = ttt_linear_loop(**{n: t.bfloat16() for n, t in x.items()})
    assert obf.dtype == torch.bfloat16 and rel(obf, o32) < 2e-2


# %% harness methods

def _methods():
    from prismbench.registry import all_methods
    return {n: m for n, m in all_methods().items() if m.family == "ttt"}


def test_methods_registered():
    ms = _methods()
    assert {"ttt-loop", "ttt-loop-simplified", "ttt-triton", "ttt-fla-chunk"} <= set(ms)
    assert ms["ttt-triton"].reference == "ttt-loop" and ms["ttt-loop"].reference == "ttt-loop"
    assert ms["ttt-fla-chunk"].reference == "ttt-fla-chunk"
    assert ms["ttt-loop-simplified"].reference == "ttt-loop-simplified"
    for m in ms.values():
        assert not m.uses_L


@pytest.mark.parametrize("name", ["ttt-loop", "ttt-loop-simplified", "ttt-fla-chunk"])
def test_methods_run_on_cpu_against_their_reference(name):
    from prismbench.registry import Shape, get
    m = get(name)
    shape = Shape(B=2, T=19, H=2, K=12, V=12, L=3, dtype=torch.float32, device=torch.device("cpu"))
    assert m.unsupported_reason(shape, "fwdbwd") is None
    assert m.state_size(shape) == 2 * (12 * 12 + 12)
    x = m.make_inputs(shape, 0)
    assert all(t.requires_grad for t in x.values())
    o = m.fn(x, shape)
    assert o.shape == (2, 19, 2, 12) and o.dtype == torch.float32
    grads = torch.autograd.grad(o.sum(), list(x.values()))
    ref = get(m.reference)
    x64 = f64(x)
    o64 = ref.fn(x64, shape.with_(dtype=torch.float64))
    grads64 = torch.autograd.grad(o64.sum(), list(x64.values()))
    assert rel(o, o64) < 1e-5
    for g, g64 in zip(grads, grads64):
        assert rel(g, g64) < 1e-4


def test_methods_refuse_k_not_v():
    from prismbench.registry import Shape
    shape = Shape(B=1, T=8, H=2, K=16, V=32, L=1, dtype=torch.float32, device=torch.device("cpu"))
    for m in _methods().values():
        assert "K == V" in (m.supports(shape, "fwd") or "")


# %% layer

@pytest.mark.parametrize("backend", ["loop", "fla_chunk", "simplified"])
def test_layer_runs_and_backprops(backend):
    from prismbench.baselines.ttt.layer import TTTLinearLayer
    torch.manual_seed(0)
    layer = TTTLinearLayer(hidden_size=48, num_heads=3, backend=backend, max_seq_len=32)
    x = torch.randn(2, 18, 48, requires_grad=True)
    y = layer(x)
    assert y.shape == (2, 18, 48)
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and all(p.grad is not None for p in layer.parameters())


def test_layer_rejects_bad_width():
    from prismbench.baselines.ttt.layer import TTTLinearLayer
    with pytest.raises(ValueError, match="backend"):
        TTTLinearLayer(32, 2, backend="nope")
    with pytest.raises(ValueError, match="x.shape"):
        TTTLinearLayer(32, 2)(torch.randn(1, 4, 30))
