from typer.testing import CliRunner
import json

import torch

from prismbench.cli import app
from prismbench.env import collect_env, device_slug

KEYS = ("python", "torch", "triton", "fla_core", "git_commit", "gpu_name", "driver", "timestamp", "device")


def test_env_block_has_every_field():
    e = collect_env()
    for k in KEYS:
        assert k in e, k
    assert e["torch"] == torch.__version__
    assert device_slug({"gpu_name": "NVIDIA H100 80GB HBM3"}) == "nvidia-h100-80gb-hbm3"
    assert device_slug({"gpu_name": None}) == "cpu"


def test_env_cli_json():
    r = CliRunner().invoke(app, ["env", "--json"])
    assert r.exit_code == 0
    assert json.loads(r.output)["torch"] == torch.__version__


def test_git_commit_named_by_variable(monkeypatch):
    """A machine with stale git metadata names the commit it runs: recorded, dirtiness unknown."""
    from prismbench import env as envmod

    monkeypatch.setenv(envmod.GIT_COMMIT_VAR, "0123abcd")
    envmod._static_env.cache_clear()
    try:
        e = collect_env()
        assert (e["git_commit"], e["git_dirty"], e["git_commit_source"]) == ("0123abcd", None, envmod.GIT_COMMIT_VAR)
    finally:
        monkeypatch.delenv(envmod.GIT_COMMIT_VAR)
        envmod._static_env.cache_clear()
    assert "git_commit_source" not in collect_env()
