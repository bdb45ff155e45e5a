"""pytest-benchmark over the registry: one benchmark per point of bench.toml's `gate` preset.

For users who keep benchmark history with pytest-benchmark (the `prismbench gate` command is the
project's own gate; these tests time the same points through pytest-benchmark's machinery)::

    pytest tests/bench --benchmark-autosave --benchmark-storage=.benchmarks/h100
    pytest tests/bench --benchmark-storage=.benchmarks/h100 --benchmark-compare \
        --benchmark-compare-fail=median:5%

Each test builds the method's inputs (`make_inputs(shape, seed=0)`), runs one untimed warm-up call
(Triton autotuning, fla's first-call compile), then `benchmark.pedantic` times rounds of one call each;
the timed callable synchronises the GPU before returning (pytest-benchmark's timer is the host
`perf_counter`), and the untimed per-round setup clears input gradients and synchronises, so no
earlier work leaks into a round. fwdbwd rounds run the forward and `backward(dout)` with a fixed
`dout`. Differences from `prismbench run`: a hot L2 cache (do_bench flushes 256 MB before each call)
and host timing, so the absolute numbers differ slightly; compare runs of this suite with each other.

Skipped as a whole (at import, before touching the registry) without a CUDA GPU, so the CPU test
run collects it in milliseconds. Environment knobs (for trying it on other points):
PRISMBENCH_BENCH_PRESET (default "gate"), PRISMBENCH_BENCH_DEVICE ("cuda"; "cpu" runs the points on
the CPU, e.g. with the `smoke` preset, to check the plumbing), PRISMBENCH_BENCH_ROUNDS (default 20).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

PRESET = os.environ.get("PRISMBENCH_BENCH_PRESET", "gate")
DEVICE = os.environ.get("PRISMBENCH_BENCH_DEVICE", "cuda")
ROUNDS = int(os.environ.get("PRISMBENCH_BENCH_ROUNDS", "20"))
WARMUP_ROUNDS = 2
SEED = 0

if DEVICE == "cuda" and not torch.cuda.is_available():
    pytest.skip("pytest-benchmark kernel suite: needs a CUDA GPU (PRISMBENCH_BENCH_DEVICE=cpu to "
                "try it on the CPU)", allow_module_level=True)
pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed (pip install -e .[test])")

from prismbench import config, registry, runner  # noqa: E402
from prismbench.registry import Unsupported  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.gpu] if DEVICE == "cuda" else []


def _specs() -> list[runner.PointSpec]:
    bench = config.load(ROOT / "bench.toml")
    cfg = config.resolve(bench, PRESET)
    return runner.expand(cfg, runner.resolve_methods(cfg), torch.device(DEVICE))


def _id(spec: runner.PointSpec) -> str:
    r = spec.base_record()
    L = f"-L{r['L']}" if r["L"] is not None else ""
    return f"{r['method']}-{r['mode']}-{r['dtype']}-B{r['B']}-T{r['T']}-H{r['H']}-K{r['K']}-V{r['V']}{L}"


SPECS = _specs()


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("spec", SPECS, ids=[_id(s) for s in SPECS])
def test_kernel_throughput(benchmark, spec: runner.PointSpec):
    m, shape, mode = spec.method, spec.shape, spec.mode
    reason = m.unsupported_reason(shape, mode)
    if reason is not None:
        pytest.skip(reason)
    benchmark.group = f"{spec.mode} {registry.dtype_name(shape.dtype)} T={shape.T}"
    benchmark.extra_info.update(spec.base_record())
    benchmark.extra_info.update(tokens=shape.tokens, preset=PRESET,
                                gpu=torch.cuda.get_device_name() if DEVICE == "cuda" else None)
    try:
        inputs = m.make_inputs(shape, SEED)
        run_once, leaves = runner.timed_call(m, inputs, shape, mode)  # as `prismbench run` times it

        def call():
            run_once()
            _sync()

        def setup():
            for t in leaves:
                t.grad = None
            _sync()

        setup()
        call()  # untimed: autotuning / compilation
    except Unsupported as e:
        pytest.skip(f"unsupported: {e}")
    benchmark.pedantic(call, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None and stats.median > 0:
        benchmark.extra_info["tokens_per_s"] = shape.tokens / stats.median
