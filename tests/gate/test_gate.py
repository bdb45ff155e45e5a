"""The regression gate on real small results files made by the smoke run (issue 9, item 3).

One CPU smoke run per session (module fixture: the repo's `smoke` preset shrunk to one T and one K,
methods sdpa and prism-torch), then the gate's cases through the CLI: identical files pass; one
point slowed by 20% fails naming it; a point erroring fails; different schema versions exit 2; and
the rest of the verdicts (missing, new, skipped, absolute mode, tolerance edges, bench.toml [gate]).
"""
from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prismbench import config, gate, results
from prismbench.cli import app

ROOT = Path(__file__).resolve().parents[2]
SLOW = 0.8           # "slowed by 20%": tokens/s times 0.8
METHOD = "prism-torch"
REF = "sdpa"


def _toml(d: dict, indent: str = "") -> str:
    """Tiny TOML writer for the nested tables of a bench.toml (strings, numbers, lists)."""
    scalars, tables = [], []
    for k, v in d.items():
        (tables if isinstance(v, dict) else scalars).append((k, v))
    out = [f"{k} = {json.dumps(v)}" for k, v in scalars]
    for k, v in tables:
        name = f"{indent}{k}"
        out.append(f"\n[{name}]")
        out.append(_toml(v, name + "."))
    return "\n".join(out)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    """Run the repo's smoke preset once (shrunk: T=32, K=16, L in {1, 2}, sdpa + prism-torch) with
    a bench.toml whose [gate] names sdpa as the reference; returns paths and the document."""
    d = tmp_path_factory.mktemp("gate-smoke")
    bench = tomllib.loads((ROOT / "bench.toml").read_text())
    bench["presets"]["smoke"].update(T=[32], tokens=64, K=[16], L=[1, 2],
                                     timing={"cpu_warmup": 1, "cpu_reps": 3})
    bench["gate"] = {"reference": REF, "tolerance": 0.05}
    cfg = d / "bench.toml"
    cfg.write_text(_toml(bench) + "\n")
    r = CliRunner().invoke(app, ["run", "--config", str(cfg), "--preset", "smoke", "--device", "cpu",
                                 "-o", str(d / "out"), "--no-plot", "--methods", f"{REF},{METHOD}"])
    assert r.exit_code == 0, r.output
    path = d / "out" / "smoke-cpu.json"
    doc = results.read(path)
    assert {p["status"] for p in doc["points"]} == {"ok"}, doc["points"]
    assert {p["method"] for p in doc["points"]} == {REF, METHOD}
    return {"dir": d, "config": cfg, "path": path, "doc": doc}


def _gate(smoke, current: Path, *args: str, baseline: Path | None = None):
    argv = ["gate", str(current), "--baseline", str(baseline or smoke["path"]),
            "--config", str(smoke["config"]), *args]
    return CliRunner().invoke(app, argv)


def _variant(smoke, name: str, edit) -> Path:
    doc = copy.deepcopy(smoke["doc"])
    edit(doc)
    p = smoke["dir"] / f"{name}.json"
    p.write_text(json.dumps(doc))
    return p


def _pick(doc, method=METHOD, mode="fwd", L=2) -> dict:
    return next(p for p in doc["points"] if p["method"] == method and p["mode"] == mode and p["L"] == L)


def _label(p: dict) -> str:
    L = f" L={p['L']}" if p["L"] is not None else ""
    return f"{p['method']} {p['mode']} {p['dtype']} B={p['B']} T={p['T']} H={p['H']} K={p['K']} V={p['V']}{L}"


def _slow(p: dict, factor: float) -> None:
    p["tokens_per_s"] *= factor
    p["median_ms"] /= factor


def _report(path: Path) -> dict:
    return json.loads(path.read_text())


# ---------------------------------------------------------------- the four cases of issue 9, item 3
def test_identical_files_pass(smoke):
    rep = smoke["dir"] / "identical.json"
    r = _gate(smoke, smoke["path"], "--json", str(rep))
    assert r.exit_code == 0, r.output
    assert "gate passed" in r.output
    j = _report(rep)
    assert j["exit_code"] == 0 and j["failures"] == [] and j["compare"] == "ratio"
    assert j["reference"] == REF, "reference must come from the --config [gate] table"
    assert {row["verdict"] for row in j["rows"]} == {"pass", "reference"}
    assert all(row["change"] == 0.0 for row in j["rows"])
    assert len(j["rows"]) == len(smoke["doc"]["points"])


def test_one_method_slowed_20_percent_fails_naming_the_point(smoke):
    target = _pick(smoke["doc"])
    cur = _variant(smoke, "slow20", lambda d: _slow(_pick(d), SLOW))
    rep = smoke["dir"] / "slow20-report.json"
    r = _gate(smoke, cur, "--json", str(rep))
    assert r.exit_code == 1, r.output
    assert f"FAIL {_label(target)}: slower" in r.output
    j = _report(rep)
    fails = [row for row in j["rows"] if row["fail"]]
    assert len(fails) == 1 and fails[0]["verdict"] == "slower"
    assert fails[0]["change"] == pytest.approx(SLOW - 1, rel=1e-9)
    assert j["failures"][0].startswith(_label(target))


