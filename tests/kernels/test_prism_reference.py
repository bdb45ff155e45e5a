"""PRISM references: token loop, chunked PyTorch form, equivalences with fla, input checks, methods.

Everything runs on the CPU in float64 unless a test says otherwise.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.nn.functional as F

from prismbench.kernels.prism import (
    check_prism_inputs,
    chunk_prism_torch,
    naive_recurrent_prism,
    prism_solver,
    prism_write_term,
)

F64 = torch.float64
# float64 chunked form vs float64 token loop (observed ~1e-15 relative)
TOL_F64 = 1e-12
# fla's naive references compute in float32 (observed ~1e-7 relative)
TOL_FLA_F32 = 2e-5
# chunk_prism_torch on float32 / bfloat16 inputs vs the float64 loop
TOL_F32 = 1e-5
TOL_BF16 = 3e-2


def make_inputs(B, T, H, K, V, L, seed=0, dtype=F64, g_scale=1.0, with_state=True, requires_grad=True):
    """Random valid inputs; g in (-g_scale, 0), beta in (0, 1), L2-normalised keys."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*s):
        return torch.randn(*s, generator=gen, dtype=F64)

    x = {
        "q": rnd(B, T, H, K),
        "k": F.normalize(rnd(L, B, T, H, K), dim=-1),
        "v": rnd(B, T, H, V),
        "u": rnd(B, T, H, V),
        "p": rnd(L, B, T, H, V),
        "beta": torch.rand(L, B, T, H, generator=gen, dtype=F64),
        "g": -g_scale * torch.rand(B, T, H, generator=gen, dtype=F64),
    }
    if with_state:
        x["initial_state"] = rnd(B, H, K, V)
    return {n: t.to(dtype).requires_grad_(requires_grad) for n, t in x.items()}


def rel_err(ref: torch.Tensor, got: torch.Tensor) -> float:
    return ((got.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-300)).item()


def assert_close(name: str, ref: torch.Tensor, got: torch.Tensor, tol: float):
    assert got.shape == ref.shape, f"{name}: shape {tuple(got.shape)} != reference {tuple(ref.shape)}"
    assert not torch.isnan(got).any(), f"{name}: NaN in result"
    err = rel_err(ref, got)
    assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.1e}"


def run_with_grads(fn, x, seed=123, **kw):
    """Run fn(**x, output_final_state=True), backprop (o*do).sum()+(h*dh).sum(); return o, h, grads."""
    o, h = fn(**x, output_final_state=True, **kw)
    gen = torch.Generator().manual_seed(seed)
    do = torch.randn(o.shape, generator=gen, dtype=F64).to(o.dtype)
    dh = torch.randn(h.shape, generator=gen, dtype=F64).to(h.dtype)
    leaves = [t for t in x.values() if t.requires_grad]
    grads = torch.autograd.grad((o * do).sum() + (h * dh).sum(), leaves)
    return o, h, dict(zip([n for n, t in x.items() if t.requires_grad], grads))


# ---------------------------------------------------------------------------------------------
# chunked == token loop


CHUNK_CASES = [
    # B, T, H, K, V, L, C
    (2, 37, 3, 5, 7, 3, 16),   # T not a multiple of C, K != V
    (1, 37, 2, 8, 4, 2, 5),
    (1, 37, 2, 6, 6, 1, 1),    # C = 1
    (2, 64, 2, 8, 8, 2, 16),   # T a multiple of C
    (1, 50, 1, 4, 9, 4, 64),   # one partial chunk
    (3, 1, 2, 3, 5, 2, 8),     # T = 1
]


@pytest.mark.parametrize("B,T,H,K,V,L,C", CHUNK_CASES, ids=lambda v: str(v))
def test_chunk_matches_loop(B, T, H, K, V, L, C):
    x = make_inputs(B, T, H, K, V, L, seed=T * 7 + L)
    o_ref, h_ref, g_ref = run_with_grads(naive_recurrent_prism, x)
    o, h, gr = run_with_grads(chunk_prism_torch, x, chunk_size=C)
    assert o.dtype == F64 and h.dtype == F64
    assert_close("o", o_ref, o, TOL_F64)
    assert_close("final_state", h_ref, h, TOL_F64)
    for name in g_ref:
        assert_close(f"d{name}", g_ref[name], gr[name], TOL_F64)


