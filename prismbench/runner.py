"""Sweep runner: expands a SweepConfig into points, measures each, records every outcome.

Per point: build inputs, measure the relative error of the output and every input gradient against
the method's float64 reference (where affordable), time the call (fwd, or fwd + bwd), and take its
peak memory. Any failure is recorded as that point's status ("error" or "unsupported") and the sweep
goes on; the results file is rewritten after every point. The runner knows no method by name.
"""
from __future__ import annotations

import gc
import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from prismbench import registry, results, timing
from prismbench.config import SweepConfig
from prismbench.registry import DTYPES, Method, Shape, Unsupported


@dataclass(frozen=True)
class PointSpec:
    method: Method
    mode: str
    shape: Shape

    @property
    def L(self) -> Optional[int]:
        return self.shape.L if self.method.uses_L else None

    def key(self) -> tuple:
        return results.point_key(self.base_record())

    def base_record(self) -> dict:
        s, m = self.shape, self.method
        return {
            "method": m.name, "family": m.family, "backend": m.backend, "mode": self.mode,
            "dtype": registry.dtype_name(s.dtype), "B": s.B, "T": s.T, "H": s.H, "K": s.K, "V": s.V,
            "L": self.L, "device": torch.device(s.device).type,
        }

    def label(self) -> str:
        r = self.base_record()
        L = f" L={r['L']}" if r["L"] is not None else ""
        return f"{r['method']} {r['mode']} {r['dtype']} B={r['B']} T={r['T']} H={r['H']} K={r['K']}{L}"


def resolve_methods(cfg: SweepConfig, only: Optional[list[str]] = None) -> list[Method]:
    names = sorted(registry.all_methods()) if cfg.methods == "all" else list(cfg.methods)
    if only:
        unknown = [m for m in only if m not in registry.all_methods()]
        if unknown:
            known = ", ".join(sorted(registry.all_methods()))
            raise KeyError(f"--methods: unknown method(s) {unknown} (known: {known})")
        names = [n for n in names if n in only] if cfg.methods != "all" else list(only)
        names += [n for n in only if n not in names]
    return [registry.get(n) for n in names]


def expand(cfg: SweepConfig, methods: list[Method], device: torch.device) -> list[PointSpec]:
    """All points of the sweep, shape-major (methods of one shape run close together in time)."""
    specs: list[PointSpec] = []
    seen = set()
    for dname in cfg.dtype:
        for K, V in cfg.state_sizes():
            for H in cfg.H:
                for T in cfg.T:
                    for B in cfg.batches(T):
                        for m in methods:
                            for L in (cfg.L if m.uses_L else [1]):
                                for mode in cfg.modes:
                                    shape = Shape(B, T, H, K, V, L, DTYPES[dname], device)
                                    spec = PointSpec(m, mode, shape)
                                    if spec.key() not in seen:
                                        seen.add(spec.key())
                                        specs.append(spec)
    return specs


def _grad_leaves(inputs: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor) and v.requires_grad}


def _run_once(method: Method, inputs: dict, shape: Shape, mode: str,
              cotangent: Callable[[torch.Tensor], torch.Tensor]):
    """One call; returns (output, {name: grad}, dout), grads of every leaf for fwdbwd, where the
    output gradient dout = cotangent(output)."""
    leaves = _grad_leaves(inputs)
    for t in leaves.values():
        t.grad = None
    out = method.fn(inputs, shape)
    if mode == "fwd":
        return out.detach(), {}, None
    dout = cotangent(out)
    out.backward(dout)
    grads = {k: (t.grad.detach() if t.grad is not None else None) for k, t in leaves.items()}
    return out.detach(), grads, dout


def _rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    x = x.to(torch.float64)
    ref = ref.to(torch.float64)
    if x.shape != ref.shape:
        raise ValueError(f"shape {tuple(x.shape)} != reference {tuple(ref.shape)}")
    if not torch.isfinite(x).all():
        return float("nan")
    den = torch.linalg.vector_norm(ref)
    num = torch.linalg.vector_norm(x - ref)
    if den == 0:
        return float(num)
    return float(num / den)


def _to_reference(inputs: dict) -> dict:
    out = {}
    for k, v in inputs.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            out[k] = v.detach().to(torch.float64).requires_grad_(v.requires_grad)
        else:
            out[k] = v
    return out


