"""The runner on real small sweeps: errors, unsupported points, interruption and resume."""
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from prismbench import registry, results, runner
from prismbench.cli import app
from prismbench.config import resolve
from prismbench.registry import Method, Unsupported

SWEEP = {
    "sweep": {
        "methods": ["sdpa", "prism-torch"],
        "T": [32, 48], "tokens": 96, "H": 2, "K": 16, "L": [1, 2],
        "dtype": "float32", "modes": ["fwd", "fwdbwd"], "device": "cpu",
    },
    "timing": {"cpu_warmup": 0, "cpu_reps": 2},
}


def _sdpa_inputs(shape, seed):
    return registry.get("sdpa").make_inputs(shape, seed)


def _broken_fn(x, shape):
    raise RuntimeError("injected kernel failure")


def _refusing_fn(x, shape):
    raise Unsupported("unsupported: backward refused by the library")


@pytest.fixture
def injected():
    """A method that always fails and one that refuses its point, registered for one test."""
    broken = Method(name="test-broken", family="peer", backend="test", make_inputs=_sdpa_inputs,
                    fn=_broken_fn, reference="sdpa")
    refusing = Method(name="test-refusing", family="peer", backend="test", make_inputs=_sdpa_inputs,
                      fn=_refusing_fn, modes=("fwd", "fwdbwd"))
    registry.register(broken)
    registry.register(refusing)
    yield
    registry.unregister("test-broken")
    registry.unregister("test-refusing")


