"""The environment block every results file carries (`prismbench env` prints it)."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# A machine that receives a copy of the working tree whose git metadata is stale (e.g. a lent GPU that got
# the session's first checkout) names the commit it runs through this variable; the results then record
# it with git_dirty = null (unknown) and git_commit_source naming the variable.
GIT_COMMIT_VAR = "PRISMBENCH_GIT_COMMIT"


def _git_fields() -> dict:
    named = os.environ.get(GIT_COMMIT_VAR, "").strip()
    if named:
        return {"git_commit": named, "git_dirty": None, "git_commit_source": GIT_COMMIT_VAR}
    return {"git_commit": _git("rev-parse", "HEAD"),
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no"))}


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def _fla_backends() -> list[str]:
    """Optional external backends fla's dispatchers may prefer when installed (SPEC section 6)."""
    found = []
    for name in ("tilelang", "flash-linear-attention-cuda", "cula"):
        if _version(name):
            found.append(f"{name}=={_version(name)}")
    return found


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def _static_env() -> dict:
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except Exception:  # triton missing or broken: recorded, not fatal
        triton_version = None
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": triton_version,
        "fla_core": _version("fla-core"),
        "fla_backends": _fla_backends(),
        "prismbench": _version("prismbench"),
        **_git_fields(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1",
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(
            device="cuda",
            gpu_name=torch.cuda.get_device_name(0),
            gpu_count=torch.cuda.device_count(),
            gpu_memory_bytes=int(props.total_memory),
            gpu_capability=".".join(map(str, torch.cuda.get_device_capability(0))),
            driver=_nvidia_driver(),
        )
    else:
        env.update(device="cpu", gpu_name=None, gpu_count=0, gpu_memory_bytes=None,
                   gpu_capability=None, driver=None)
    return env


def collect_env() -> dict:
    """Environment of this process: versions, device, git commit, and a UTC timestamp."""
    env = dict(_static_env())
    env["timestamp"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return env


# what must not change between the points of one results file (`prismbench run --resume` checks)
RESUME_KEYS = ("gpu_name", "cpu", "driver", "torch", "triton", "fla_core", "git_commit", "python")


def device_slug(env: dict, device_type: str = "cuda") -> str:
    """Short file-name-safe name of the device a run is on (e.g. `nvidia-h100-80gb-hbm3`, `cpu`)."""
    name = (env.get("gpu_name") if device_type == "cuda" else None) or "cpu"
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")
