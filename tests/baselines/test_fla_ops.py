"""CPU tests of the fla-core baselines (baselines/fla_ops): builders, naive paths, references, registry.

fla's Triton ops do not run on the CPU; what runs here: fla's pure-PyTorch naives, our float64 loops,
the token-expanded DPLR through fla's naive `dplr_recurrence`, SDPA, the GLA layer, and the refusal
guard that maps fla's Hopper backward refusal to `Unsupported`. GPU checks: scripts/gpu/fla_ops_smoke.py
and the `gpu`-marked test at the end.
"""
from __future__ import annotations

import pytest
import torch

from prismbench.baselines.fla_ops import (
    GLALayer,
    gla,
    gated_delta_product_fp64,
    gdp_naive,
    gla_naive,
    gla_recurrent_fp64,
    make_gdn_inputs,
    make_gdp_inputs,
    make_gla_inputs,
    make_sdpa_inputs,
    prism_fla_dplr,
    sdpa_causal,
)
from prismbench.baselines.fla_ops.gated_delta import FLA_HOPPER_REFUSAL, _guarded
from prismbench.kernels.prism.inputs import make_prism_inputs
from prismbench.kernels.prism.solver import prism_solver
from prismbench.registry import Shape, Unsupported, all_methods, get

CPU = torch.device("cpu")
# fla's naives compute in float32: agreement with a float64 loop at these tiny sizes is ~1e-7
FP32_VS_FP64_TOL = 2e-5
# two float64 computations of the same recurrence in a different order
FP64_TOL = 1e-12

SEVEN = ("gla-fla-chunk", "gla-fla-recurrent", "gla-naive", "gdn-fla-chunk", "gdp-fla-chunk", "sdpa",
         "prism-fla-dplr")


def shape(B=2, T=37, H=3, K=12, V=10, L=3, dtype=torch.float64):
    return Shape(B=B, T=T, H=H, K=K, V=V, L=L, dtype=dtype, device=CPU)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    assert not torch.isnan(a).any() and not torch.isnan(b).any(), "NaN in compared tensors"
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300)).item()


def grads(fn, x: dict, seed: int = 1):
    """Output and every input gradient of sum(o * do), do fixed by `seed`."""
    x = {k: v.detach().clone().requires_grad_(True) for k, v in x.items()}
    o = fn(**x)
    do = torch.randn(o.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(o.dtype)
    (o * do).sum().backward()
    return o.detach(), {k: v.grad for k, v in x.items()}


def assert_agree(fn_a, fn_b, x: dict, tol: float, cast_b=None):
    oa, ga = grads(fn_a, x)
    xb = {k: v.to(cast_b) for k, v in x.items()} if cast_b else x
    ob, gb = grads(fn_b, xb)
    assert rel(ob, oa) < tol, f"o: rel err {rel(ob, oa):.2e} >= {tol}"
    for k in ga:
        assert rel(gb[k], ga[k]) < tol, f"d{k}: rel err {rel(gb[k], ga[k]):.2e} >= {tol}"


def prism_loop_fp64(q, k, v, u, p, beta, g, scale=None):
    """SPEC section 1's PRISM recurrence, token by token (test oracle for prism-fla-dplr)."""
    d = prism_solver(v, u, p)
    L, B, T, H, K = k.shape
    scale = K ** -0.5 if scale is None else scale
    h = q.new_zeros(B, H, K, v.shape[-1])
    out = []
    for t in range(T):
        k1, a = k[0, :, t], g[:, t].exp().to(q.dtype)
        kh = torch.einsum("bhk,bhkv->bhv", k1, h)
        h = a[..., None, None] * (h - beta[0, :, t, :, None, None] * k1[..., None] * kh[..., None, :])
        for l in range(L):
            h = h + beta[l, :, t, :, None, None] * k[l, :, t][..., None] * d[l, :, t][..., None, :]
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, h))
    return torch.stack(out, 1)


