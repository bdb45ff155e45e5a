"""Figures from a real small results file."""
import pytest
import torch
from typer.testing import CliRunner

from prismbench import plots, results, runner
from prismbench.cli import app
from prismbench.config import resolve


@pytest.fixture(scope="module")
def small_results(tmp_path_factory):
    cfg = resolve({"sweep": {"methods": ["sdpa", "prism-torch"], "T": [16, 32], "tokens": 64, "H": 1,
                             "K": [16, 32], "L": [1, 2], "dtype": "float32", "device": "cpu"},
                   "timing": {"cpu_warmup": 0, "cpu_reps": 1}}, None)
    path = tmp_path_factory.mktemp("res") / "tiny-cpu.json"
    specs = runner.expand(cfg, runner.resolve_methods(cfg), torch.device("cpu"))
    runner.run_sweep(cfg, specs, results.new_document({"gpu_name": None, "cpu": "test"}, {}), path)
    return path


def test_every_figure_is_written(small_results, tmp_path):
    written = plots.plot_file(small_results, tmp_path)
    names = {p.name for p in written}
    stems = ["throughput-vs-T", "prism-ratio", "throughput-vs-state", "errors"]
    # CPU peak memory is null when a call reused memory the process already had (small shapes)
    if any(p.get("peak_mem_bytes") for p in results.read(small_results)["points"]):
        stems.append("peak-memory-vs-T")
    for stem in stems:
        for ext in ("png", "svg"):
            assert f"tiny-cpu-{stem}.{ext}" in names
    assert {"tiny-cpu-errors.md", "tiny-cpu-times.md", "tiny-cpu-ratios.md"} <= names
    for p in written:
        data = p.read_bytes()
        assert len(data) > 200
        if p.suffix == ".png":
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
        if p.suffix == ".svg":
            assert b"<svg" in data[:2000]


def test_memory_figure_draws_measured_peaks(small_results, tmp_path):
    """The memory figure from the real run, with peaks filled in where the CPU counter saw none."""
    doc = results.read(small_results)
    for i, p in enumerate(doc["points"]):
        p["peak_mem_bytes"] = p.get("peak_mem_bytes") or (i + 1) * 2**20
    written = plots.memory_vs_T(doc, tmp_path, "mem")
    assert {w.name for w in written} == {"mem-peak-memory-vs-T.png", "mem-peak-memory-vs-T.svg"}
    doc_none = results.read(small_results)
    for p in doc_none["points"]:
        p["peak_mem_bytes"] = None
    assert plots.memory_vs_T(doc_none, tmp_path, "none") == []


def test_ratios_compare_same_shape_and_L(small_results):
    doc = results.read(small_results)
    rows = plots.prism_ratios(doc["points"])
    assert rows and all(r["prism"] == "prism-torch" and r["baseline"] == "sdpa" for r in rows)
    pts = {(p["method"], p["mode"], p["T"], p["K"], p["L"]): p["tokens_per_s"] for p in doc["points"]}
    for r in rows:
        want = pts[("prism-torch", r["mode"], r["T"], r["K"], r["L"])] / pts[("sdpa", r["mode"], r["T"], r["K"], None)]
        assert r["ratio"] == pytest.approx(want)


def test_error_table_has_worst_tensor(small_results):
    rows = plots.error_rows(results.read(small_results)["points"])
    assert {r["method"] for r in rows} == {"sdpa", "prism-torch"}
    assert all(r["err"] < 1e-4 for r in rows)


def test_plot_cli(small_results, tmp_path):
    r = CliRunner().invoke(app, ["plot", str(small_results), "--out", str(tmp_path / "f")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "f" / "tiny-cpu-throughput-vs-T.png").exists()
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 99, "env": {}, "points": []}')
    r = CliRunner().invoke(app, ["plot", str(bad)])
    assert r.exit_code == 2 and "schema_version=99" in r.output


def _md_rows(path):
    """The data rows of a markdown table file, as lists of cells."""
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("| ") and not ln.startswith("| method")
             and not ln.startswith("| L ")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def test_time_table_cites_every_point_of_the_slice(small_results, tmp_path):
    doc = results.read(small_results)
    pts, _ = plots._main_slice(doc["points"])
    (path,) = plots.time_table(doc, tmp_path, "t")
    rows = _md_rows(path)
    Ts = sorted({p["T"] for p in pts})
    got = {(r[0], r[1], r[2]): r[3:3 + len(Ts)] for r in rows}
    assert len(got) == len({(p["method"], p["mode"], p["L"]) for p in pts}) == len(rows)
    for p in pts:
        cell = got[(p["method"], p["mode"], "" if p["L"] is None else str(p["L"]))][Ts.index(p["T"])]
        assert cell.rstrip("*") == f"{p['median_ms']:.3f}"
    # a missing point and a non-ok point say so instead of a number
    doc["points"] = [p for p in pts if not (p["method"] == "sdpa" and p["T"] == Ts[0] and p["mode"] == "fwd")]
    doc["points"][0] = dict(doc["points"][0], status="unsupported", median_ms=None)
    (path,) = plots.time_table(doc, tmp_path, "u")
    cells = [c for r in _md_rows(path) for c in r]
    assert "not run" in cells and "unsupported" in cells


def test_ratio_table_matches_prism_ratios(small_results, tmp_path):
    doc = results.read(small_results)
    pts, _ = plots._main_slice(results.ok_points(doc["points"]))
    want = plots.prism_ratios(pts)
    (path,) = plots.ratio_table(doc, tmp_path, "r")
    rows = _md_rows(path)
    Ts = sorted({r["T"] for r in want})
    got = {(r[0], r[1], r[2]): r[3:] for r in rows}
    assert len(got) == len({(w["L"], w["mode"], w["baseline"]) for w in want})
    for w in want:
        cell = got[(str(w["L"]), w["mode"], w["baseline"])][Ts.index(w["T"])]
        assert cell == f"{w['ratio']:.3f}x"      # one run: no cross-run mark
