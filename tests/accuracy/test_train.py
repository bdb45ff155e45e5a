"""Trainer, presets, report and the `prismbench accuracy` command (with the CI preset)."""
import json

import pytest
import torch
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from prismbench.accuracy import report
from prismbench.accuracy.presets import PAPER_TABLE4, PRESETS, Preset, get_preset
from prismbench.accuracy.train import run_one
from prismbench.accuracy_cli import accuracy

CI_EASY_TASK, CI_SOLVER, CI_MIN_ACCURACY = "mux", "transformer", 0.9
QUICK_STEPS = 12


@pytest.fixture(scope="module")
def app():
    a = typer.Typer()
    a.command("accuracy")(accuracy)
    a.command("noop")(lambda: None)  # keeps typer in multi-command mode, as in the real CLI
    return a


def test_run_one_record():
    torch.manual_seed(0)
    rec = run_one(get_preset("ci"), "mux", "linear-attn", seed=3, steps=QUICK_STEPS, device="cpu")
    assert rec["status"] == "ok", rec["reason"]
    for k in report.RECORD_KEYS + ("backend", "loss_curve", "final_loss", "test_positions", "n_params"):
        assert k in rec, k
    assert (rec["task"], rec["method"], rec["width"], rec["seed"], rec["steps"]) == ("mux", "linear-attn", 16, 3, QUICK_STEPS)
    assert 0.0 <= rec["accuracy"] <= 1.0
    assert rec["test_positions"] == get_preset("ci").test_samples  # one query per mux sequence
    # every step's loss was written (torch.empty is NaN-poisoned in tests)
    assert not rec["diverged"] and all(x == x for x in rec["loss_curve"])


def test_run_one_is_deterministic_on_cpu():
    a = run_one(get_preset("ci"), "local_xor", "transformer", seed=1, steps=QUICK_STEPS, device="cpu")
    b = run_one(get_preset("ci"), "local_xor", "transformer", seed=1, steps=QUICK_STEPS, device="cpu")
    assert a["accuracy"] == b["accuracy"] and a["loss_curve"] == b["loss_curve"]


def test_unavailable_and_failing_mixers_are_recorded(monkeypatch):
    import prismbench.accuracy.mixers as mx

    def unavailable(*a, **k):
        raise mx.MixerUnavailable("layer module missing")

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setitem(mx.MIXERS, "gla", mx.MixerEntry("gla", unavailable, "test"))
    monkeypatch.setitem(mx.MIXERS, "prism", mx.MixerEntry("prism", broken, "test"))
    r = run_one(get_preset("ci"), "mux", "gla", steps=2, device="cpu")
    assert r["status"] == "unavailable" and "layer module missing" in r["reason"] and r["accuracy"] is None
    r = run_one(get_preset("ci"), "mux", "prism", steps=2, device="cpu")
    assert r["status"] == "error" and "boom" in r["reason"]


def test_presets_validate():
    assert {"paper-caption", "authors-code", "ci"} <= set(PRESETS)
    cap, auth = get_preset("paper-caption"), get_preset("authors-code")
    assert all(s.seq_len == 128 and s.width == 16 for s in cap.tasks.values()) and cap.vocab_size == 64
    assert auth.vocab_size == 32 and auth.tasks["mqar"].width == 128 and auth.tasks["parity"].seq_len == 128
    assert set(PAPER_TABLE4) == set(cap.tasks)
    base = get_preset("ci").model_dump()
    with pytest.raises(ValidationError, match="bogus"):
        Preset(**{**base, "bogus": 1})
    with pytest.raises(ValidationError, match="tasks.nope"):
        Preset(**{**base, "tasks": {"nope": {"seq_len": 8, "width": 4}}})
    with pytest.raises(ValidationError, match="expect.mux.gdn"):
        Preset(**{**base, "expect": {"mux": {"gdn": 0.5}}})
    with pytest.raises(ValueError, match="preset='x'"):
        get_preset("x")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_task_generates(name):
    from prismbench.accuracy.tasks import IGNORE, TaskStream, Vocab

    p = get_preset(name)
    v = Vocab(p.vocab_size, p.n_noise)
    for task, s in p.tasks.items():
        x, y = TaskStream(task, seq_len=s.seq_len, vocab=v, seed=0, split="test", params=s.params).take(8)
        assert x.shape == (8, s.seq_len) and int(x.max()) < p.vocab_size
        assert ((y != IGNORE).sum(1) >= 1).all() and int(y.max()) < p.vocab_size