def test_chunk_matches_loop_strong_decay():
    """alpha down to e^-30 per token: no division by a tiny gamma, gradients stay exact."""
    x = make_inputs(2, 45, 2, 6, 5, 3, seed=3, g_scale=30.0)
    o_ref, h_ref, g_ref = run_with_grads(naive_recurrent_prism, x)
    o, h, gr = run_with_grads(chunk_prism_torch, x, chunk_size=16)
    assert_close("o", o_ref, o, TOL_F64)
    assert_close("final_state", h_ref, h, TOL_F64)
    for name in g_ref:
        assert_close(f"d{name}", g_ref[name], gr[name], 1e-10)


def test_chunk_no_initial_state_and_scale():
    x = make_inputs(1, 21, 2, 4, 4, 2, seed=5, with_state=False, requires_grad=False)
    for scale in (None, 0.3):
        o_ref, h_ref = naive_recurrent_prism(**x, scale=scale, output_final_state=True)
        o, h = chunk_prism_torch(**x, scale=scale, output_final_state=True, chunk_size=8)
        assert_close("o", o_ref, o, TOL_F64)
        assert_close("final_state", h_ref, h, TOL_F64)
    o, h = chunk_prism_torch(**x)
    assert h is None and o.shape == (1, 21, 2, 4)
    # the default scale is K ** -0.5
    assert_close("o(scale=None)", naive_recurrent_prism(**x, scale=4 ** -0.5)[0], o, TOL_F64)


def test_chunk_reads_only_its_views():
    """Inputs that are strided views into NaN-poisoned buffers: nothing outside the views is read."""
    B, T, H, K, V, L = 1, 19, 2, 4, 3, 2
    x = make_inputs(B, T, H, K, V, L, seed=11, requires_grad=False)
    poisoned = {}
    for n, t in x.items():
        big = torch.full((*t.shape[:-1], 2 * t.shape[-1] + 1), float("nan"), dtype=t.dtype)
        big[..., 1::2] = t
        poisoned[n] = big[..., 1::2]
        assert not poisoned[n].is_contiguous()
    o_ref, h_ref = naive_recurrent_prism(**x, output_final_state=True)
    for fn, kw in ((naive_recurrent_prism, {}), (chunk_prism_torch, {"chunk_size": 8})):
        o, h = fn(**poisoned, output_final_state=True, **kw)
        assert_close("o", o_ref, o, TOL_F64)
        assert_close("final_state", h_ref, h, TOL_F64)


@pytest.mark.parametrize("fn", [naive_recurrent_prism, chunk_prism_torch], ids=["loop", "chunk"])
def test_two_halves_equal_one_run(fn):
    B, T, H, K, V, L = 2, 41, 2, 5, 6, 3
    x = make_inputs(B, T, H, K, V, L, seed=7, requires_grad=False)
    kw = {"chunk_size": 16} if fn is chunk_prism_torch else {}
    o_full, h_full = fn(**x, output_final_state=True, **kw)
    T1 = 19  # not a multiple of the chunk size
    first = {n: (t[:, :, :T1] if n in ("k", "p", "beta") else t[:, :T1]) for n, t in x.items() if n != "initial_state"}
    second = {n: (t[:, :, T1:] if n in ("k", "p", "beta") else t[:, T1:]) for n, t in x.items() if n != "initial_state"}
    o1, h1 = fn(**first, initial_state=x["initial_state"], output_final_state=True, **kw)
    o2, h2 = fn(**second, initial_state=h1, output_final_state=True, **kw)
    assert_close("o", o_full, torch.cat([o1, o2], 1), TOL_F64)
    assert_close("final_state", h_full, h2, TOL_F64)