def test_expand_sweeps_L_only_for_methods_that_use_it():
    cfg = resolve(SWEEP, None)
    specs = runner.expand(cfg, runner.resolve_methods(cfg), torch.device("cpu"))
    by = {}
    for s in specs:
        by.setdefault(s.method.name, set()).add((s.shape.T, s.L, s.mode, s.shape.B))
    assert by["sdpa"] == {(T, None, m, 96 // T) for T in (32, 48) for m in ("fwd", "fwdbwd")}
    assert by["prism-torch"] == {(T, L, m, 96 // T) for T in (32, 48) for L in (1, 2) for m in ("fwd", "fwdbwd")}


def test_measure_real_point_records_time_memory_and_errors():
    cfg = resolve(SWEEP, None)
    spec = next(s for s in runner.expand(cfg, [registry.get("prism-torch")], torch.device("cpu"))
                if s.mode == "fwdbwd" and s.L == 2)
    rec = runner.measure(spec, cfg)
    assert rec["status"] == "ok", rec.get("error")
    for f in results.POINT_FIELDS:
        assert f in rec, f
    assert rec["median_ms"] > 0 and rec["p20_ms"] <= rec["median_ms"] <= rec["p80_ms"]
    assert rec["tokens_per_s"] == pytest.approx(96 / (rec["median_ms"] / 1e3))
    # float32 against the float64 reference: output and every input gradient, all small
    assert set(rec["rel_err"]) == {"o", "dq", "dk", "dv", "du", "dp", "dbeta", "dg"}
    assert all(0 <= e < 1e-4 for e in rec["rel_err"].values()), rec["rel_err"]
    assert rec["state_size"] == 2 * 16 * 16


def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path, injected):
    cfg = resolve({**SWEEP, "sweep": {**SWEEP["sweep"], "methods": ["test-broken", "test-refusing", "sdpa"],
                                      "T": [32]}}, None)
    specs = runner.expand(cfg, runner.resolve_methods(cfg), torch.device("cpu"))
    path = tmp_path / "r.json"
    doc = runner.run_sweep(cfg, specs, results.new_document({}, {}), path)
    st = {(p["method"], p["mode"]): (p["status"], p["error"]) for p in doc["points"]}
    assert st[("test-broken", "fwd")] == ("error", "RuntimeError: injected kernel failure")
    assert st[("test-refusing", "fwdbwd")][0] == "unsupported"
    assert "refused by the library" in st[("test-refusing", "fwdbwd")][1]
    assert st[("sdpa", "fwd")] == ("ok", None) and st[("sdpa", "fwdbwd")] == ("ok", None)
    assert results.read(path)["points"] == json.loads(path.read_text())["points"]


def test_static_unsupported_dtype():
    cfg = resolve({**SWEEP, "sweep": {**SWEEP["sweep"], "dtype": "bfloat16", "methods": ["prism-reference"]}}, None)
    m = registry.get("prism-reference")
    spec = runner.expand(cfg, [m], torch.device("cpu"))[0]
    if "bfloat16" in m.dtypes:
        pytest.skip("prism-reference accepts bfloat16")
    rec = runner.measure(spec, cfg)
    assert rec["status"] == "unsupported" and "dtype bfloat16" in rec["error"]


def test_interrupted_run_keeps_points_and_resume_skips_them(tmp_path, injected):
    calls = {"n": 0}

    def flaky(x, shape):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the second method
        return registry.get("sdpa").fn(x, shape)

    registry.register(Method(name="test-flaky", family="peer", backend="test", make_inputs=_sdpa_inputs,
                             fn=flaky, modes=("fwd",)))
    try:
        sweep = {**SWEEP, "sweep": {**SWEEP["sweep"], "methods": ["sdpa", "test-flaky", "test-broken"],
                                    "T": [32], "modes": ["fwd"]}}
        cfg = resolve(sweep, None)
        specs = runner.expand(cfg, runner.resolve_methods(cfg), torch.device("cpu"))
        path = tmp_path / "r.json"
        with pytest.raises(KeyboardInterrupt):
            runner.run_sweep(cfg, specs, results.new_document({}, {}), path)
        kept = results.read(path)["points"]
        assert [(p["method"], p["status"]) for p in kept] == [("sdpa", "ok")]
        done = []
        doc = runner.run_sweep(cfg, specs, results.read(path), path, runner.resumable_keys(results.read(path)),
                               on_point=lambda s, r: done.append((s.method.name, r is None)))
        assert done == [("sdpa", True), ("test-flaky", False), ("test-broken", False)]
        assert kept[0] == doc["points"][0]  # the resumed point is untouched
        # errors are measured again on the next resume, ok points are not
        assert runner.resumable_keys(doc) == {results.point_key(p) for p in doc["points"][:2]}
    finally:
        registry.unregister("test-flaky")


def test_cli_run_resume_and_json(tmp_path, injected):
    cfgfile = tmp_path / "bench.toml"
    cfgfile.write_text("""
[sweep]
methods = ["sdpa", "test-broken"]
T = [32]
tokens = 64
H = 2
K = 16
dtype = "float32"
modes = ["fwd"]
device = "cuda"
[timing]
cpu_warmup = 0
cpu_reps = 2
[presets.smoke]
T = [16, 32]
device = "cpu"
""")
    cli = CliRunner()
    r = cli.invoke(app, ["run", "-c", str(cfgfile), "--device", "cpu", "-o", str(tmp_path), "--no-plot"])
    assert r.exit_code == 0, r.output
    assert "No GPU: running the `smoke` preset" in r.output
    path = tmp_path / "smoke-cpu.json"
    doc = results.read(path)
    assert {(p["method"], p["T"], p["status"]) for p in doc["points"]} == {
        ("sdpa", 16, "ok"), ("sdpa", 32, "ok"), ("test-broken", 16, "error"), ("test-broken", 32, "error")}
    assert doc["env"]["torch"] == torch.__version__ and "git_commit" in doc["env"]
    r = cli.invoke(app, ["run", "-c", str(cfgfile), "--device", "cpu", "-o", str(tmp_path), "--no-plot",
                         "--resume", "--json", "--methods", "sdpa"])
    assert r.exit_code == 0, r.output
    assert "Resuming" in r.output and "skipped (resume) 2" in r.output
    r = cli.invoke(app, ["run", "-c", str(cfgfile), "--device", "cpu", "-o", str(tmp_path), "--no-plot",
                         "--methods", "nope"])
    assert r.exit_code == 2 and "unknown method" in r.output


def test_nan_is_recorded_as_a_failure_value(tmp_path):
    doc = results.new_document({}, {})
    doc["points"].append({"method": "m", "mode": "fwd", "dtype": "float32", "B": 1, "T": 1, "H": 1, "K": 16,
                          "V": 16, "L": None, "device": "cpu", "status": "error", "tokens_per_s": 1.0,
                          "rel_err": {"o": float("nan")}})
    results.write(doc, tmp_path / "x.json")
    back = results.read(tmp_path / "x.json")
    assert back["points"][0]["rel_err"]["o"] == "nan"
    assert math.isnan(results.as_float(back["points"][0]["rel_err"]["o"]))


class _RefuseBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        raise Unsupported("unsupported: backward refused (test)")


def test_backward_refusal_keeps_the_forward_point_and_its_error():
    """The error check runs fwd+bwd once per shape; a backward refusal must not spoil the fwd point."""
    sdpa = registry.get("sdpa")
    registry.register(Method(name="test-fwd-only", family="peer", backend="test", make_inputs=_sdpa_inputs,
                             fn=lambda x, s: _RefuseBackward.apply(sdpa.fn(x, s)), reference="sdpa"))
    try:
        cfg = resolve({**SWEEP, "sweep": {**SWEEP["sweep"], "methods": ["test-fwd-only"], "T": [32]}}, None)
        specs = runner.expand(cfg, runner.resolve_methods(cfg), torch.device("cpu"))
        memo = runner.ErrorMemo()
        recs = {s.mode: runner.measure(s, cfg, memo) for s in specs}
        assert recs["fwd"]["status"] == "ok" and set(recs["fwd"]["rel_err"]) == {"o"}
        assert recs["fwd"]["rel_err"]["o"] < 1e-6
        assert recs["fwdbwd"]["status"] == "unsupported" and "refused (test)" in recs["fwdbwd"]["error"]
    finally:
        registry.unregister("test-fwd-only")


def test_a_kept_backward_refusal_holds_no_tensors():
    """ErrorMemo keeps a backward refusal for the fwdbwd point; it must not keep the frames (inputs, outputs) of the
    check that raised it: on a GPU they stayed allocated and inflated every later point's peak memory."""
    import gc
    import weakref

    sdpa = registry.get("sdpa")
    made = []

    def make_inputs(shape, seed):
        x = _sdpa_inputs(shape, seed)
        made.extend(weakref.ref(t) for t in x.values() if isinstance(t, torch.Tensor))
        return x

    registry.register(Method(name="test-fwd-only", family="peer", backend="test", make_inputs=make_inputs,
                             fn=lambda x, s: _RefuseBackward.apply(sdpa.fn(x, s)), reference="sdpa"))
    try:
        cfg = resolve({**SWEEP, "sweep": {**SWEEP["sweep"], "methods": ["test-fwd-only"], "T": [32]}}, None)
        spec = next(s for s in runner.expand(cfg, runner.resolve_methods(cfg), torch.device("cpu")) if s.mode == "fwd")
        memo = runner.ErrorMemo()
        errs, _ = memo.get(registry.get("test-fwd-only"), spec.shape, "fwd", cfg)
        assert set(errs) == {"o"} and made
        gc.collect()
        assert [r for r in made if r() is not None] == [], "the kept refusal holds the check's input tensors"
        with pytest.raises(Unsupported, match="refused"):
            memo.get(registry.get("test-fwd-only"), spec.shape, "fwdbwd", cfg)
    finally:
        registry.unregister("test-fwd-only")


def _raise(msg):
    raise RuntimeError(msg)


def test_reference_failure_keeps_the_points_timing():
    registry.register(Method(name="test-refbad-ref", family="peer", backend="test", make_inputs=_sdpa_inputs,
                             fn=lambda x, s: _raise("reference exploded")))
    registry.register(Method(name="test-refbad", family="peer", backend="test", make_inputs=_sdpa_inputs,
                             fn=registry.get("sdpa").fn, reference="test-refbad-ref"))
    try:
        cfg = resolve({**SWEEP, "sweep": {**SWEEP["sweep"], "methods": ["test-refbad"], "T": [32]}}, None)
        for spec in runner.expand(cfg, runner.resolve_methods(cfg), torch.device("cpu")):
            rec = runner.measure(spec, cfg, runner.ErrorMemo())
            assert rec["status"] == "ok" and rec["median_ms"] > 0
            assert rec["rel_err"] is None and "reference test-refbad-ref failed" in rec["rel_err_note"]
    finally:
        registry.unregister("test-refbad")
        registry.unregister("test-refbad-ref")


def test_nan_output_is_an_error_point_and_crashing_supports_is_recorded():
    sdpa = registry.get("sdpa")
    registry.register(Method(name="test-nan", family="peer", backend="test", make_inputs=_sdpa_inputs,
                             fn=lambda x, s: sdpa.fn(x, s) * float("nan"), reference="sdpa"))
    registry.register(Method(name="test-badsupports", family="peer", backend="test", make_inputs=_sdpa_inputs,
                             fn=sdpa.fn, supports=lambda s, m: _raise("supports() crashed")))
    try:
        cfg = resolve({**SWEEP, "sweep": {**SWEEP["sweep"], "methods": ["test-nan", "test-badsupports", "sdpa"],
                                          "T": [32]}}, None)
        specs = runner.expand(cfg, runner.resolve_methods(cfg), torch.device("cpu"))
        doc = runner.run_sweep(cfg, specs, results.new_document({}, {}), _tmp_path())
        st = {(p["method"], p["mode"]): p for p in doc["points"]}
        assert st[("test-nan", "fwd")]["status"] == "error" and "non-finite" in st[("test-nan", "fwd")]["error"]
        assert st[("test-badsupports", "fwd")]["status"] == "error"
        assert "supports() crashed" in st[("test-badsupports", "fwd")]["error"]
        assert st[("sdpa", "fwdbwd")]["status"] == "ok"  # the sweep went on
    finally:
        registry.unregister("test-nan")
        registry.unregister("test-badsupports")


def _tmp_path():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp()) / "r.json"


def test_json_output_is_strict_and_cpu_sweep_runs_without_preset(tmp_path):
    cfgfile = tmp_path / "bench.toml"
    cfgfile.write_text("""
[sweep]
methods = ["sdpa"]
T = [16]
tokens = 32
H = 1
K = 16
dtype = "float32"
modes = ["fwd"]
device = "any"
[timing]
cpu_warmup = 0
cpu_reps = 1
""")
    r = CliRunner().invoke(app, ["run", "-c", str(cfgfile), "--device", "cpu", "-o", str(tmp_path),
                                 "--no-plot", "--json"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "sweep-cpu.json").exists()
    text = r.stdout[r.stdout.index("{"):]
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert doc["points"][0]["status"] == "ok"
    r = CliRunner().invoke(app, ["run", "-c", str(cfgfile), "--device", "cpu", "-o", str(tmp_path), "-m", ","])
    assert r.exit_code == 2 and "names no method" in r.output


def test_resume_refuses_a_file_from_other_versions(tmp_path):
    cfgfile = tmp_path / "bench.toml"
    cfgfile.write_text('[sweep]\nmethods = ["sdpa"]\nT = [16]\ntokens = 16\nH = 1\nK = 16\ndtype = "float32"\n'
                       'modes = ["fwd"]\ndevice = "cpu"\n[timing]\ncpu_warmup = 0\ncpu_reps = 1\n')
    args = ["run", "-c", str(cfgfile), "--device", "cpu", "-o", str(tmp_path), "--no-plot"]
    assert CliRunner().invoke(app, args).exit_code == 0
    path = tmp_path / "sweep-cpu.json"
    doc = results.read(path)
    doc["env"]["torch"] = "1.0.0"
    results.write(doc, path)
    r = CliRunner().invoke(app, args + ["--resume"])
    assert r.exit_code == 2 and "torch was '1.0.0'" in r.output
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)


def _timed_point(method, T, median, p20, p80, status="ok"):
    return dict(method=method, family="x", backend="x", mode="fwd", dtype="bfloat16", B=1, T=T, H=1, K=16, V=16,
                L=None, median_ms=median, p20_ms=p20, p80_ms=p80, status=status, device="cuda")


def test_spread_is_the_p20_p80_span_over_the_median():
    assert results.spread(_timed_point("a", 8, 2.0, 1.9, 2.3)) == pytest.approx(0.2)
    assert results.spread(_timed_point("a", 8, 2.0, None, 2.3)) is None
    assert results.spread(_timed_point("a", 8, None, None, None, status="error")) is None


def test_summary_shows_the_spread_and_names_disturbed_points(monkeypatch):
    """Run 18's prism-triton L=1 point at T=2048 (0.670 ms, p20-p80 0.627-0.719) read 13% above the same point of a
    run minutes before; the summary names such points instead of leaving them to a reader of the JSON."""
    import io

    from rich.console import Console

    from prismbench import cli

    buf = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=buf, width=250))
    steady, noisy = _timed_point("steady", 2048, 0.591, 0.590, 0.593), _timed_point("noisy", 2048, 0.670, 0.627, 0.719)
    failed = _timed_point("failed", 2048, None, None, None, status="error")

    class Spec:
        def __init__(self, p):
            self.p = p

        def key(self):
            return results.point_key(self.p)

    doc = dict(points=[steady, noisy, failed])
    cli._summary(doc, [Spec(p) for p in doc["points"]])
    text = buf.getvalue()
    assert "p20-p80 %" in text and "13.7" in text and "0.5" in text
    assert "1 point(s) spread over 10%" in text and "noisy fwd T=2048 (14%)" in text and "steady fwd" not in text
    buf.truncate(0)
    cli._summary(dict(points=[steady]), [Spec(steady)])
    assert "spread over" not in buf.getvalue()