# ---------------------------------------------------------------- input builders


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_builders_make_valid_inputs(dtype):
    s = shape(dtype=dtype)
    B, T, H, K, V, L = s.B, s.T, s.H, s.K, s.V, s.L
    gdt = torch.float64 if dtype == torch.float64 else torch.float32

    x = make_gla_inputs(s, 0)
    assert {k: tuple(t.shape) for k, t in x.items()} == {"q": (B, T, H, K), "k": (B, T, H, K),
                                                          "v": (B, T, H, V), "gk": (B, T, H, K)}
    assert x["gk"].dtype == gdt and x["q"].dtype == dtype and (x["gk"] <= 0).all()

    for x, n in ((make_gdn_inputs(s, 0), 1), (make_gdp_inputs(s, 0), L)):
        assert tuple(x["k"].shape) == (B, T * n, H, K) and tuple(x["v"].shape) == (B, T * n, H, V)
        assert tuple(x["beta"].shape) == (B, T * n, H) and tuple(x["g"].shape) == (B, T, H)
        norms = x["k"].float().norm(dim=-1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-2 if dtype == torch.bfloat16 else 1e-6)
        assert ((x["beta"] > 0) & (x["beta"] < 1)).all()
        assert (x["g"] <= 0).all() and x["g"].dtype == gdt

    x = make_sdpa_inputs(s, 0)
    assert tuple(x["v"].shape) == (B, T, H, V) and x["q"].dtype == dtype

    for build in (make_gla_inputs, make_gdn_inputs, make_gdp_inputs, make_sdpa_inputs):
        x, y = build(s, 7), build(s, 7)
        assert all(t.requires_grad and t.is_leaf for t in x.values())
        assert all(torch.equal(x[k], y[k]) for k in x), f"{build.__name__} is not a function of the seed"
        assert not torch.equal(build(s, 8)["q"], x["q"])


def test_gdp_builder_rejects_bad_n():
    with pytest.raises(ValueError, match="n"):
        make_gdp_inputs(shape(), 0, n=0)


# ---------------------------------------------------------------- GLA


def test_gla_fp64_loop_matches_fla_naive():
    x = make_gla_inputs(shape(), 0)
    # fla's naive (float32 inside) vs our float64 loop: output and dq, dk, dv, dgk
    assert_agree(lambda **kw: gla_recurrent_fp64(**kw)[0], gla_naive, x, FP32_VS_FP64_TOL, cast_b=torch.float32)


def test_gla_final_state_and_initial_state():
    x = {k: v.detach() for k, v in make_gla_inputs(shape(T=20), 0).items()}
    o, ht = gla_recurrent_fp64(**x, output_final_state=True)
    o32, ht32 = gla(**{k: v.float() for k, v in x.items()}, mode="naive", output_final_state=True)
    assert rel(o32, o) < FP32_VS_FP64_TOL and rel(ht32, ht) < FP32_VS_FP64_TOL
    first = {k: v[:, :11] for k, v in x.items()}
    rest = {k: v[:, 11:] for k, v in x.items()}
    o1, h1 = gla(**first, mode="naive", output_final_state=True)
    o2, h2 = gla(**rest, mode="naive", initial_state=h1, output_final_state=True)
    assert rel(torch.cat([o1, o2], 1), o) < FP64_TOL and rel(h2, ht) < FP64_TOL
    with pytest.raises(ValueError, match="mode"):
        gla(**x, mode="fused_chunk")


def test_gla_naive_float64_stays_float64():
    x = {k: v.detach() for k, v in make_gla_inputs(shape(T=9), 0).items()}
    o = gla_naive(**x)
    assert o.dtype == torch.float64
    assert rel(o, gla_recurrent_fp64(**x)[0]) < FP64_TOL


def test_gla_naive_scale():
    x = {k: v.detach().float() for k, v in make_gla_inputs(shape(T=9), 0).items()}
    o = gla_naive(**x, scale=0.3)
    ref = gla_recurrent_fp64(**{k: v.double() for k, v in x.items()}, scale=0.3)[0]
    assert rel(o, ref) < FP32_VS_FP64_TOL


