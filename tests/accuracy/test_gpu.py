"""GPU checks of the trainer: every mixer trains on CUDA (or says why not), and the training
steps of the mixers written here make no host sync."""
import os

import pytest
import torch

from prismbench.accuracy.presets import ALL_METHODS, get_preset
from prismbench.accuracy.train import run_one

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

GPU_STEPS = 30  # > 1 so that steps after the first run under the sync check
SYNC_FREE = ("transformer", "linear-attn", "gdn")  # mixers written in prismbench.accuracy.mixers


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_mixer_trains_on_cuda(method):
    rec = run_one(get_preset("ci"), "mux", method, steps=GPU_STEPS, device="cuda", sync_check=method in SYNC_FREE)
    assert rec["status"] in ("ok", "unavailable"), rec["reason"]
    if rec["status"] == "ok":
        assert 0.0 <= rec["accuracy"] <= 1.0 and not rec["diverged"], rec
        assert torch.cuda.get_device_name() in rec["device"]


@pytest.mark.parametrize("method", ALL_METHODS)
def test_lockstep_graph_replay_matches_eager(method):
    """A run trained by replaying its captured CUDA graph (run_group) trains like the eager run_one."""
    from prismbench.accuracy.train import run_group

    p = get_preset("ci")
    eager = run_one(p, "mux", method, seed=0, steps=GPU_STEPS, device="cuda")
    if eager["status"] == "unavailable":
        pytest.skip(eager["reason"])
    assert eager["status"] == "ok", eager["reason"]
    [rec] = run_group(p, [("mux", method, None, 0)], steps=GPU_STEPS, device="cuda", graphs=True)
    assert rec["status"] == "ok", rec["reason"]
    assert rec["cuda_graph"] is True, rec.get("cuda_graph_error")
    torch.testing.assert_close(torch.tensor(rec["loss_curve"]), torch.tensor(eager["loss_curve"]), rtol=1e-3, atol=1e-4)
    assert abs(rec["accuracy"] - eager["accuracy"]) <= 0.02


@pytest.mark.parametrize("width,choice,backend", [
    (16, "auto", "fla-fused-recurrent-gla"), (64, "auto", "fla-fused-recurrent-gla"),
    pytest.param(64, "chunk", "fla-chunk-gla", marks=pytest.mark.skipif(
        not os.environ.get("PRISMBENCH_SLOW_GPU_TESTS"),
        reason="chunk_gla autotunes for minutes per new head width; set PRISMBENCH_SLOW_GPU_TESTS=1")),
])
def test_gla_backend_on_cuda(width, choice, backend):
    """"auto" is fused_recurrent_gla at every width, forward and backward; "chunk" is chunk_gla for training."""
    from prismbench.accuracy.mixers import build_mixer

    m = build_mixer("gla", width, 1, device="cuda", backend=choice)
    assert m.backend.startswith(backend)
    x = torch.randn(4, 128, width, device="cuda", requires_grad=True)
    m(x).square().sum().backward()
    assert torch.isfinite(x.grad).all()