class ReferenceFailed(Exception):
    """The float64 reference (not the method under test) failed; the point is still timed."""


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else ""


def relative_errors(method: Method, shape: Shape, mode: str, seed: int) -> tuple[Optional[dict], str]:
    """rel_err of output and input gradients against the float64 reference; (None, why) if skipped."""
    if method.reference is None:
        return None, "no reference defined for this method"
    ref = registry.get(method.reference)
    if ref is method and shape.dtype == torch.float64:
        return None, "this method is the float64 reference"
    budget = ref.ref_max_tokens
    note = f"vs {ref.name} in float64"
    if shape.B * shape.T * shape.H > budget:
        if shape.T * shape.H > budget:
            return None, f"reference {ref.name} not affordable at T*H={shape.T * shape.H} > {budget}"
        shape = shape.with_(B=1)
        note += ", measured at B=1"
    inputs = method.make_inputs(shape, seed)
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)

    def draw(out):
        return torch.randn(out.shape, generator=gen, dtype=torch.float32).to(out.device, out.dtype)

    out, grads, dout = _run_once(method, inputs, shape, mode, draw)
    try:
        ref_out, ref_grads, _ = _run_once(ref, _to_reference(inputs), shape.with_(dtype=torch.float64), mode,
                                          lambda o: dout.to(torch.float64))
    except Exception as e:
        raise ReferenceFailed(f"reference {ref.name} failed: {type(e).__name__}: {_first_line(e)}") from e
    errs = {"o": _rel(out, ref_out)}
    for k, g in grads.items():
        rg = ref_grads.get(k)
        if g is None or rg is None:
            errs["d" + k] = None if (g is None and rg is None) else float("nan")
        else:
            errs["d" + k] = _rel(g, rg)
    return errs, note


def _detached(e: BaseException) -> BaseException:
    """e without its traceback and chained exceptions, to keep for the rest of a sweep: their frames hold the check's
    inputs and outputs on the device, and kept alive they count in every later point's peak memory. (fla refuses
    GDN's and GDP's backward on Hopper; the paper runs' peak memory grew by ~1.1 GiB after their T=2048 points and again
    after their T=4096 points, and not after T=8192, where their float64 check is not affordable and does not run:
    results/paper/README.md. Not yet re-measured.)"""
    e.__traceback__ = None
    e.__cause__ = e.__context__ = None
    return e


class ErrorMemo:
    """Errors of one (method, shape), shared by its fwd and fwdbwd points.

    The float64 reference is the slow part of a point, so it runs once, with the backward pass
    when the sweep also has fwdbwd points; a fwd point then reports the output error only. A
    backward failure while measuring is kept for the fwdbwd point and the fwd point falls back to
    a forward-only check.
    """

    def __init__(self):
        self._memo: dict = {}

    def get(self, method: Method, shape: Shape, mode: str, cfg: SweepConfig) -> tuple[Optional[dict], str]:
        key = (method.name, shape)
        with_bwd = "fwdbwd" in cfg.modes and method.unsupported_reason(shape, "fwdbwd") is None
        if key not in self._memo:
            try:
                self._memo[key] = ("ok", relative_errors(method, shape, "fwdbwd" if with_bwd else "fwd",
                                                         cfg.check.seed))
            except Exception as e:
                if mode == "fwdbwd" or not with_bwd:
                    raise
                self._memo[key] = ("bwd-failed", _detached(e))
        state, val = self._memo[key]
        if state == "bwd-failed":
            if mode == "fwdbwd":
                raise val
            return relative_errors(method, shape, "fwd", cfg.check.seed)
        errs, note = val
        if mode == "fwd" and errs is not None:
            errs = {"o": errs["o"]}
        return errs, note


def timed_call(method: Method, inputs: dict, shape: Shape, mode: str) -> tuple[Callable[[], object], list]:
    """The callable a point times, and the leaves whose .grad must be cleared between calls.

    fwd: the training forward (inputs require grad, autograd records the graph);
    fwdbwd: forward plus backward with a fixed random output gradient (drawn once, here).
    """
    leaves = list(_grad_leaves(inputs).values())
    if mode == "fwd":
        def call():
            return method.fn(inputs, shape)
    else:
        out = method.fn(inputs, shape)
        dout = torch.randn_like(out)
        del out

        def call():
            method.fn(inputs, shape).backward(dout)
    return call, leaves