def test_gla_bad_shapes_raise():
    x = {k: v.detach() for k, v in make_gla_inputs(shape(T=5), 0).items()}
    with pytest.raises(ValueError, match="gk.shape"):
        gla_naive(x["q"], x["k"], x["v"], x["gk"][..., :3])
    with pytest.raises(ValueError, match="v"):
        gla_naive(x["q"], x["k"], x["v"][:, :4], x["gk"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gla_layer(dtype):
    torch.manual_seed(0)
    layer = GLALayer(hidden_size=40, num_heads=4, conv_size=4).to(dtype)
    assert layer._pick_mode(torch.zeros(1, 1, 40)) == "naive"
    x = torch.randn(2, 13, 40, dtype=dtype, requires_grad=True)
    y, state = layer(x, output_final_state=True)
    assert y.shape == x.shape and y.dtype == dtype and torch.isfinite(y).all()
    assert state.recurrent.shape == (2, 4, 10, 10) and state.conv.shape == (2, 3, 40)
    y.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
    with torch.no_grad():
        # causal: the output at t depends on x[:t+1] only
        x2 = x.detach().clone()
        x2[:, 7:] = float("nan")
        y2 = layer(x2)[0][:, :7]
        assert torch.isfinite(y2).all() and torch.allclose(y2, y[:, :7])
        # carrying the state across calls equals one call
        y1, s1 = layer(x[:, :6], output_final_state=True)
        y3, _ = layer(x[:, 6:], initial_state=s1)
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        assert rel(torch.cat([y1, y3], 1), y) < tol
    with pytest.raises(ValueError, match="x.shape"):
        layer(torch.randn(2, 13, 41, dtype=dtype))
    with pytest.raises(ValueError, match="num_heads"):
        GLALayer(hidden_size=10, num_heads=4)
    with pytest.raises(ValueError, match="mode"):
        GLALayer(hidden_size=8, num_heads=2, mode="fast")


# ---------------------------------------------------------------- gated delta rule / product


@pytest.mark.parametrize("n", [1, 2, 3])
def test_gdp_fp64_loop_matches_fla_naive(n):
    # n = 1 goes through fla's naive_recurrent_gated_delta_rule, n > 1 its gated delta product naive
    x = make_gdp_inputs(shape(T=29), 0, n=n)
    assert_agree(gated_delta_product_fp64, gdp_naive, x, FP32_VS_FP64_TOL, cast_b=torch.float32)


def test_gdp_naive_bf16_returns_input_dtype():
    x = {k: v.detach() for k, v in make_gdp_inputs(shape(T=7, dtype=torch.bfloat16), 0, n=1).items()}
    assert gdp_naive(**x).dtype == torch.bfloat16


def test_gdp_bad_shapes_raise():
    x = {k: v.detach() for k, v in make_gdp_inputs(shape(T=6), 0, n=2).items()}
    with pytest.raises(ValueError, match="beta"):
        gdp_naive(x["q"], x["k"], x["v"], x["beta"][:, :5], x["g"])
    with pytest.raises(ValueError, match="k must be"):
        gdp_naive(x["q"], x["k"][:, :7], x["v"][:, :7], x["beta"][:, :7], x["g"])


class _FakeFla(torch.autograd.Function):
    """Stands in for an fla op whose backward raises `message` (None: a normal backward)."""

    @staticmethod
    def forward(ctx, x, y, message):
        ctx.message = message
        ctx.save_for_backward(x, y)
        return x * y

    @staticmethod
    def backward(ctx, g):
        if ctx.message is not None:
            raise RuntimeError(ctx.message)
        x, y = ctx.saved_tensors
        return g * y, g * x, None


def test_refusal_guard_maps_only_fla_refusal():
    x, y = torch.randn(5, requires_grad=True), torch.randn(5, requires_grad=True)
    refusal = f"Triton >= 3.4.0 and < 3.7.1 {FLA_HOPPER_REFUSAL} for gated chunk_bwd_dqkwg (see #640)."
    o = _guarded(lambda a, b: _FakeFla.apply(a, b, refusal), x, y)
    with pytest.raises(Unsupported, match="#640"):
        o.sum().backward()
    o = _guarded(lambda a, b: _FakeFla.apply(a, b, "CUDA error: an illegal memory access"), x, y)
    with pytest.raises(RuntimeError, match="illegal memory access") as e:
        o.sum().backward()
    assert not isinstance(e.value, Unsupported)
    # a working op: same gradients as unguarded, and retain_graph timing loops work
    o = _guarded(lambda a, b: _FakeFla.apply(a, b, None), x, y)
    o.sum().backward(retain_graph=True)
    o.sum().backward()
    assert torch.allclose(x.grad, 2 * y) and torch.allclose(y.grad, 2 * x)
    # no grad wanted: the op runs unguarded
    with torch.no_grad():
        assert _guarded(lambda a, b: a * b, x, y).grad_fn is None


# ---------------------------------------------------------------- SDPA


def test_sdpa_matches_explicit_causal_softmax():
    x = make_sdpa_inputs(shape(T=21, K=12, V=10), 0)

    def explicit(q, k, v):
        s = torch.einsum("bthk,bshk->bhts", q, k) * q.shape[-1] ** -0.5
        T = q.shape[1]
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        return torch.einsum("bhts,bshv->bthv", s.softmax(-1), v)

    assert_agree(explicit, sdpa_causal, x, FP64_TOL)
    assert sdpa_causal(**{k: v.detach() for k, v in x.items()}).dtype == torch.float64


# ---------------------------------------------------------------- PRISM on fla DPLR


@pytest.mark.parametrize("L", [1, 2, 3])
def test_prism_fla_dplr_cpu_matches_prism_loop(L):
    x = make_prism_inputs(shape(T=23, L=L), 0)
    # CPU path is fla's dplr_recurrence (float32 inside) on the token-expanded sequence
    assert_agree(prism_loop_fp64, prism_fla_dplr, x, FP32_VS_FP64_TOL)


def test_prism_fla_dplr_L1_is_gated_delta_rule():
    """SPEC: PRISM at L=1 is the gated delta rule with v := delta^(1) (here through two fla naives)."""
    x = {k: v.detach() for k, v in make_prism_inputs(shape(T=19, L=1), 0).items()}
    d = prism_solver(x["v"], x["u"], x["p"])
    ref = gated_delta_product_fp64(x["q"], x["k"][0], d[0], x["beta"][0], x["g"])
    assert rel(prism_fla_dplr(**x), ref) < FP32_VS_FP64_TOL
    assert rel(gdp_naive(*(t.float() for t in (x["q"], x["k"][0], d[0], x["beta"][0], x["g"]))), ref) \
        < FP32_VS_FP64_TOL


def test_prism_fla_dplr_bad_shapes_raise():
    x = {k: v.detach() for k, v in make_prism_inputs(shape(T=5, L=2), 0).items()}
    with pytest.raises(ValueError, match="beta"):
        prism_fla_dplr(**{**x, "beta": x["beta"][:1]})
    with pytest.raises(ValueError, match="p must be"):
        prism_fla_dplr(**{**x, "p": x["p"][:1]})


# ---------------------------------------------------------------- registry


def test_registered_methods():
    ms = all_methods()
    for name in SEVEN + ("gdn-naive", "gdp-naive"):
        assert name in ms, f"{name} not registered"
    fam = {"gla-fla-chunk": "gla", "gla-fla-recurrent": "gla", "gla-naive": "gla", "gdn-fla-chunk": "peer",
           "gdp-fla-chunk": "peer", "sdpa": "peer", "prism-fla-dplr": "prism"}
    assert {n: ms[n].family for n in fam} == fam
    for n in ("gla-fla-chunk", "gla-fla-recurrent", "gdn-fla-chunk", "gdp-fla-chunk"):
        assert ms[n].devices == ("cuda",)
    assert ms["gla-fla-chunk"].reference == ms["gla-fla-recurrent"].reference == "gla-naive"
    assert ms["prism-fla-dplr"].reference == "prism-torch"
    assert ms["gdp-fla-chunk"].uses_L and ms["prism-fla-dplr"].uses_L and not ms["gdn-fla-chunk"].uses_L
    s = shape(T=64, H=4, K=16, V=16)
    assert ms["sdpa"].state_size(s) == 2 * 4 * 64 * 16
    assert ms["gla-fla-chunk"].state_size(s) == 4 * 16 * 16
    # every reference named here is registered (prism-reference belongs to the PRISM kernels' module)
    for n in SEVEN + ("gdn-naive", "gdp-naive"):
        ref = ms[n].reference
        assert ref in ms or ref == "prism-reference", f"{n}: reference {ref!r} not registered"
    cuda_bf16 = s.with_(dtype=torch.bfloat16, device=torch.device("cuda"))
    assert ms["gla-fla-chunk"].unsupported_reason(s, "fwd") is not None  # cpu point
    assert ms["gla-fla-chunk"].unsupported_reason(cuda_bf16, "fwdbwd") is None
    assert ms["gdp-fla-chunk"].unsupported_reason(cuda_bf16.with_(dtype=torch.float32), "fwd") is not None
    assert ms["prism-fla-dplr"].unsupported_reason(cuda_bf16.with_(dtype=torch.float64), "fwd") is not None


@pytest.mark.parametrize("name", ["gla-naive", "gdn-naive", "gdp-naive", "sdpa", "prism-fla-dplr"])
def test_cpu_methods_against_their_reference(name):
    """As the harness does it: fn on float32 inputs vs the reference's fn on the same inputs in float64."""
    m = get(name)
    if m.reference not in all_methods():
        pytest.skip(f"{m.reference} is not registered yet")
    ref = get(m.reference)
    s = shape(B=1, T=17, H=2, K=8, V=8, L=2, dtype=torch.float32)
    x = m.make_inputs(s, 0)
    assert m.unsupported_reason(s, "fwdbwd") is None
    o, g = grads(lambda **kw: m.fn(kw, s), x)
    o64, g64 = grads(lambda **kw: ref.fn(kw, s.with_(dtype=torch.float64)),
                     {k: v.detach().double() for k, v in x.items()})
    assert o.shape == (1, 17, 2, 8) and o.dtype == torch.float32
    assert rel(o, o64) < FP32_VS_FP64_TOL
    for k in g:
        assert rel(g[k], g64[k]) < FP32_VS_FP64_TOL, f"{name} d{k}"


# ---------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["gla-fla-chunk", "gla-fla-recurrent", "gdn-fla-chunk", "gdp-fla-chunk", "sdpa"])
def test_cuda_methods_forward(name):
    m = get(name)
    s = Shape(B=2, T=100, H=2, K=64, V=64, L=2, dtype=torch.bfloat16, device=torch.device("cuda"))
    x = m.make_inputs(s, 0)
    with torch.no_grad():
        o = m.fn(x, s)
        o64 = get(m.reference).fn({k: v.double() for k, v in x.items()}, s.with_(dtype=torch.float64))
    assert rel(o, o64) < 2e-2