def test_gradcheck_chunk():
    """torch.autograd.gradcheck through the chunked form (partial last chunk, L = 2, initial state)."""
    x = make_inputs(1, 5, 1, 3, 2, 2, seed=13)
    names = list(x)

    def f(*args):
        o, h = chunk_prism_torch(**dict(zip(names, args)), output_final_state=True, chunk_size=2)
        return o, h

    assert torch.autograd.gradcheck(f, tuple(x.values()), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_gradcheck_loop():
    x = make_inputs(1, 3, 1, 2, 2, 2, seed=17)
    names = list(x)

    def f(*args):
        return naive_recurrent_prism(**dict(zip(names, args)), output_final_state=True)

    assert torch.autograd.gradcheck(f, tuple(x.values()), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_low_precision_inputs():
    """bf16 / fp32 inputs (g kept in float32, as make_prism_inputs does): float32 inside, o in q.dtype."""
    B, T, H, K, V, L = 1, 70, 2, 16, 16, 2
    x = make_inputs(B, T, H, K, V, L, seed=19, requires_grad=False)
    o_ref, h_ref = naive_recurrent_prism(**x, output_final_state=True)
    for dt, tol in ((torch.float32, TOL_F32), (torch.bfloat16, TOL_BF16)):
        xl = {n: t.to(torch.float32 if n == "g" else dt) for n, t in x.items()}
        o, h = chunk_prism_torch(**xl, output_final_state=True, chunk_size=32)
        assert o.dtype == dt and h.dtype == torch.float32
        assert_close(f"o[{dt}]", o_ref, o, tol)
        assert_close(f"final_state[{dt}]", h_ref, h, tol)


# ---------------------------------------------------------------------------------------------
# equivalences with fla (its naive references compute in float32)


def test_L1_equals_fla_gated_delta_rule():
    from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule

    B, T, H, K, V = 2, 29, 3, 8, 6
    x = make_inputs(B, T, H, K, V, 1, seed=23, requires_grad=False)
    o, h = naive_recurrent_prism(**x, output_final_state=True)
    delta = prism_solver(x["v"], x["u"], x["p"])
    o_fla, h_fla = naive_recurrent_gated_delta_rule(
        x["q"], x["k"][0], delta[0], x["beta"][0], x["g"],
        scale=K ** -0.5, initial_state=x["initial_state"], output_final_state=True,
    )
    assert_close("o vs fla gated delta rule", o_fla, o, TOL_FLA_F32)
    assert_close("final_state vs fla gated delta rule", h_fla, h, TOL_FLA_F32)


def _expand_tokens(parts: list[torch.Tensor]) -> torch.Tensor:
    """L tensors [B, T, H, D] -> [B, H, T*L, D], token t's sub-tokens at t*L .. t*L + L-1."""
    x = torch.stack(parts, 2)                                    # [B, T, L, H, D]
    B, T, L, H, D = x.shape
    return x.reshape(B, T * L, H, D).transpose(1, 2)


@pytest.mark.parametrize("L", [1, 2, 3])
def test_any_L_equals_fla_dplr_token_expansion(L):
    """Each token -> L sub-tokens: #1 decays by alpha, low-rank (a=k1, b=-alpha beta1 k1), writes
    (k1, beta1 delta1); #l >= 2 write (k_l, beta_l delta_l) only. Output read at the last sub-token."""
    from fla.ops.generalized_delta_rule.dplr.naive import dplr_recurrence

    B, T, H, K, V = 2, 23, 2, 8, 5
    x = make_inputs(B, T, H, K, V, L, seed=29 + L, requires_grad=False)
    o, h = naive_recurrent_prism(**x, output_final_state=True)
    delta = prism_solver(x["v"], x["u"], x["p"])
    k, beta, g = x["k"], x["beta"], x["g"]
    zk = torch.zeros_like(x["q"])
    alpha = g.exp()
    qe = _expand_tokens([x["q"]] * L)
    ke = _expand_tokens([k[l] for l in range(L)])
    ve = _expand_tokens([beta[l][..., None] * delta[l] for l in range(L)])
    ae = _expand_tokens([k[0]] + [zk] * (L - 1))
    be = _expand_tokens([-(alpha * beta[0])[..., None] * k[0]] + [zk] * (L - 1))
    ge = _expand_tokens([g[..., None].expand(B, T, H, K)] + [zk] * (L - 1))
    # fla's dplr_recurrence computes in float32 (and leaves `alpha` uncast): hand it float32
    oe, he = dplr_recurrence(*(t.float() for t in (qe, ke, ve, ae, be, ge)),
                             initial_state=x["initial_state"].float(), output_final_state=True)
    oe = oe.transpose(1, 2).reshape(B, T, L, H, V)[:, :, L - 1]
    assert_close(f"o vs fla dplr (L={L})", oe, o, TOL_FLA_F32)
    assert_close(f"final_state vs fla dplr (L={L})", he, h, TOL_FLA_F32)


def test_zero_extra_steps_reduce_to_L1():
    x = make_inputs(1, 17, 2, 4, 4, 3, seed=31, requires_grad=False)
    x["beta"][1:] = 0
    o3, h3 = chunk_prism_torch(**x, output_final_state=True, chunk_size=8)
    x1 = dict(x, k=x["k"][:1], p=x["p"][:1], beta=x["beta"][:1])
    o1, h1 = naive_recurrent_prism(**x1, output_final_state=True)
    assert_close("o", o1, o3, TOL_F64)
    assert_close("final_state", h1, h3, TOL_F64)


# ---------------------------------------------------------------------------------------------
# the write term has rank L


@pytest.mark.parametrize("L", [1, 2, 3, 4])
def test_write_term_has_rank_L(L):
    B, T, H, K, V = 1, 4, 2, 8, 6
    x = make_inputs(B, T, H, K, V, L, seed=37 + L, with_state=False, requires_grad=False)
    delta = prism_solver(x["v"], x["u"], x["p"])
    Bt = prism_write_term(x["k"], x["beta"], delta)                 # [B, T, H, K, V]
    assert Bt.shape == (B, T, H, K, V)
    assert (torch.linalg.matrix_rank(Bt) == L).all()
    # from a zero state, one token's state is its write term: the recurrence writes rank L
    for fn in (naive_recurrent_prism, chunk_prism_torch):
        _, h = fn(**{n: t[:, :, :1] if n in ("k", "p", "beta") else t[:, :1] for n, t in x.items()},
                  output_final_state=True)
        assert_close("h_1 vs B_1", Bt[:, 0], h, TOL_F64)
        assert (torch.linalg.matrix_rank(h) == L).all()


# ---------------------------------------------------------------------------------------------
# bad input


def _bad(name, fn):
    return pytest.param(fn, name, id=name)


BAD_INPUTS = [
    _bad("q", lambda x: dict(x, q=x["q"][0])),
    _bad("k", lambda x: dict(x, k=x["k"][..., :3])),                  # K mismatch
    _bad("k", lambda x: dict(x, k=x["k"][:0])),                       # L < 1
    _bad("k", lambda x: dict(x, k=x["k"][0])),                        # no L axis
    _bad("v", lambda x: dict(x, v=x["v"][:, :-1])),
    _bad("u", lambda x: dict(x, u=x["u"][..., :-1])),
    _bad("p", lambda x: dict(x, p=x["p"][:1])),
    _bad("beta", lambda x: dict(x, beta=x["beta"][..., None])),
    _bad("g", lambda x: dict(x, g=x["g"][:, :-1])),
    _bad("g", lambda x: dict(x, g=torch.where(torch.arange(x["g"].shape[1])[None, :, None] == 2,
                                              float("nan"), x["g"]))),
    _bad("g", lambda x: dict(x, g=x["g"] - float("inf"))),
    _bad("initial_state", lambda x: dict(x, initial_state=x["initial_state"][..., :-1])),
    _bad("q", lambda x: dict(x, q=x["q"].long())),
    _bad("scale", lambda x: dict(x, scale=float("nan"))),
]


@pytest.mark.parametrize("fn", [naive_recurrent_prism, chunk_prism_torch], ids=["loop", "chunk"])
@pytest.mark.parametrize("mutate,arg", BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(fn, mutate, arg):
    x = make_inputs(2, 6, 2, 4, 5, 2, seed=41, requires_grad=False)
    with pytest.raises(ValueError, match=rf"\b{arg}\b"):
        fn(**mutate(x))


def test_bad_chunk_size():
    x = make_inputs(1, 6, 1, 4, 4, 2, requires_grad=False)
    for C in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="chunk_size"):
            chunk_prism_torch(**x, chunk_size=C)


def test_check_prism_inputs_returns_sizes():
    x = make_inputs(2, 7, 3, 4, 5, 2, requires_grad=False)
    assert check_prism_inputs(**x) == (2, 7, 3, 4, 5, 2)
    x["g"] = x["g"].clone()
    x["g"][0, 0, 0] = float("inf")
    check_prism_inputs(**x, check_values=False)  # a caller may skip the finiteness sync


# ---------------------------------------------------------------------------------------------
# harness methods


def test_methods_registered():
    from prismbench.kernels.prism.inputs import prism_state_size
    from prismbench.registry import Shape, get

    ref, tor, tri = get("prism-reference"), get("prism-torch"), get("prism-triton")
    for m in (ref, tor, tri):
        assert m.family == "prism" and m.uses_L and m.state_size is prism_state_size
    assert (ref.backend, ref.reference) == ("torch-loop", "prism-reference")
    assert (tor.backend, tor.reference) == ("torch", "prism-reference")
    assert (tri.backend, tri.reference) == ("triton", "prism-torch")
    assert tor.ref_max_tokens > ref.ref_max_tokens
    assert set(tri.dtypes) == {"float32", "bfloat16", "float16"}
    assert ("cpu" in tri.devices) == (os.environ.get("TRITON_INTERPRET") == "1")
    big = Shape(B=2, T=16384, H=16, K=256, V=256, L=2, dtype=F64, device=torch.device("cuda"))
    assert "GiB" in ref.unsupported_reason(big, "fwdbwd")
    assert ref.unsupported_reason(big.with_(B=1, T=2048), "fwdbwd") is None
    assert "K, V <= 256" in tri.unsupported_reason(big.with_(K=512, dtype=torch.bfloat16), "fwd")
    assert tri.unsupported_reason(big.with_(dtype=torch.bfloat16), "fwdbwd") is None


def test_triton_devices_follow_interpreter(monkeypatch):
    from prismbench.kernels.prism import methods

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert methods._triton_devices() == ("cuda", "cpu")
    monkeypatch.delenv("TRITON_INTERPRET")
    assert methods._triton_devices() == ("cuda",)


def test_methods_run_and_agree():
    """prism-torch against its reference prism-reference, as the harness does: same inputs, float64."""
    from prismbench.registry import Shape, get

    shape = Shape(B=2, T=70, H=2, K=8, V=8, L=3, dtype=F64, device=torch.device("cpu"))
    outs = {}
    for name in ("prism-reference", "prism-torch"):
        m = get(name)
        assert m.unsupported_reason(shape, "fwdbwd") is None
        x = m.make_inputs(shape, 0)
        o = m.fn(x, shape)
        assert o.shape == (2, 70, 2, 8)
        do = torch.randn(o.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
        outs[name] = (o, torch.autograd.grad((o * do).sum(), list(x.values())))
    (o_r, g_r), (o_t, g_t) = outs["prism-reference"], outs["prism-torch"]
    assert_close("o", o_r, o_t, TOL_F64)
    for i, (a, b) in enumerate(zip(g_r, g_t)):
        assert_close(f"grad[{i}]", a, b, TOL_F64)


def test_triton_method_unsupported_without_kernel(monkeypatch):
    import prismbench.kernels.prism as pkg
    from prismbench.registry import Shape, Unsupported, get

    # stand in for a checkout without kernels/prism/chunk.py
    monkeypatch.setitem(sys.modules, "prismbench.kernels.prism.chunk", None)
    monkeypatch.delattr(pkg, "chunk", raising=False)
    shape = Shape(B=1, T=4, H=1, K=4, V=4, L=2, dtype=torch.float32, device=torch.device("cpu"))
    m = get("prism-triton")
    with pytest.raises(Unsupported, match="chunk"):
        m.fn(m.make_inputs(shape, 0), shape)
    assert not hasattr(pkg, "chunk_prism")  # the package still imports; the name is just absent


@pytest.mark.parametrize("T,C,with_state", [(29, 8, True), (64, 16, False), (7, 64, True)])
def test_chunk_gated_delta_rule_torch_equals_fla_token_loop(T, C, with_state):
    """PRISM's chunked form with the delta given == fla's gated delta rule token loop, output, final state and
    every input gradient (partial last chunk, with and without an initial state; ours in float64, fla float32)."""
    from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule

    from prismbench.kernels.prism.naive import chunk_gated_delta_rule_torch

    B, H, K, V = 2, 3, 8, 6
    gen = torch.Generator().manual_seed(100 + T)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=F64)  # noqa: E731
    q, v = r(B, T, H, K), r(B, T, H, V)
    k = F.normalize(r(B, T, H, K), dim=-1)
    g = F.logsigmoid(r(B, T, H) + 2)
    beta = torch.sigmoid(r(B, T, H))
    h0 = r(B, H, K, V) if with_state else None
    leaves = [t.requires_grad_() for t in (q, k, v, g, beta) + ((h0,) if with_state else ())]
    do, dh = r(B, T, H, V), r(B, H, K, V)

    def grads(fn):
        o, h = fn()
        gs = torch.autograd.grad((o * do).sum() + (h * dh).sum(), leaves)
        return [o, h, *gs]

    ours = grads(lambda: chunk_gated_delta_rule_torch(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                                      chunk_size=C))
    ref = grads(lambda: naive_recurrent_gated_delta_rule(q, k, v, beta, g, scale=K ** -0.5, initial_state=h0,
                                                         output_final_state=True))
    names = ["o", "final_state", "dq", "dk", "dv", "dg", "dbeta", "dh0"]
    for n, a, b in zip(names, ours, ref):
        assert_close(f"{n} vs fla token loop", b, a, TOL_FLA_F32)  # fla computes in float32 inside


def test_chunk_gated_delta_rule_torch_rejects_bad_shapes():
    from prismbench.kernels.prism.naive import chunk_gated_delta_rule_torch

    q = torch.randn(1, 5, 2, 4)
    with pytest.raises(ValueError, match="beta"):
        chunk_gated_delta_rule_torch(q, q, q, torch.randn(1, 5, 2), torch.randn(1, 5, 3))
    with pytest.raises(ValueError, match="g must be a 3-d"):
        chunk_gated_delta_rule_torch(q, q, q, torch.randn(1, 5), torch.randn(1, 5, 2))
