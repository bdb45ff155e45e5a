"""`prismbench merge`: runs of one machine type become one results file; other machines are refused."""

import pytest
from typer.testing import CliRunner

from prismbench import results
from prismbench.cli import app

ENV = {"gpu_name": "NVIDIA H100 80GB HBM3", "device": "cuda", "driver": "580", "torch": "2.11", "triton": "3.6.0",
       "fla_core": "0.6.0", "git_commit": "aaa", "timestamp": "t0"}


def _point(method, T, ms, status="ok"):
    return {"method": method, "mode": "fwd", "dtype": "bfloat16", "B": 32768 // T, "T": T, "H": 16, "K": 64,
            "V": 64, "L": None, "device": "cuda", "status": status,
            "median_ms": ms if status == "ok" else None,
            "tokens_per_s": 32768 / ms * 1e3 if status == "ok" else None, "error": None if status == "ok" else "x"}


def _write(tmp_path, name, env, points, preset="paper"):
    doc = results.new_document(env, {"preset": preset})
    doc["points"] = points
    path = tmp_path / name
    results.write(doc, path)
    return path


def test_merge_unions_points_later_run_wins(tmp_path):
    a = _write(tmp_path, "a.json", ENV, [_point("gla-fla-chunk", 2048, 1.0), _point("sdpa", 2048, 0.5, "error")])
    b = _write(tmp_path, "b.json", {**ENV, "git_commit": "bbb", "timestamp": "t1"},
               [_point("sdpa", 2048, 0.4), _point("prism-triton", 2048, 3.0)])
    out = tmp_path / "m.json"
    r = CliRunner().invoke(app, ["merge", str(a), str(b), "-o", str(out)])
    assert r.exit_code == 0, r.output
    doc = results.read(out)
    by = {(p["method"], p["T"]): p for p in doc["points"]}
    assert set(by) == {("gla-fla-chunk", 2048), ("sdpa", 2048), ("prism-triton", 2048)}
    assert by[("sdpa", 2048)]["status"] == "ok" and by[("sdpa", 2048)]["median_ms"] == 0.4
    assert [by[k]["run"] for k in (("gla-fla-chunk", 2048), ("sdpa", 2048), ("prism-triton", 2048))] == [0, 1, 1]
    runs = doc["env"]["merged_from"]
    assert [(x["file"], x["git_commit"]) for x in runs] == [(str(a), "aaa"), (str(b), "bbb")]
    assert doc["env"]["git_commit"] == "bbb"


@pytest.mark.parametrize("field", ["gpu_name", "triton", "fla_core"])
def test_merge_refuses_other_machines_or_software(tmp_path, field):
    a = _write(tmp_path, "a.json", ENV, [_point("sdpa", 2048, 0.5)])
    b = _write(tmp_path, "b.json", {**ENV, field: "other"}, [_point("sdpa", 4096, 0.9)])
    r = CliRunner().invoke(app, ["merge", str(a), str(b), "-o", str(tmp_path / "m.json")])
    assert r.exit_code == 2
    assert f"env.{field}" in r.output and not (tmp_path / "m.json").exists()


def test_merge_needs_two_files(tmp_path):
    a = _write(tmp_path, "a.json", ENV, [_point("sdpa", 2048, 0.5)])
    r = CliRunner().invoke(app, ["merge", str(a), "-o", str(tmp_path / "m.json")])
    assert r.exit_code == 2 and "at least two" in r.output


def test_merge_a_failed_point_never_replaces_a_measured_one(tmp_path):
    a = _write(tmp_path, "a.json", ENV, [_point("sdpa", 2048, 1.0), _point("sdpa", 4096, 1.1, "error")])
    b = _write(tmp_path, "b.json", {**ENV, "timestamp": "t1"},
               [_point("sdpa", 2048, 0.0, "error"), _point("sdpa", 4096, 0.0, "error")])
    out = tmp_path / "m.json"
    r = CliRunner().invoke(app, ["merge", str(a), str(b), "-o", str(out)])
    assert r.exit_code == 0, r.output
    by = {p["T"]: p for p in results.read(out)["points"]}
    assert by[2048]["status"] == "ok" and by[2048]["median_ms"] == 1.0 and by[2048]["run"] == 0
    assert by[4096]["status"] == "error" and by[4096]["run"] == 1  # neither measured: the later one stands


def test_merge_max_spread_keeps_a_clean_point_over_a_disturbed_one(tmp_path):
    """--max-spread: a later point whose p20-p80 spread is above the bound does not replace a measured one within
    it; a later clean point still wins, and a disturbed point still fills a gap or replaces another disturbed one."""
    def timed(method, T, ms, lo, hi):
        return {**_point(method, T, ms), "p20_ms": lo, "p80_ms": hi}

    a = _write(tmp_path, "a.json", ENV, [timed("gdn-fla-chunk", 2048, 0.57, 0.569, 0.571),
                                         timed("gla-fla-chunk", 2048, 0.84, 0.83, 0.85),
                                         timed("sdpa", 2048, 0.30, 0.2, 0.4)])
    b = _write(tmp_path, "b.json", {**ENV, "timestamp": "t1"},
               [timed("gdn-fla-chunk", 2048, 1.08, 1.0, 1.09), timed("gla-fla-chunk", 2048, 0.83, 0.829, 0.831),
                timed("sdpa", 2048, 0.35, 0.25, 0.45), timed("prism-triton", 2048, 1.3, 1.0, 1.5)])
    out = tmp_path / "m.json"
    r = CliRunner().invoke(app, ["merge", str(a), str(b), "-o", str(out), "--max-spread", "0.05"])
    assert r.exit_code == 0, r.output
    doc = results.read(out)
    by = {p["method"]: p for p in doc["points"]}
    assert by["gdn-fla-chunk"]["median_ms"] == 0.57 and by["gdn-fla-chunk"]["run"] == 0
    assert by["gla-fla-chunk"]["median_ms"] == 0.83 and by["gla-fla-chunk"]["run"] == 1
    assert by["sdpa"]["run"] == 1 and by["prism-triton"]["run"] == 1
    assert doc["env"]["merge_max_spread"] == 0.05
    # without the option the later run wins everywhere
    r = CliRunner().invoke(app, ["merge", str(a), str(b), "-o", str(out)])
    assert {p["method"]: p["run"] for p in results.read(out)["points"]}["gdn-fla-chunk"] == 1
    assert "merge_max_spread" not in results.read(out)["env"]
    r = CliRunner().invoke(app, ["merge", str(a), str(b), "-o", str(out), "--max-spread", "-1"])
    assert r.exit_code == 2
