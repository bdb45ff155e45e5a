"""pytest-benchmark settings for tests/bench: record the GPU with every saved benchmark.

pytest-benchmark's machine_info (and its `.benchmarks/<machine_id>/` folder) leaves out the GPU, and
a machine mismatch only warns; this hook adds the GPU name, driver-side versions and prismbench's
device slug, so saved runs say where they were measured. Keep one storage per GPU model with
`--benchmark-storage=.benchmarks/<gpu-slug>` (see tests/bench/test_kernels_bench.py).
"""
import pytest


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config, machine_info):
    import torch

    from prismbench.env import collect_env, device_slug

    env = collect_env()
    machine_info["gpu"] = env.get("gpu_name")
    machine_info["device_slug"] = device_slug(env)
    for k in ("driver", "torch", "torch_cuda", "triton", "fla_core", "git_commit"):
        machine_info[k] = env.get(k)
    machine_info["cuda_available"] = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def nan_poisoned_empty():
    """Overrides tests/conftest.py's NaN poisoning here: filling every torch.empty with NaN adds a
    kernel per allocation inside the timed call. Correctness is checked elsewhere (tests/kernels,
    the runner's rel_err); this suite only times."""
    yield