def measure(spec: PointSpec, cfg: SweepConfig, memo: Optional[ErrorMemo] = None) -> dict:
    """Measure one point; never raises for a method failure (it becomes the point's status).

    A non-finite output or gradient (rel_err "nan") makes the point an error: NaN never passes.
    A failure of the float64 reference leaves the point timed, with rel_err null and the reason in
    rel_err_note.
    """
    rec = spec.base_record()
    rec.update(median_ms=None, p20_ms=None, p80_ms=None, tokens_per_s=None, peak_mem_bytes=None,
               peak_mem_kind=None, rel_err=None, rel_err_note=None, state_size=None,
               status="ok", error=None)
    m, shape, mode = spec.method, spec.shape, spec.mode
    device = torch.device(shape.device)
    t0 = time.perf_counter()
    inputs = None
    try:
        if m.state_size is not None:
            rec["state_size"] = int(m.state_size(shape))
        reason = m.unsupported_reason(shape, mode)
        if reason is not None:
            raise Unsupported(reason)
        if cfg.check.rel_err:
            try:
                rec["rel_err"], rec["rel_err_note"] = (memo or ErrorMemo()).get(m, shape, mode, cfg)
            except ReferenceFailed as e:
                rec["rel_err_note"] = str(e)[:2000]
        else:
            rec["rel_err_note"] = "error check disabled ([check] rel_err = false or --no-check)"
        _free(device)
        inputs = m.make_inputs(shape, cfg.check.seed)
        call, leaves = timed_call(m, inputs, shape, mode)
        if device.type == "cuda":
            t = timing.time_cuda(call, cfg.timing.warmup_ms, cfg.timing.rep_ms, grad_to_none=leaves)
            # after timing: the first calls may autotune, and autotuning allocates its own buffers
            rec["peak_mem_bytes"], rec["peak_mem_kind"] = timing.peak_memory(call, device)
        else:
            # before timing: the first call is where the CPU allocator grows the heap
            rec["peak_mem_bytes"], rec["peak_mem_kind"] = timing.peak_memory(call, device)
            t = timing.time_cpu(call, cfg.timing.cpu_warmup, cfg.timing.cpu_reps, grad_to_none=leaves)
        for x in leaves:
            x.grad = None
        rec.update(median_ms=t.median_ms, p20_ms=t.p20_ms, p80_ms=t.p80_ms,
                   tokens_per_s=shape.tokens / (t.median_ms / 1e3))
        bad = [k for k, v in (rec["rel_err"] or {}).items() if v is not None and not math.isfinite(v)]
        if bad:
            rec.update(status="error", error=f"non-finite or missing output or gradient (rel_err {', '.join(bad)} is nan)")
    except Unsupported as e:
        rec.update(status="unsupported", error=str(e) or type(e).__name__)
    except Exception as e:  # any method failure (OOM, kernel error) is this point's result
        rec.update(status="error", error=f"{type(e).__name__}: {_first_line(e)}"[:2000])
        rec["traceback"] = traceback.format_exc(limit=8)[-4000:]
    finally:
        inputs = None
        _free(device)
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec


def _free(device) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def run_sweep(cfg: SweepConfig, specs: list[PointSpec], doc: dict, path: Path,
              resume_keys: frozenset = frozenset(),
              on_point: Optional[Callable[[PointSpec, Optional[dict]], None]] = None) -> dict:
    """Measure every spec not in resume_keys, appending to doc['points'] and rewriting `path`
    after each point. on_point(spec, record) is called after each point (record None if skipped)."""
    memo = ErrorMemo()
    if cfg.timing.cpu_threads is not None and any(torch.device(s.shape.device).type == "cpu" for s in specs):
        torch.set_num_threads(cfg.timing.cpu_threads)
    for spec in specs:
        if spec.key() in resume_keys:
            if on_point:
                on_point(spec, None)
            continue
        rec = measure(spec, cfg, memo)
        doc["points"] = [p for p in doc["points"] if results.point_key(p) != spec.key()] + [rec]
        results.write(doc, path)
        if on_point:
            on_point(spec, rec)
    return doc


def resumable_keys(doc: dict) -> frozenset:
    """Points a resumed run skips: those measured (ok) or known unsupported; errors run again."""
    return frozenset(results.point_key(p) for p in doc["points"] if p["status"] in ("ok", "unsupported"))
