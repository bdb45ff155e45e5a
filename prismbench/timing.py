"""Timing and peak memory of one callable, on the GPU (CUDA events) or the CPU (perf_counter)."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch


@dataclass
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float


def _quantile(xs: Sequence[float], q: float) -> float:
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def time_cuda(fn: Callable[[], object], warmup_ms: float, rep_ms: float,
              grad_to_none: Optional[Sequence[torch.Tensor]] = None) -> Timing:
    """Median and 20/80% quantiles with CUDA events (triton.testing.do_bench, cold L2)."""
    from triton.testing import do_bench

    med, p20, p80 = do_bench(fn, warmup=warmup_ms, rep=rep_ms, grad_to_none=grad_to_none,
                             quantiles=[0.5, 0.2, 0.8])
    return Timing(float(med), float(p20), float(p80))


def time_cpu(fn: Callable[[], object], warmup: int, reps: int,
             grad_to_none: Optional[Sequence[torch.Tensor]] = None) -> Timing:
    """Median and 20/80% quantiles of `reps` timed calls after `warmup` untimed ones."""
    def call():
        if grad_to_none:
            for t in grad_to_none:
                t.grad = None
        fn()

    for _ in range(warmup):
        call()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
    return Timing(statistics.median(times), _quantile(times, 0.2), _quantile(times, 0.8))


def peak_memory(fn: Callable[[], object], device: torch.device) -> tuple[Optional[int], Optional[str]]:
    """Peak memory of one call: (bytes, kind).

    cuda: torch.cuda.max_memory_allocated over the call (inputs already allocated are included).
    cpu: growth of the process's peak resident set over the call (Linux: VmHWM after resetting it
    through /proc/self/clear_refs), or (None, None) where that is unavailable. A call that does not
    grow the peak (memory reused from earlier calls: small shapes) gives (None, kind): the figure
    is below what this counter resolves, not zero.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    before = proc_status_bytes("VmRSS")
    if before is None or not reset_peak_rss():
        fn()
        return None, None
    fn()
    hwm = proc_status_bytes("VmHWM")
    if hwm is None:
        return None, None
    growth = hwm - before
    return (growth if growth > 0 else None), "cpu_peak_rss_growth"


def proc_status_bytes(field: str) -> Optional[int]:
    """A memory field of /proc/self/status (e.g. "VmRSS", "VmHWM") in bytes; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the process's peak resident set (VmHWM) to its current size; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
