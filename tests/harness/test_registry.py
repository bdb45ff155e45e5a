"""The method registry: SPEC section 4 names and families, complete declarations."""
import pytest
import torch

from prismbench import registry
from prismbench.registry import Method, Shape

SPEC_FAMILIES = {
    "prism-reference": "prism", "prism-torch": "prism", "prism-triton": "prism", "prism-fla-dplr": "prism",
    "ttt-loop": "ttt", "ttt-loop-simplified": "ttt", "ttt-triton": "ttt", "ttt-fla-chunk": "ttt",
    "gla-fla-chunk": "gla", "gla-fla-recurrent": "gla", "gla-naive": "gla",
    "gdn-fla-chunk": "peer", "gdp-fla-chunk": "peer", "sdpa": "peer",
    # additions beyond SPEC section 4 (README, "Method names"): fla's float64-capable naive references
    "gdn-naive": "peer", "gdp-naive": "peer",
}


def test_registered_names_follow_spec():
    ms = registry.all_methods()
    for name, m in ms.items():
        assert name in SPEC_FAMILIES, f"{name} is not a SPEC section 4 method name"
        assert m.family == SPEC_FAMILIES[name], name
        if m.reference is not None:
            assert m.reference in ms, f"{name}: reference {m.reference} is not registered"


@pytest.mark.parametrize("name", sorted(registry.all_methods()))
def test_cpu_methods_build_valid_inputs(name):
    m = registry.get(name)
    if "cpu" not in m.devices or "float32" not in m.dtypes:
        pytest.skip(f"{name} does not run on the CPU in float32")
    shape = Shape(B=1, T=16, H=2, K=16, V=16, L=2, dtype=torch.float32, device=torch.device("cpu"))
    if m.unsupported_reason(shape, "fwd"):
        pytest.skip(m.unsupported_reason(shape, "fwd"))
    x = m.make_inputs(shape, 0)
    assert any(t.requires_grad for t in x.values())
    assert x == x and all(torch.isfinite(t).all() for t in x.values() if t.is_floating_point())
    y = m.fn(x, shape)
    assert y.shape[:2] == (1, 16) and torch.isfinite(y).all()


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError, match="family='rnn'"):
        Method(name="x", family="rnn", backend="b", make_inputs=None, fn=None)
    with pytest.raises(ValueError, match="modes"):
        Method(name="x", family="peer", backend="b", make_inputs=None, fn=None, modes=("bwd",))
    m = Method(name="test-dup", family="peer", backend="b", make_inputs=None, fn=None)
    registry.register(m)
    try:
        with pytest.raises(ValueError, match="registered twice"):
            registry.register(Method(name="test-dup", family="peer", backend="b", make_inputs=None, fn=None))
    finally:
        registry.unregister("test-dup")


def test_unknown_method_lists_known():
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        registry.get("nope")


def test_unsupported_reason_names_device_and_dtype():
    m = Method(name="x", family="peer", backend="b", make_inputs=None, fn=None, devices=("cuda",),
               dtypes=("bfloat16",))
    s = Shape(1, 16, 1, 16, 16, 1, torch.float32, torch.device("cpu"))
    assert "device cpu" in m.unsupported_reason(s, "fwd")
    assert "dtype float32" in m.unsupported_reason(s.with_(device=torch.device("cuda")), "fwd")
