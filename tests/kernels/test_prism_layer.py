"""The PRISM layer: config checks, shapes, backends agree, causality, state passing."""
from __future__ import annotations

import sys

import pytest
import torch

from prismbench.kernels.prism import PRISM, PRISMConfig, PRISMState

F64 = torch.float64
# float64 layer, token-loop backend vs chunked backend (observed ~1e-16)
TOL_F64 = 1e-12


def make_layer(seed=0, dtype=F64, **kw):
    torch.manual_seed(seed)
    cfg = dict(hidden_size=24, num_heads=3, head_k_dim=5, num_steps=3, conv_size=4, chunk_size=8)
    cfg.update(kw)
    return PRISM(PRISMConfig(**cfg)).to(dtype)


def rand_x(B, T, D, seed=1, dtype=F64):
    return torch.randn(B, T, D, generator=torch.Generator().manual_seed(seed), dtype=F64).to(dtype)


def rel_err(ref, got):
    return ((got - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize(
    "field,value",
    [("hidden_size", 0), ("num_heads", -1), ("head_k_dim", 0), ("num_steps", 0), ("conv_size", 0),
     ("chunk_size", 0), ("head_v_dim", 0), ("backend", "cuda"), ("norm_eps", 0.0), ("decay_init", (0.5, 1.0)),
     ("num_steps", 2.0)],
)
def test_config_rejects_bad_fields(field, value):
    with pytest.raises(ValueError, match=field):
        PRISMConfig(**{"hidden_size": 24, "num_heads": 3, field: value})


def test_config_head_v_dim_default_needs_divisible_width():
    assert PRISMConfig(hidden_size=24, num_heads=3).head_v_dim == 8
    with pytest.raises(ValueError, match="head_v_dim"):
        PRISMConfig(hidden_size=25, num_heads=3)


@pytest.mark.parametrize("head_v_dim", [None, 7], ids=["V=D/H", "V=7-seed_proj"])
def test_shapes_and_state(head_v_dim):
    layer = make_layer(head_v_dim=head_v_dim)
    V = layer.head_v_dim
    assert isinstance(layer.seed_proj, torch.nn.Identity) == (head_v_dim is None)
    x = rand_x(2, 13, 24)
    y, state = layer(x, output_final_state=True)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert isinstance(state, PRISMState)
    assert state.recurrent.shape == (2, 3, 5, V) and state.conv.shape == (2, 3, 24)
    assert layer(x)[1] is None
    assert layer.state_size() == 3 * 5 * V + 3 * 24


@pytest.mark.parametrize("head_v_dim", [None, 7], ids=["V=D/H", "V=7-seed_proj"])
def test_backends_agree_with_grads(head_v_dim):
    layer = make_layer(head_v_dim=head_v_dim)
    x = rand_x(2, 19, 24).requires_grad_(True)
    res = {}
    for backend in ("reference", "torch"):
        y, st = layer(x, output_final_state=True, backend=backend)
        loss = (y * torch.cos(y)).sum() + st.recurrent.sum()
        res[backend] = (y, st.recurrent, torch.autograd.grad(loss, [x, *layer.parameters()]))
    (y_r, h_r, g_r), (y_t, h_t, g_t) = res["reference"], res["torch"]
    assert rel_err(y_r, y_t) < TOL_F64
    assert rel_err(h_r, h_t) < TOL_F64
    names = ["x"] + [n for n, _ in layer.named_parameters()]
    for name, a, b in zip(names, g_r, g_t):
        assert rel_err(a, b) < TOL_F64, name


def test_layer_is_causal():
    """Changing token t leaves outputs before t unchanged (exactly), and changes outputs at t."""
    layer = make_layer()
    T, t = 23, 11
    x = rand_x(2, T, 24)
    x2 = x.clone()
    x2[:, t] += 1.0
    for backend in ("torch", "reference"):
        with torch.no_grad():
            y, y2 = layer(x, backend=backend)[0], layer(x2, backend=backend)[0]
        assert torch.equal(y[:, :t], y2[:, :t]), backend
        assert (y[:, t] - y2[:, t]).abs().max() > 1e-6, backend


@pytest.mark.parametrize("T1", [2, 9, 16], ids=lambda v: f"T1={v}")
def test_two_halves_with_state_equal_one_run(T1):
    """Split at T1 (shorter than the conv history, inside a chunk, at a chunk edge): carrying
    PRISMState (recurrent state and conv history) gives the one-run output and final state."""
    layer = make_layer()
    x = rand_x(2, 27, 24)
    h0 = torch.randn(2, 3, 5, 8, dtype=F64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y, s = layer(x, initial_state=h0, output_final_state=True)
        y1, s1 = layer(x[:, :T1], initial_state=h0, output_final_state=True)
        y2, s2 = layer(x[:, T1:], initial_state=s1, output_final_state=True)
    assert rel_err(y, torch.cat([y1, y2], 1)) < TOL_F64
    assert rel_err(s.recurrent, s2.recurrent) < TOL_F64
    assert torch.equal(s.conv, s2.conv)


def test_bare_tensor_state_means_zero_conv_history():
    layer = make_layer()
    x = rand_x(1, 10, 24)
    h0 = torch.randn(1, 3, 5, 8, dtype=F64)
    with torch.no_grad():
        a = layer(x, initial_state=h0)[0]
        b = layer(x, initial_state=PRISMState(h0, torch.zeros(1, 3, 24, dtype=F64)))[0]
    assert torch.equal(a, b)


def test_bad_inputs():
    layer = make_layer()
    with pytest.raises(ValueError, match=r"\bx\b"):
        layer(rand_x(2, 5, 23))
    with pytest.raises(ValueError, match=r"\bx\b"):
        layer(rand_x(2, 5, 24)[0])
    with pytest.raises(ValueError, match="initial_state.conv"):
        layer(rand_x(2, 5, 24), initial_state=PRISMState(torch.zeros(2, 3, 5, 8, dtype=F64),
                                                            torch.zeros(2, 2, 24, dtype=F64)))
    with pytest.raises(ValueError, match="initial_state"):
        layer(rand_x(2, 5, 24), initial_state=torch.zeros(2, 3, 8, 5, dtype=F64))
    with pytest.raises(ValueError, match="backend"):
        layer(rand_x(2, 5, 24), backend="cuda")


def test_float32_backward_is_finite():
    layer = make_layer(dtype=torch.float32, hidden_size=32, num_heads=2, head_k_dim=16, num_steps=2, chunk_size=16)
    x = rand_x(2, 40, 32, dtype=torch.float32).requires_grad_(True)
    y, _ = layer(x)
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all()
    for name, prm in layer.named_parameters():
        assert prm.grad is not None and torch.isfinite(prm.grad).all(), name


def test_bfloat16_layer_runs():
    layer = make_layer(dtype=torch.bfloat16, hidden_size=32, num_heads=2, head_k_dim=16, num_steps=2)
    y, s = layer(rand_x(1, 20, 32, dtype=torch.bfloat16), output_final_state=True)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
    assert s.recurrent.dtype == torch.float32


def test_decay_init_range():
    layer = make_layer(decay_init=(0.95, 0.99))
    alpha = torch.sigmoid(layer.a_proj.bias)
    assert ((alpha >= 0.95 - 1e-9) & (alpha <= 0.99 + 1e-9)).all()


def test_triton_backend_unavailable_is_a_clear_error(monkeypatch):
    # stand in for a checkout without kernels/prism/chunk.py
    monkeypatch.setitem(sys.modules, "prismbench.kernels.prism.chunk", None)
    layer = make_layer(dtype=torch.float32)
    with pytest.raises(RuntimeError, match="chunk_prism"):
        layer(rand_x(1, 4, 24, dtype=torch.float32), backend="triton")


def test_triton_backend_takes_mixed_dtypes_as_under_cuda_autocast(monkeypatch):
    """Under CUDA autocast, F.normalize and sigmoid return float32 beside bf16 projections; the layer must
    hand the kernel one dtype (an H100 training run failed with `k.dtype=float32 must equal q.dtype=bfloat16`).
    CPU autocast keeps bf16 there, so float32 outputs are forced here, and the result must equal the
    torch backend's on the same mixed inputs."""
    import torch.nn.functional as F

    normalize, sigmoid = F.normalize, torch.sigmoid
    monkeypatch.setattr(F, "normalize", lambda *a, **k: normalize(*a, **k).float())
    monkeypatch.setattr(torch, "sigmoid", lambda x: sigmoid(x).float())
    layer = make_layer(dtype=torch.bfloat16, head_k_dim=16, chunk_size=16)
    x = rand_x(1, 21, 24, dtype=torch.bfloat16)
    y_tri, _ = layer(x, backend="triton")
    y_ref, _ = layer(x.double().to(torch.bfloat16), backend="torch")
    assert y_tri.dtype == torch.bfloat16 and torch.isfinite(y_tri).all()
    assert rel_err(y_ref.double(), y_tri.double()) < 2e-2
