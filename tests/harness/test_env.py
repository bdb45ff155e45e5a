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
