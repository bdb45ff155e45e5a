"""Mixers and the tiny model: shapes, causality, backend labels, unavailable mixers, bad input."""
import pytest
import torch

from prismbench.accuracy.mixers import MIXERS, MixerUnavailable, build_mixer
from prismbench.accuracy.model import TinyLM
from prismbench.accuracy.presets import ALL_METHODS

B, T_AWKWARD, D = 2, 37, 12  # T not a multiple of any chunk size, D = 3 heads of 4
CUT = 20  # outputs at positions <= CUT must not depend on inputs after it


def _build_or_skip(name, heads=3):
    try:
        return build_mixer(name, D, heads, "cpu")
    except MixerUnavailable as e:
        pytest.skip(f"{name} unavailable here: {e}")


def test_every_method_has_a_mixer():
    assert set(ALL_METHODS) == set(MIXERS)


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_mixer_is_causal_and_labelled(name):
    torch.manual_seed(0)
    m = _build_or_skip(name)
    assert isinstance(m.backend, str) and m.backend
    x = torch.randn(B, T_AWKWARD, D)
    y = m(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    x2 = x.clone()
    x2[:, CUT + 1 :] = 1e3 * torch.randn(B, T_AWKWARD - CUT - 1, D)  # poison the future
    y2 = m(x2)
    torch.testing.assert_close(y2[:, : CUT + 1], y[:, : CUT + 1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(y2[:, CUT + 1 :], y[:, CUT + 1 :])


@pytest.mark.parametrize("name", ["transformer", "linear-attn", "gdn"])
def test_own_mixers_get_gradients(name):
    torch.manual_seed(1)
    m = build_mixer(name, D, 3, "cpu")
    m(torch.randn(B, T_AWKWARD, D)).square().mean().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_missing_mixer_is_reported_not_dropped(monkeypatch):
    import prismbench.accuracy.mixers as mx

    def gone(*a, **k):
        raise MixerUnavailable("ttt-linear: module prismbench.baselines.ttt.layer is not available")

    monkeypatch.setitem(mx.MIXERS, "ttt-linear", mx.MixerEntry("ttt-linear", gone, "test"))
    with pytest.raises(MixerUnavailable, match="not available"):
        build_mixer("ttt-linear", D, 1, "cpu")


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="mixer='nope'"):
        build_mixer("nope", 16)
    with pytest.raises(ValueError, match="width=10 .* heads=3"):
        build_mixer("transformer", 10, 3)
    with pytest.raises(ValueError, match="backend='x'"):
        build_mixer("gdn", 16, 1, backend="x")
    with pytest.raises(ValueError, match="vocab_size=1"):
        TinyLM(1, 16, "transformer")


def test_tiny_lm_shapes():
    torch.manual_seed(0)
    m = TinyLM(vocab_size=32, width=16, mixer="linear-attn", n_layers=2)
    logits = m(torch.randint(0, 32, (3, T_AWKWARD)))
    assert logits.shape == (3, T_AWKWARD, 32) and torch.isfinite(logits).all()
    assert m.backend == "fla-naive-chunk-linear-attn" and m.n_params() > 0


def test_gdn_backends_agree():
    """The GDN mixer on PRISM's L=1 chunked form (the default off fla's Triton path) == on fla's PyTorch chunk
    reference: same weights, same output and input gradient (T=100: a partial last chunk for both)."""
    from prismbench.accuracy.mixers import build_mixer

    torch.manual_seed(0)
    a = build_mixer("gdn", 16, 2, backend="prism-torch")
    b = build_mixer("gdn", 16, 2, backend="naive")
    b.load_state_dict(a.state_dict())
    assert a.backend.startswith("prism-torch") and b.backend == "fla-naive-chunk-gated-delta-rule"
    x = torch.randn(3, 100, 16, requires_grad=True)
    ya = a(x)
    (ga,) = torch.autograd.grad(ya.square().sum(), x)
    yb = b(x)
    (gb,) = torch.autograd.grad(yb.square().sum(), x)
    torch.testing.assert_close(ya, yb, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-5)


def test_gla_backend_choice():
    from prismbench.accuracy.mixers import MixerUnavailable, build_mixer

    assert build_mixer("gla", 16, 1, device="cpu").backend == "fla-naive-recurrent-gla"
    with pytest.raises(MixerUnavailable, match="needs CUDA"):
        build_mixer("gla", 16, 1, device="cpu", backend="chunk")
    with pytest.raises(ValueError, match="backend='x'"):
        build_mixer("gla", 16, 1, device="cpu", backend="x")