def test_point_erroring_fails(smoke):
    target = _pick(smoke["doc"], mode="fwdbwd", L=1)

    def edit(d):
        p = _pick(d, mode="fwdbwd", L=1)
        p.update(status="error", error="RuntimeError: injected", tokens_per_s=None, median_ms=None)

    r = _gate(smoke, _variant(smoke, "erroring", edit))
    assert r.exit_code == 1, r.output
    assert f"FAIL {_label(target)}: newly erroring (RuntimeError: injected)" in r.output


def test_different_schema_versions_exit_2(smoke):
    cur = _variant(smoke, "schema2", lambda d: d.update(schema_version=results.SCHEMA_VERSION + 1))
    r = _gate(smoke, cur)
    assert r.exit_code == 2, r.output
    assert "schema versions differ" in r.output
    r = _gate(smoke, smoke["path"], baseline=cur)
    assert r.exit_code == 2 and "schema versions differ" in r.output


# ---------------------------------------------------------------- the other verdicts
def test_ratio_semantics_reference_slowdown_is_not_a_regression(smoke):
    # the reference 20% slower everywhere: every ratio rises, nothing fails
    def slow_ref(d):
        for p in d["points"]:
            if p["method"] == REF:
                _slow(p, SLOW)

    assert _gate(smoke, _variant(smoke, "refslow", slow_ref)).exit_code == 0

    # the reference 25% faster: every other point's ratio falls by 20% and fails
    def fast_ref(d):
        for p in d["points"]:
            if p["method"] == REF:
                _slow(p, 1.25)

    rep = smoke["dir"] / "reffast.json"
    r = _gate(smoke, _variant(smoke, "reffast", fast_ref), "--json", str(rep))
    assert r.exit_code == 1
    rows = _report(rep)["rows"]
    assert all(row["verdict"] == ("reference" if row["method"] == REF else "slower") for row in rows)


def test_tolerance_edges(smoke):
    cur = _variant(smoke, "slow4", lambda d: _slow(_pick(d), 0.96))
    assert _gate(smoke, cur).exit_code == 0                          # 4% < 5% from [gate]
    assert _gate(smoke, cur, "--tolerance", "0.03").exit_code == 1   # the option overrides it
    r = _gate(smoke, cur, "--tolerance", "1.5")
    assert r.exit_code == 2 and "--tolerance=1.5" in r.output


def test_missing_point_fails_and_new_point_is_reported(smoke):
    target = _pick(smoke["doc"], mode="fwdbwd", L=2)

    def drop(d):
        d["points"] = [p for p in d["points"] if results.point_key(p) != results.point_key(target)]

    r = _gate(smoke, _variant(smoke, "missing", drop))
    assert r.exit_code == 1 and f"FAIL {_label(target)}: missing" in r.output
    # the same pair reversed: the point is new in the current run, reported and not failed
    rep = smoke["dir"] / "new.json"
    r = _gate(smoke, smoke["path"], "--json", str(rep), baseline=_variant(smoke, "missing", drop))
    assert r.exit_code == 0, r.output
    rows = [row for row in _report(rep)["rows"] if row["verdict"] == "new"]
    assert len(rows) == 1 and rows[0]["method"] == METHOD and rows[0]["L"] == 2


def test_point_without_reference_is_skipped_not_passed(smoke):
    def drop_ref(d):  # no sdpa at fwdbwd: every fwdbwd point loses its reference
        d["points"] = [p for p in d["points"] if not (p["method"] == REF and p["mode"] == "fwdbwd")]

    rep = smoke["dir"] / "noref.json"
    r = _gate(smoke, _variant(smoke, "noref", drop_ref), "--json", str(rep))
    assert r.exit_code == 1  # the reference's own fwdbwd points are missing
    j = _report(rep)
    by = {(row["method"], row["mode"]): row["verdict"] for row in j["rows"]}
    assert by[(METHOD, "fwdbwd")] == "skipped" and by[(REF, "fwdbwd")] == "missing"
    assert by[(METHOD, "fwd")] == "pass"
    assert "skipped" in r.output
    # gating only prism-torch: the skipped points do not fail, and are said to be skipped
    r = _gate(smoke, _variant(smoke, "noref", drop_ref), "--methods", METHOD)
    assert r.exit_code == 0 and "point(s) skipped" in r.output


