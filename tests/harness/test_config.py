"""bench.toml validation: every bad field is named, with its value, and the CLI exits 2."""
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prismbench import config
from prismbench.cli import app

ROOT = Path(__file__).resolve().parents[2]

BASE = """
[sweep]
methods = ["prism-torch", "sdpa"]
T = [32, 64]
tokens = 128
H = 2
K = 16
L = [1, 2]
dtype = "float32"
modes = ["fwd", "fwdbwd"]
device = "cpu"
"""


def _resolve(text: str, preset=None):
    import tomllib

    return config.resolve(tomllib.loads(text), preset)


def test_repo_bench_toml_is_valid():
    bench = config.load(ROOT / "bench.toml")
    for name in ("smoke", "paper", "full", "gate"):
        assert name in config.preset_names(bench)
    smoke = config.resolve(bench, "smoke")
    assert smoke.device == "cpu"
    full = config.resolve(bench, "full")
    assert full.K == [32, 64, 128, 256] and full.L == [1, 2, 3, 4]
    paper = config.resolve(bench, "paper")
    assert paper.tokens == 32768 and paper.T == [2048, 4096, 8192, 16384] and paper.dtype == ["bfloat16"]


def test_scalars_become_lists_and_batches_follow_tokens():
    cfg = _resolve(BASE)
    assert cfg.H == [2] and cfg.K == [16] and cfg.dtype == ["float32"]
    assert cfg.batches(32) == [4] and cfg.batches(64) == [2]
    assert cfg.state_sizes() == [(16, 16)]


def test_preset_overrides_sweep():
    cfg = _resolve(BASE + '\n[presets.big]\nK = [32, 48]\nV = [16, 16]\ntiming = { cpu_reps = 2 }\n', "big")
    assert cfg.state_sizes() == [(32, 16), (48, 16)]
    assert cfg.timing.cpu_reps == 2 and cfg.T == [32, 64]


@pytest.mark.parametrize("patch, expected", [
    ("K = [16, 20]", "sweep.K[1]=20 is not a multiple of 16"),
    ("L = [0]", "sweep.L[0]=0: solver depth L must be >= 1"),
    ("T = [48]", "T[0]=48 does not divide tokens=128"),
    ("dtype = 'float8'", "sweep.dtype[0]='float8' is not one of"),
    ("modes = ['bwd']", "sweep.modes[0]='bwd' is not one of"),
    ("methods = ['prism-torch', 'no-such-method']", "sweep.methods[1]='no-such-method' is not a registered method"),
    ("H = 'sixteen'", "sweep.H"),
    ("colour = 'blue'", "sweep.colour: unknown key"),
])
def test_bad_sweep_fields_are_named(patch, expected):
    key = patch.split("=")[0].strip()
    lines = [ln for ln in BASE.splitlines() if not ln.startswith(key + " ")]
    text = "\n".join(lines).replace("[sweep]", "[sweep]\n" + patch)
    with pytest.raises(config.ConfigError) as e:
        _resolve(text)
    assert expected in str(e.value)


def test_bad_preset_field_names_the_preset():
    with pytest.raises(config.ConfigError) as e:
        _resolve(BASE + "\n[presets.tiny]\nK = [16, 24]\n", "tiny")
    assert "presets.tiny.K[1]=24 is not a multiple of 16" in str(e.value)


def test_bad_timing_and_unknown_table():
    with pytest.raises(config.ConfigError, match=r"timing.cpu_reps"):
        _resolve(BASE + "\n[timing]\ncpu_reps = 0\n")
    with pytest.raises(config.ConfigError, match=r"colours: unknown top-level table"):
        _resolve(BASE + "\n[colours]\nx = 1\n")


def test_tokens_and_B_are_exclusive():
    with pytest.raises(config.ConfigError, match="exactly one of `tokens`"):
        _resolve(BASE.replace("tokens = 128", "tokens = 128\nB = [1]"))


def test_unknown_preset():
    with pytest.raises(config.ConfigError, match="preset 'nope' not found"):
        _resolve(BASE, "nope")


def test_load_rejects_a_broken_preset_even_when_unused(tmp_path):
    p = tmp_path / "bench.toml"
    p.write_text(BASE + "\n[presets.bad]\nL = [0]\n")
    with pytest.raises(config.ConfigError, match=r"presets.bad.L\[0\]=0"):
        config.load(p)


def test_cli_exits_2_naming_the_field(tmp_path):
    p = tmp_path / "bench.toml"
    p.write_text(BASE.replace("K = 16", "K = [16, 20]"))
    r = CliRunner().invoke(app, ["run", "--config", str(p), "--device", "cpu", "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert "sweep.K[1]=20 is not a multiple of 16" in r.output


def test_cli_exits_2_on_invalid_toml(tmp_path):
    p = tmp_path / "bench.toml"
    p.write_text("[sweep\nT=1")
    r = CliRunner().invoke(app, ["run", "--config", str(p), "--device", "cpu", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "not valid TOML" in r.output


def test_cli_refuses_gpu_preset_on_cpu(tmp_path):
    r = CliRunner().invoke(app, ["run", "--config", str(ROOT / "bench.toml"), "--preset", "paper",
                                 "--device", "cpu", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "is for a GPU" in r.output


def test_preset_switches_batch_spec_and_rejects_bad_tables():
    cfg = _resolve(BASE + "\n[presets.fixedB]\nB = [3]\n", "fixedB")
    assert cfg.B == [3] and cfg.tokens is None
    with pytest.raises(config.ConfigError, match=r"presets.t.timing: must be a table"):
        _resolve(BASE + "\n[presets.t]\ntiming = 5\n", "t")
    with pytest.raises(config.ConfigError, match=r"sweep.methods: must not be empty"):
        _resolve(BASE.replace('methods = ["prism-torch", "sdpa"]', "methods = []"))


def test_set_overrides_apply_after_the_preset():
    import tomllib

    bench = tomllib.loads(BASE + '\n[presets.big]\nK = [32, 48]\n')
    cfg = config.resolve(bench, "big", overrides={"T": 64, "L": [1, 3], "B": 2})
    assert cfg.T == [64] and cfg.L == [1, 3] and cfg.K == [32, 48] and cfg.batches(64) == [2]
    with pytest.raises(config.ConfigError, match="--set timing"):
        config.resolve(bench, None, overrides={"timing": {}})


@pytest.mark.parametrize("arg, expected", [
    ("T=48", "T[0]=48 does not divide tokens=128"),
    ("T", "--set 'T': expected KEY=VALUE"),
    ("colour=red", "colour"),
])
def test_cli_set_errors_name_the_field(tmp_path, arg, expected):
    p = tmp_path / "bench.toml"
    p.write_text(BASE)
    r = CliRunner().invoke(app, ["run", "--config", str(p), "--device", "cpu", "--out", str(tmp_path),
                                 "--set", arg])
    assert r.exit_code == 2, r.output
    assert expected in " ".join(r.output.split())


def test_cli_set_runs_only_the_given_axis(tmp_path):
    import json

    p = tmp_path / "bench.toml"
    p.write_text(BASE + "\n[timing]\ncpu_warmup = 0\ncpu_reps = 1\n")
    r = CliRunner().invoke(app, ["run", "--config", str(p), "--device", "cpu", "--out", str(tmp_path), "--no-plot",
                                 "--set", "T=32", "--set", "L=1", "-m", "sdpa", "--no-check", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout[r.stdout.index("{"):])
    assert {(q["T"], q["method"]) for q in doc["points"]} == {(32, "sdpa")}
