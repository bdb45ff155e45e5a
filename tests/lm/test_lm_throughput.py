"""CPU tests of the model-level training-throughput stack (prismbench.lm), `tiny` config.

Every model trains a few steps (loss finite and falling on its repeated batch); the Triton models run
under the interpreter at tiny sizes and must give the same logits as their PyTorch twins at init;
the runner records timeouts, skips, out-of-memory and unsupported points instead of stopping.
Sizes are awkward on purpose (T = 24, 20: not multiples of the chunk sizes 16 / 64).
"""
import math

import pytest
import torch

from prismbench import results as resmod
from prismbench.lm import LM_CONFIGS, LM_MIXERS, MODEL_ORDER, build_lm, count_parameters, resolve_models
from prismbench.lm import plots as lmplots
from prismbench.lm import throughput as th
from prismbench.lm.model import LMConfig, get_config

CPU = torch.device("cpu")
TRITON_MODELS = ("prism-triton", "ttt-triton")
#: logits of a Triton model vs its PyTorch twin at init, fp32 (the kernels keep fp32 state)
TWIN_RTOL = 1e-4


def _settings(**kw) -> th.TrainSettings:
    base = dict(config="tiny", seq_lens=(24,), tokens_per_step=48, warmup=1, steps=2, serial_warmup=0,
                serial_steps=2, point_budget_s=60.0, serial_budget_s=60.0, first_point_extra_s=0.0)
    base.update(kw)
    return th.TrainSettings(**base)


@pytest.mark.parametrize("name", MODEL_ORDER)  # Triton models under the interpreter
def test_every_model_trains_tiny(name):
    rec = th.train_point(name, _settings(), 24, CPU, budget_s=60.0)
    assert rec["status"] == "ok", rec["error"]
    assert rec["mode"] == "train" and rec["method"] == f"lm-{name}" and rec["family"] == LM_MIXERS[name].family
    assert (rec["B"], rec["T"], rec["dtype"]) == (2, 24, "float32")
    assert len(rec["losses"]) == 3 if not LM_MIXERS[name].serial else len(rec["losses"]) == 2
    assert all(math.isfinite(x) for x in rec["losses"]), rec["losses"]
    assert abs(rec["loss_first"] - math.log(256)) < 0.5  # about ln vocab at init
    assert rec["loss_decreased"] is True, rec["losses"]
    assert rec["tokens_per_s"] > 0 and rec["median_ms"] > 0 and rec["params"] > 0
    assert rec["backend"] and rec["state_size"] > 0