def test_ci_preset_end_to_end(app, tmp_path):
    """The CI check: the whole pipeline runs on the CPU and softmax attention solves mux."""
    res = CliRunner().invoke(app, ["accuracy", "--preset", "ci", "--device", "cpu", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    doc = report.read(tmp_path / "accuracy-ci.json")
    assert "env" in doc and doc["preset"]["name"] == "ci"
    recs = doc["records"]
    p = get_preset("ci")
    assert len(recs) == len(p.tasks) * len(p.methods) * len(p.seeds)
    assert all(r["status"] == "ok" and r["steps"] == p.steps for r in recs)
    easy = [r for r in recs if r["task"] == CI_EASY_TASK and r["method"] == CI_SOLVER]
    assert easy and all(r["accuracy"] >= CI_MIN_ACCURACY for r in easy), easy
    table = (tmp_path / "accuracy-ci.md").read_text()
    assert "| mux (16) |" in table and "0.98 / 0.98 / 0.98" in table
    assert (tmp_path / "accuracy-heatmap-ci.png").stat().st_size > 0
    # resume: nothing left to run
    res = CliRunner().invoke(app, ["accuracy", "--preset", "ci", "--device", "cpu", "--out", str(tmp_path), "--resume"])
    assert res.exit_code == 0 and "0 run(s)" in res.output, res.output
    assert len(report.read(tmp_path / "accuracy-ci.json")["records"]) == len(recs)


def test_width_sweep_and_unmet_expectation(app, tmp_path, monkeypatch):
    import prismbench.accuracy.presets as pr

    monkeypatch.setitem(pr.PRESETS, "ci", pr.PRESETS["ci"].model_copy(update={"steps": 3}))
    res = CliRunner().invoke(app, ["accuracy", "--preset", "ci", "--device", "cpu", "--out", str(tmp_path),
                                   "--tasks", "mux", "--methods", "transformer", "--width", "8,16",
                                   "--seeds", "0,1"])
    # 3 steps cannot solve mux: the preset's expectation fails the command
    assert res.exit_code == 1 and "expectation failed" in res.output, res.output
    doc = json.loads((tmp_path / "accuracy-ci.json").read_text())
    assert sorted({(r["width"], r["seed"]) for r in doc["records"]}) == [(8, 0), (8, 1), (16, 0), (16, 1)]
    assert (tmp_path / "accuracy-width-ci.png").stat().st_size > 0


@pytest.mark.parametrize("args, msg", [
    (["--tasks", "nope"], "--tasks"),
    (["--methods", "mamba"], "--methods"),
    (["--preset", "huge"], "preset='huge'"),
    (["--seeds", "a,b"], "--seeds"),
    (["--width", "0"], "--width"),
    (["--backend", "prism"], "--backend"),
    (["--jobs", "0"], "--jobs"),
])
def test_cli_bad_input(app, tmp_path, args, msg):
    res = CliRunner().invoke(app, ["accuracy", "--device", "cpu", "--out", str(tmp_path), *args])
    assert res.exit_code == 2 and msg in res.output, res.output


def test_backend_override_is_recorded(app, tmp_path):
    res = CliRunner().invoke(app, ["accuracy", "--preset", "ci", "--device", "cpu", "--out", str(tmp_path),
                                   "--tasks", "mux", "--methods", "gdn", "--steps", "2", "--backend", "gdn=naive",
                                   "--no-plot"])
    assert res.exit_code == 0, res.output
    doc = report.read(tmp_path / "accuracy-ci.json")
    assert doc["preset"]["mixer_kwargs"] == {"gdn": {"backend": "naive"}}
    assert doc["records"][0]["backend"] == "fla-naive-chunk-gated-delta-rule"


def test_parallel_jobs(app, tmp_path):
    res = CliRunner().invoke(app, ["accuracy", "--preset", "ci", "--device", "cpu", "--out", str(tmp_path),
                                   "--tasks", "local_xor", "--steps", "3", "--jobs", "2", "--no-plot"])
    assert res.exit_code == 0, res.output
    recs = report.read(tmp_path / "accuracy-ci.json")["records"]
    assert sorted(r["method"] for r in recs) == ["linear-attn", "transformer"]
    assert all(r["status"] == "ok" for r in recs)


def test_train_data_equals_the_stream_batch_by_batch():
    from prismbench.accuracy.tasks import TaskStream, Vocab
    from prismbench.accuracy.train import CHUNK_STEPS, train_data

    p = get_preset("ci")
    steps = CHUNK_STEPS + 7  # crosses a chunk boundary
    x, y = train_data(p, "mux", 2, steps)
    assert x.shape == y.shape == (steps, p.batch_size, 32) and x.dtype == torch.uint8 and y.dtype == torch.int16
    s = TaskStream("mux", seq_len=32, vocab=Vocab(p.vocab_size, p.n_noise), seed=2, split="train")
    xs, ys = zip(*(s.take(p.batch_size) for _ in range(steps)))
    assert torch.equal(x.long(), torch.stack(xs)) and torch.equal(y.long(), torch.stack(ys))


def test_run_group_matches_run_one_on_cpu():
    """Lockstep training (one device counter per run picks its batch) is the same training as run_one."""
    from prismbench.accuracy.train import run_group

    p = get_preset("ci")
    runs = [("mux", "transformer", None, 0), ("local_xor", "linear-attn", 16, 1), ("mux", "linear-attn", 8, 2)]
    recs = run_group(p, runs, steps=QUICK_STEPS, device="cpu")
    for (t, m, w, s), r in zip(runs, recs):
        one = run_one(p, t, m, w, s, steps=QUICK_STEPS, device="cpu")
        assert r["status"] == one["status"] == "ok", (r["reason"], one["reason"])
        assert (r["task"], r["method"], r["width"], r["seed"]) == (one["task"], one["method"], one["width"], one["seed"])
        assert r["loss_curve"] == one["loss_curve"] and r["accuracy"] == one["accuracy"]
        assert r["group_size"] == 3 and r["cuda_graph"] is False


def test_run_group_keeps_going_when_a_run_fails(monkeypatch):
    import prismbench.accuracy.mixers as mx
    from prismbench.accuracy.train import _Trainer, run_group

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setitem(mx.MIXERS, "prism", mx.MixerEntry("prism", broken, "test"))
    real_step = _Trainer.step

    def step(self):  # the second run fails at its 5th step
        if self.rec["seed"] == 1 and int(self.step_idx) == 4:
            raise RuntimeError("step failed")
        real_step(self)

    monkeypatch.setattr(_Trainer, "step", step)
    recs = run_group(get_preset("ci"), [("mux", "prism", None, 0), ("mux", "transformer", None, 1),
                                        ("mux", "transformer", None, 2)], steps=QUICK_STEPS, device="cpu")
    assert [r["status"] for r in recs] == ["error", "error", "ok"]
    assert "boom" in recs[0]["reason"] and "step failed" in recs[1]["reason"]
    assert recs[0]["accuracy"] is None and recs[1]["accuracy"] is None and 0 <= recs[2]["accuracy"] <= 1


def test_lockstep_cli_with_data_workers(app, tmp_path, monkeypatch):
    import prismbench.accuracy.presets as pr

    monkeypatch.setitem(pr.PRESETS, "ci", pr.PRESETS["ci"].model_copy(update={"steps": 5, "expect": {}}))
    args = ["accuracy", "--preset", "ci", "--device", "cpu", "--out", str(tmp_path), "--seeds", "0,1",
            "--lockstep", "3", "--jobs", "2", "--no-plot"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    recs = report.read(tmp_path / "accuracy-ci.json")["records"]
    assert len(recs) == 8 and all(r["status"] == "ok" for r in recs)
    # method-major groups of at most 3: transformer 3 + 1, linear-attn 3 + 1
    assert sorted(r["group_size"] for r in recs) == [1, 1, 3, 3, 3, 3, 3, 3]
    one = run_one(get_preset("ci"), "local_xor", "linear-attn", None, 1, steps=5, device="cpu")
    got = next(r for r in recs if (r["task"], r["method"], r["seed"]) == ("local_xor", "linear-attn", 1))
    assert got["loss_curve"] == one["loss_curve"] and got["accuracy"] == one["accuracy"]
    # resuming with one more seed runs only its 4 runs, and keeps each invocation's provenance
    res = CliRunner().invoke(app, args[:8] + ["0,1,2"] + args[9:] + ["--resume"])
    assert res.exit_code == 0, res.output
    doc = report.read(tmp_path / "accuracy-ci.json")
    assert len(doc["records"]) == 12 and len(doc["previous_invocations"]) == 1
    assert "argv" in doc["previous_invocations"][0] and all("git_commit" in r for r in doc["records"])
    res = CliRunner().invoke(app, ["accuracy", "--preset", "ci", "--lockstep", "-1", "--device", "cpu"])
    assert res.exit_code == 2 and "--lockstep" in res.output


def test_lockstep_time_budget_stops_before_a_group_that_would_not_finish(app, tmp_path, monkeypatch):
    """With --lockstep, --time-budget starts no group that would end past it, judging by the longest so far."""
    import time as _time

    import prismbench.accuracy.train as tr

    def fake_group(p, runs, *, steps, device, graphs, data, on_step):
        _time.sleep(0.4)
        return [dict(tr._record(p, t, m, w, s, steps, torch.device("cpu")), accuracy=1.0, group_size=len(runs))
                for t, m, w, s in runs]

    monkeypatch.setattr(tr, "run_group", fake_group)
    res = CliRunner().invoke(app, ["accuracy", "--preset", "ci", "--device", "cpu", "--out", str(tmp_path),
                                   "--seeds", "0,1", "--lockstep", "2", "--time-budget", "0.6", "--no-plot"])
    assert res.exit_code == 0, res.output
    recs = report.read(tmp_path / "accuracy-ci.json")["records"]
    # group 1 (2 runs) took 0.4 s; a second would end at ~0.8 s > 0.6 s: not started
    assert len(recs) == 2 and "6 run(s) not started" in res.output, res.output


def test_figure_title_counts_seeds_per_width():
    """A width sweep on one seed beside three seeds at the main width: the figures' title says so per width."""
    from prismbench.accuracy.plots import _title

    rec = dict(task="mqar", method="prism", steps=10, device="cpu", status="ok")
    doc = dict(preset=dict(name="p"), records=[dict(rec, width=16, seed=s) for s in (0, 1, 2)]
               + [dict(rec, width=w, seed=0) for w in (32, 64)])
    assert "seeds per width D=16: 3, D=32: 1, D=64: 1" in _title(doc)
    doc["records"] = doc["records"][:3]
    assert "3 seed(s)" in _title(doc)