def test_absolute_mode_needs_the_same_device(smoke):
    assert _gate(smoke, smoke["path"], "--absolute").exit_code == 0
    r = _gate(smoke, _variant(smoke, "abs-slow", lambda d: _slow(_pick(d, method=REF, L=None), SLOW)),
              "--absolute")
    assert r.exit_code == 1 and "FAIL sdpa fwd" in r.output   # absolute: the reference is gated too

    def on_gpu(d):
        d["env"]["gpu_name"] = "NVIDIA H100 80GB HBM3"

    gpu = _variant(smoke, "gpu", on_gpu)
    r = _gate(smoke, gpu, "--absolute")
    assert r.exit_code == 2 and "only compare on the same device" in r.output
    r = _gate(smoke, gpu)  # ratios still compare across devices, with a warning
    assert r.exit_code == 0 and "different devices" in r.output


def test_unusable_inputs_exit_2(smoke):
    other = _variant(smoke, "othershape", lambda d: [p.update(T=p["T"] * 2) for p in d["points"]])
    r = _gate(smoke, other)
    assert r.exit_code == 2 and "no shared points" in r.output
    r = _gate(smoke, smoke["path"], "--methods", "ttt-nope")
    assert r.exit_code == 2 and "ttt-nope" in r.output
    r = _gate(smoke, smoke["path"], "--reference", "gla-fla-chunk")
    assert r.exit_code == 2 and "'gla-fla-chunk' appears in neither" in r.output
    r = _gate(smoke, smoke["dir"] / "nope.json")
    assert r.exit_code == 2 and "no such results file" in r.output
    rep = smoke["dir"] / "unusable.json"
    _gate(smoke, smoke["dir"] / "nope.json", "--json", str(rep))
    assert _report(rep)["exit_code"] == 2


def test_baseline_directory_picks_preset_and_device(smoke):
    d = smoke["dir"] / "baselines"
    d.mkdir(exist_ok=True)
    r = _gate(smoke, smoke["path"], baseline=d)
    assert r.exit_code == 2 and "expected smoke-cpu.json" in r.output
    (d / "smoke-cpu.json").write_text(smoke["path"].read_text())
    assert _gate(smoke, smoke["path"], baseline=d).exit_code == 0


# ---------------------------------------------------------------- bench.toml [gate]
def test_repo_bench_toml_gate_table():
    g = gate.load_gate(config.load(ROOT / "bench.toml"))
    assert g.reference == "gla-fla-chunk" and g.tolerance == pytest.approx(0.05)
    assert gate.load_gate({}) == gate.GateConfig()


@pytest.mark.parametrize("table, expected", [
    ({"tolerance": 1.5}, "bench.toml: gate.tolerance: tolerance=1.5 must be a fraction in [0, 1)"),
    ({"tolerance": -0.1}, "gate.tolerance: tolerance=-0.1 must be a fraction"),
    ({"reference": ""}, "gate.reference: must name a method"),
    ({"reference": 3}, "gate.reference: "),
    ({"refrence": "sdpa"}, "gate.refrence: unknown key"),
])
def test_bad_gate_table_names_the_field(table, expected):
    with pytest.raises(config.ConfigError) as e:
        gate.load_gate({"gate": table})
    assert expected in str(e.value)


def test_integer_tolerance_is_accepted():
    assert gate.load_gate({"gate": {"tolerance": 0}}).tolerance == 0.0


# ---------------------------------------------------------------- a gate that compares nothing fails
def test_reference_absent_from_current_run_exits_2(smoke):
    only = _variant(smoke, "no-ref", lambda d: d.update(points=[p for p in d["points"] if p["method"] != REF]))
    r = _gate(smoke, only)
    assert r.exit_code == 2 and "no successful point in the current run" in r.output


def test_reference_with_L_serves_methods_without_L(smoke):
    """prism-torch (with L) as the reference of sdpa (without L): compared at prism-torch's smallest L,
    so a slowed sdpa point fails instead of being skipped."""
    slowed = _variant(smoke, "sdpa-slow", lambda d: _slow(_pick(d, REF, "fwd", None), SLOW))
    r = _gate(smoke, slowed, "--reference", METHOD)
    assert r.exit_code == 1, r.output
    assert "slower" in r.output and "sdpa fwd" in r.output


def test_reference_drift_on_one_device_is_warned(smoke):
    """A reference that moved by more than the tolerance in absolute terms (same device) is named in the
    report's warnings: the ratios at its shapes moved with it."""
    def fast_ref(d):
        p = next(p for p in d["points"] if p["method"] == REF and p["mode"] == "fwd")
        _slow(p, 1.3)

    rep = smoke["dir"] / "refdrift.json"
    r = _gate(smoke, _variant(smoke, "refdrift", fast_ref), "--json", str(rep))
    warnings = _report(rep)["warnings"]
    assert any(f"reference {REF} fwd" in w and "+30.0%" in w for w in warnings), warnings
    assert "moved +30.0%" in " ".join(r.output.split())
    # identical files: no drift warning
    rep2 = smoke["dir"] / "nodrift.json"
    _gate(smoke, smoke["path"], "--json", str(rep2))
    assert not any("moved" in w for w in _report(rep2)["warnings"])