@pytest.mark.parametrize("tri,twin", [("prism-triton", "prism-torch"), ("ttt-triton", "ttt-loop")])
def test_triton_models_match_their_torch_twin(tri, twin):
    cfg = LM_CONFIGS["tiny"]
    ids = torch.randint(0, cfg.vocab_size, (1, 21), generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    a = build_lm(tri, cfg, CPU, L=2, max_T=20)
    torch.manual_seed(0)
    b = build_lm(twin, cfg, CPU, L=2, max_T=20)
    assert count_parameters(a) == count_parameters(b)
    la, lb = a(ids[:, :-1]), b(ids[:, :-1])
    assert not la.isnan().any()
    err = ((la - lb).norm() / lb.norm()).item()
    assert err < TWIN_RTOL, f"{tri} vs {twin}: logits rel err {err:.2e}"
    loss = a.loss(ids)
    loss.backward()
    grads = [p.grad for p in a.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_triton_model_unsupported_without_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    rec = th.train_point("prism-triton", _settings(), 24, CPU, budget_s=60.0)
    assert rec["status"] == "unsupported" and "CUDA" in rec["error"]


def test_config_sizes_and_counts():
    c = LM_CONFIGS["130m"]
    assert (c.hidden_size, c.num_layers, c.num_heads, c.head_dim, c.vocab_size) == (768, 12, 12, 64, 32000)
    torch.manual_seed(0)
    lm = build_lm("transformer", c, CPU)
    n = count_parameters(lm)
    assert 0.10e9 < n < 0.15e9, n
    assert count_parameters(lm, non_embedding=True) == n - 32000 * 768  # the tied head counts once
    assert lm.embed.weight is not None and sum(p is lm.embed.weight for p in lm.parameters()) == 1


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match=r"seq_lens\[0\]=48 does not divide tokens_per_step=64"):
        th.TrainSettings(config="tiny", seq_lens=(48,), tokens_per_step=64)
    with pytest.raises(ValueError, match=r"config='1b'"):
        get_config("1b")
    with pytest.raises(ValueError, match=r"unknown model\(s\) \['mamba'\]"):
        resolve_models("gla,mamba")
    with pytest.raises(ValueError, match=r"L=0"):
        build_lm("prism-torch", "tiny", CPU, L=0)
    with pytest.raises(ValueError, match=r"num_heads=5"):
        LMConfig("x", 10, 32, 1, 5, 8)
    with pytest.raises(ValueError, match=r"precision='fp8'"):
        th.TrainSettings(config="tiny", seq_lens=(32,), tokens_per_step=64, precision="fp8")
    assert resolve_models("all") == list(MODEL_ORDER)
    assert resolve_models("ttt-loop,gla") == ["gla", "ttt-loop"]  # run order, slow loops last


def test_run_writes_results_and_figures(tmp_path):
    s = _settings(seq_lens=(16, 24), tokens_per_step=48)
    path = tmp_path / "train-tiny-cpu.json"
    seen = []
    doc = th.run_train_throughput(s, ["prism-torch", "ttt-loop", "transformer"], CPU, path, on_point=seen.append)
    assert len(seen) == 6 and [p["method"] for p in doc["points"]][:2] == ["lm-transformer"] * 2  # MODEL_ORDER
    back = resmod.read(path)  # validates schema, key fields, statuses
    assert back["config"]["kind"] == "train-throughput" and back["env"]["device"] == "cpu"
    assert all(p["status"] == "ok" for p in back["points"]), [p["error"] for p in back["points"]]
    assert {p["model"] for p in back["points"]} == {"tiny"}
    rows = lmplots.ratio_rows(back["points"])
    assert {(r["ttt"], r["T"]) for r in rows} == {("ttt-loop", 16), ("ttt-loop", 24)}
    r = rows[0]
    pp = next(p for p in back["points"] if p["mixer"] == "prism-torch" and p["T"] == r["T"])
    tp = next(p for p in back["points"] if p["mixer"] == "ttt-loop" and p["T"] == r["T"])
    assert r["ratio"] == pytest.approx(pp["tokens_per_s"] / tp["tokens_per_s"])
    written = lmplots.plot_train_files([path], tmp_path / "fig")
    names = {p.name for p in written}
    assert {"train-tiny-cpu-train_tokens_vs_T.png", "train-tiny-cpu-train_prism_ttt_ratio.png",
            "train-tiny-cpu-train_table.md"} <= names
    table = (tmp_path / "fig" / "train-tiny-cpu-train_table.md").read_text()
    assert "| prism-torch |" in table and "| ttt-loop |" in table


def test_timeout_is_recorded_and_longer_T_skipped():
    s = _settings(seq_lens=(16, 24), tokens_per_step=48, point_budget_s=0.02)
    doc = th.run_train_throughput(s, ["gla"], CPU, path=None)
    a, b = doc["points"]
    assert a["status"] == "error" and a["error"].startswith("timeout"), a["error"]
    assert b["status"] == "error" and "timed out at T=16" in b["error"]


def test_serial_model_skips_predicted_overrun(monkeypatch):
    def fake(name, settings, T, device, budget_s=None):
        rec = th._base_point(name, settings, T, device)
        rec.update(status="ok", median_ms=1000.0, tokens_per_s=settings.tokens_per_step)
        return rec

    monkeypatch.setattr(th, "train_point", fake)
    s = _settings(seq_lens=(12, 24, 48), tokens_per_step=48, serial_steps=1, serial_budget_s=1.5)
    doc = th.run_train_throughput(s, ["ttt-loop"], CPU, path=None)
    a, b, c = doc["points"]
    assert a["status"] == "ok"
    assert b["status"] == "error" and b["error"].startswith("skipped: predicted 2 s per step")
    assert b["predicted_step_s"] == pytest.approx(2.0) and b["tokens_per_s_predicted"] == pytest.approx(24.0)
    assert c["status"] == "error"


def test_out_of_memory_is_recorded(monkeypatch):
    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB")

    monkeypatch.setattr(th, "build_lm", oom)
    rec = th.train_point("gla", _settings(), 24, CPU, budget_s=10.0)
    assert rec["status"] == "error" and rec["error"].startswith("out of memory")


def test_cli_train_throughput(tmp_path):
    from typer.testing import CliRunner

    from prismbench.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["train-throughput", "--config", "tiny", "--models", "transformer,gdn", "--T", "16",
                            "--tokens-per-step", "32", "--warmup", "1", "--steps", "2", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    doc = resmod.read(tmp_path / "train-tiny-cpu.json")
    assert [p["method"] for p in doc["points"]] == ["lm-gdn", "lm-transformer"]
    assert (tmp_path / "figures" / "train-tiny-cpu-train_tokens_vs_T.png").exists()
    r = runner.invoke(app, ["train-throughput", "--config", "tiny", "--T", "16,x"])
    assert r.exit_code == 2 and "--T='16,x'" in r.output
    r = runner.invoke(app, ["train-throughput", "--config", "tiny", "--T", "48", "--tokens-per-step", "64"])
    assert r.exit_code == 2 and "seq_lens[0]=48" in r.output
    r = runner.invoke(app, ["train-throughput", "--config", "tiny", "--models", "transformer", "--dry-run"])
    assert r.exit_code == 0 and "transformer" in r.output


def test_a_timeout_wrapped_by_a_library_is_recorded_as_a_timeout():
    """The point's alarm can fire inside Triton's compiler, which re-raises it as its own error."""
    from prismbench.lm.throughput import PointTimeout, _timeout_in_chain

    class CompilationError(Exception):
        pass

    t = PointTimeout("timeout: lm-gdn T=2048 ran past its budget of 110 s")
    try:
        try:
            raise t
        except PointTimeout as inner:
            raise CompilationError("at 28:10: ...") from inner
    except CompilationError as e:
        wrapped = e
    assert _timeout_in_chain(wrapped) is t and _timeout_in_chain(t) is t
    assert _timeout_in_chain(CompilationError("real compile error")) is None
