"""Training throughput of the language models (issue 10): tokens/s of full training steps against T.

One point = one model at one sequence length T, with B = tokens_per_step / T (a fixed token budget
per step, as the kernel sweep's B*T = 32768). A fresh model is built for every point from the same
seed, then `warmup` untimed and `steps` timed training steps run, each

    loss = CausalLM.loss(ids [B, T+1])      (bf16 autocast on the GPU, fp32 on the CPU)
    loss.backward(); AdamW.step(); zero_grad

on one batch of seeded uniform random tokens, the same batch at every step: the classic overfit-one-batch
check, so a model whose forward, backward and optimizer step work shows a clearly falling loss within a
few steps (from about ln vocab; on fresh random batches a 130m model's loss only wanders around ln
vocab for the first steps). The data do not change what is timed.

Each timed step is synchronised and timed with `perf_counter` (steps last from milliseconds to
minutes; CUDA-event precision is not needed). Peak memory is `torch.cuda.max_memory_allocated` over
the timed steps (parameters, gradients, AdamW state and activations), reset after the warm-up; on
the CPU the growth of the peak resident set over the timed steps (Linux VmHWM), as `prismbench.timing`.

Results: the results format of `prismbench.results` (schema 1, env block, atomic rewrite after every
point) with `mode = "train"`. Field use for training points:

    method            "lm-<model>" (e.g. "lm-prism-triton"; models in prismbench.lm.mixers)
    family, backend   the mixer's family and the label of the code that ran it (a stand-in says so)
    dtype             "bfloat16" (bf16 autocast, fp32 master weights) or "float32"
    B, T, H, K, V, L  batch, sequence length, mixer heads and head widths; L for PRISM models, else null
    median_ms, p20_ms, p80_ms   time of one training step (forward, backward, AdamW step)
    tokens_per_s      B*T / median step time
    peak_mem_bytes    see above; peak_mem_kind "cuda_max_allocated" | "cpu_peak_rss_growth"
    rel_err           null (rel_err_note says: training throughput, no reference)
    state_size        floats of recurrent state per sequence over all blocks (KV cache for the Transformer)
    status, error     "ok" | "error" (timeouts, out of memory, skips are errors, with the reason) | "unsupported"
  and, for training points only:
    model             config name ("130m", "tiny"); params: exact parameter count (tied head once)
    mixer             model name without "lm-"; serial: a per-token Python loop
    tokens_per_step, warmup_steps, timed_steps, lr, precision ("bf16-autocast" | "fp32")
    step_ms           every timed step (ms); warmup_ms: every warm-up step (ms)
    losses            the training loss of every step, warm-up first (computed before that step's update)
    loss              the loss of the last timed step; loss_first: of the first step
    loss_decreased    loss < loss_first (null with a single step)
    budget_s          the point's time budget
    tokens_per_s_upper_bound   timeouts only: tokens_per_step / time the unfinished step had run
                               (set where that step is not the point's first, or the model is serial)
    predicted_step_s  predicted skips only (serial models): step time extrapolated linearly in T

Time budget: every point runs under a deadline (SIGALRM in the main thread; elsewhere none). It is
checked between Python operations: a backward pass already running finishes first. A point that
runs out of time is recorded as an error ("timeout ...") and the run goes on. After a timeout, the
model's longer T are skipped (recorded). For serial models the step time at the next T is
predicted from the last measured one (x T_new / T_old) and the point is skipped (recorded, with
the prediction) when the prediction exceeds the budget. A total budget, when given, skips what is
left once it is spent, so the results file and figures are always written.

Example::

    >>> from prismbench.lm.throughput import TrainSettings, run_train_throughput
    >>> s = TrainSettings(config="tiny", seq_lens=(16, 32), tokens_per_step=64, warmup=1, steps=2)
    >>> doc = run_train_throughput(s, ["transformer"], torch.device("cpu"), path=None)
    >>> [p["T"] for p in doc["points"]], doc["points"][0]["mode"]
    ([16, 32], 'train')
"""
from __future__ import annotations

import contextlib
import gc
import math
import signal
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from prismbench import results as resmod
from prismbench.lm.mixers import LM_MIXERS, build_lm, model_state_size, resolve_models
from prismbench.lm.model import count_parameters, get_config
from prismbench.registry import Unsupported
from prismbench.timing import proc_status_bytes, reset_peak_rss

__all__ = ["TrainSettings", "PRESETS", "PointTimeout", "train_point", "run_train_throughput",
           "results_path"]


#: per-config defaults of the sweep (the CLI's defaults)
PRESETS: dict[str, dict] = {
    "130m": {"seq_lens": (2048, 4096, 8192, 16384), "tokens_per_step": 32768, "lr": 1e-3},
    "tiny": {"seq_lens": (32, 64), "tokens_per_step": 128, "lr": 1e-3},
}


class PointTimeout(Exception):
    """A point ran past its time budget."""


@dataclass
class TrainSettings:
    """Settings of a training-throughput run.

    Attributes:
        config: LM config name (`prismbench.lm.model.LM_CONFIGS`).
        seq_lens: sequence lengths T; each must divide tokens_per_step.
        tokens_per_step: B * T of every step.
        warmup, steps: untimed and timed steps per point (non-serial models).
        serial_warmup, serial_steps: the same for serial models (per-token loops).
        point_budget_s, serial_budget_s: time budget of one point (non-serial / serial models).
        first_point_extra_s: extra budget for a non-serial model's first point (Triton compilation,
            autotuning; the per-token loops compile nothing).
        total_budget_s: budget of the whole run (None: unlimited).
        lr, weight_decay: AdamW settings (betas 0.9, 0.95).
        L: PRISM solver depth. precision: "auto" (bf16 autocast on CUDA, fp32 on the CPU), "bf16", "fp32".
        seed: model init and data seed.
    """

    config: str = "130m"
    seq_lens: tuple[int, ...] = (2048, 4096, 8192, 16384)
    tokens_per_step: int = 32768
    warmup: int = 2
    steps: int = 3
    serial_warmup: int = 0
    serial_steps: int = 1
    point_budget_s: float = 90.0
    serial_budget_s: float = 150.0
    first_point_extra_s: float = 120.0
    total_budget_s: Optional[float] = None
    lr: float = 1e-3
    weight_decay: float = 0.1
    L: int = 2
    precision: str = "auto"
    seed: int = 0

    def __post_init__(self):
        get_config(self.config)
        self.seq_lens = tuple(self.seq_lens)
        if not self.seq_lens:
            raise ValueError("seq_lens is empty")
        for i, T in enumerate(self.seq_lens):
            if isinstance(T, bool) or not isinstance(T, int) or T < 1:
                raise ValueError(f"seq_lens[{i}]={T!r} must be an int >= 1")
            if self.tokens_per_step % T:
                raise ValueError(f"seq_lens[{i}]={T} does not divide tokens_per_step={self.tokens_per_step}")
        for f in ("tokens_per_step", "steps", "serial_steps", "L"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{f}={v!r} must be an int >= 1")
        for f in ("warmup", "serial_warmup"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{f}={v!r} must be an int >= 0")
        for f in ("point_budget_s", "serial_budget_s"):
            if not getattr(self, f) > 0:
                raise ValueError(f"{f}={getattr(self, f)!r} must be > 0")
        if not self.first_point_extra_s >= 0:
            raise ValueError(f"first_point_extra_s={self.first_point_extra_s!r} must be >= 0")
        if self.total_budget_s is not None and not self.total_budget_s > 0:
            raise ValueError(f"total_budget_s={self.total_budget_s!r} must be > 0 or None")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision={self.precision!r} must be 'auto', 'bf16' or 'fp32'")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r} must be > 0")


@contextlib.contextmanager
def _deadline(seconds: Optional[float], what: str):
    """Raise PointTimeout in the main thread after `seconds` (no-op elsewhere or when None)."""
    if (seconds is None or threading.current_thread() is not threading.main_thread()
            or not hasattr(signal, "setitimer")):
        yield
        return

    def on_alarm(signum, frame):
        raise PointTimeout(f"timeout: {what} ran past its budget of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(float(seconds), 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _timeout_in_chain(e: BaseException) -> Optional["PointTimeout"]:
    """The PointTimeout behind `e`, if any: the alarm can fire inside a library (e.g. Triton's compiler),
    which re-raises it wrapped as its own error (a `CompilationError`)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, PointTimeout):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _record_timeout(rec, timeout, raised, state, n_warm, n_timed, B, T) -> None:
    i = state["step"]
    phase = "building the model" if i < 0 else (
        f"warm-up step {i + 1}/{n_warm}" if i < n_warm else f"timed step {i - n_warm + 1}/{n_timed}")
    ran = None if state["t_step"] is None else time.perf_counter() - state["t_step"]
    rec["error"] = f"{timeout} (during {phase}" + (f", which had run {ran:.1f} s)" if ran is not None else ")")
    if raised is not timeout:
        rec["error"] += f"; surfaced as {type(raised).__name__} from the library it interrupted"
    if ran is not None and (i >= 1 or (i == 0 and rec["serial"])):
        rec["tokens_per_s_upper_bound"] = B * T / ran


def _record_failure(rec, e, device) -> None:
    if isinstance(e, (Unsupported, _mixer_unavailable())):
        rec["status"], rec["error"] = "unsupported", f"unsupported: {e}"
    elif isinstance(e, torch.OutOfMemoryError):
        rec["error"] = f"out of memory: {str(e).splitlines()[0][:300]}"
        if device.type == "cuda":
            rec["peak_mem_bytes"], rec["peak_mem_kind"] = int(torch.cuda.max_memory_allocated(device)), \
                "cuda_max_allocated"
    else:
        rec["error"] = f"{type(e).__name__}: {str(e)[:500]}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def _bf16(settings: TrainSettings, device: torch.device) -> bool:
    if settings.precision == "auto":
        return device.type == "cuda"
    return settings.precision == "bf16"


def _base_point(name: str, settings: TrainSettings, T: int, device: torch.device) -> dict:
    cfg = get_config(settings.config)
    mix = LM_MIXERS[name]
    bf16 = _bf16(settings, device)
    serial = mix.serial
    return {
        "method": f"lm-{name}", "family": mix.family, "backend": None, "mode": "train",
        "dtype": "bfloat16" if bf16 else "float32",
        "B": settings.tokens_per_step // T, "T": T, "H": cfg.num_heads, "K": cfg.head_dim, "V": cfg.head_dim,
        "L": settings.L if mix.uses_L else None,
        "median_ms": None, "p20_ms": None, "p80_ms": None, "tokens_per_s": None,
        "peak_mem_bytes": None, "peak_mem_kind": None,
        "rel_err": None, "rel_err_note": "training throughput point: no reference",
        "state_size": model_state_size(name, cfg, T, settings.L),
        "status": "error", "error": None, "device": device.type, "seconds": 0.0,
        "model": cfg.name, "mixer": name, "serial": serial, "params": None,
        "tokens_per_step": settings.tokens_per_step,
        "warmup_steps": settings.serial_warmup if serial else settings.warmup,
        "timed_steps": settings.serial_steps if serial else settings.steps,
        "lr": settings.lr, "precision": "bf16-autocast" if bf16 else "fp32",
        "step_ms": [], "warmup_ms": [], "losses": [], "loss": None, "loss_first": None, "loss_decreased": None,
        "budget_s": None,
    }


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def train_point(name: str, settings: TrainSettings, T: int, device: torch.device,
                budget_s: Optional[float] = None) -> dict:
    """Measure one (model, T) point; never raises for a failing model (the point records it).

    Returns the point dict (fields in the module docstring).
    """
    rec = _base_point(name, settings, T, device)
    rec["budget_s"] = budget_s
    cfg = get_config(settings.config)
    B, n_warm, n_timed = rec["B"], rec["warmup_steps"], rec["timed_steps"]
    bf16 = rec["dtype"] == "bfloat16"
    t_point = time.perf_counter()
    state = {"step": -1, "t_step": None}
    model = opt = ids = None
    try:
        with _deadline(budget_s, f"lm-{name} at T={T}"):
            torch.manual_seed(settings.seed)
            model = build_lm(name, cfg, device, L=settings.L, max_T=max(settings.seq_lens))
            rec["backend"] = model.backend
            rec["params"] = count_parameters(model)
            opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.95),
                                    weight_decay=settings.weight_decay, fused=device.type == "cuda")
            gen = torch.Generator().manual_seed(settings.seed + 1)
            ids = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=gen).to(device)
            rss0 = None
            for i in range(n_warm + n_timed):
                if i == n_warm:
                    _sync(device)
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    elif reset_peak_rss():
                        rss0 = proc_status_bytes("VmRSS")
                state["step"], state["t_step"] = i, time.perf_counter()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = model.loss(ids)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                _sync(device)
                dt = (time.perf_counter() - state["t_step"]) * 1e3
                rec["losses"].append(float(loss.detach()))
                (rec["warmup_ms"] if i < n_warm else rec["step_ms"]).append(dt)
                del loss
            if device.type == "cuda":
                rec["peak_mem_bytes"], rec["peak_mem_kind"] = int(torch.cuda.max_memory_allocated(device)), \
                    "cuda_max_allocated"
            elif rss0 is not None:
                hwm = proc_status_bytes("VmHWM")
                if hwm is not None:
                    rec["peak_mem_bytes"], rec["peak_mem_kind"] = max(0, hwm - rss0), "cpu_peak_rss_growth"
        st = rec["step_ms"]
        rec["median_ms"] = statistics.median(st)
        rec["p20_ms"], rec["p80_ms"] = _quantile(st, 0.2), _quantile(st, 0.8)
        rec["tokens_per_s"] = B * T / (rec["median_ms"] / 1e3)
        rec["status"] = "ok"
    except Exception as e:  # noqa: BLE001 - any failure of a model is recorded, the run goes on
        timeout = _timeout_in_chain(e)
        if timeout is None:
            _record_failure(rec, e, device)
        else:
            _record_timeout(rec, timeout, e, state, n_warm, n_timed, B, T)
    finally:
        del model, opt, ids
        try:
            _free(device)
        except Exception:  # noqa: BLE001 - a broken CUDA context shows up in the next point
            pass
    if rec["losses"]:
        rec["loss_first"] = rec["losses"][0]
        rec["loss"] = rec["losses"][-1]
        if len(rec["losses"]) >= 2:
            rec["loss_decreased"] = bool(rec["loss"] < rec["loss_first"])
    rec["seconds"] = time.perf_counter() - t_point
    return rec


def _mixer_unavailable():
    try:
        from prismbench.accuracy.mixers import MixerUnavailable
    except Exception:  # noqa: BLE001 - the accuracy package may be absent
        return Unsupported
    return MixerUnavailable


def results_path(out: Path, config: str, env: dict) -> Path:
    """`<out>/train-<config>-<device slug>.json`."""
    from prismbench.env import device_slug

    return Path(out) / f"train-{config}-{device_slug(env)}.json"


def run_train_throughput(settings: TrainSettings, models: list[str] | str, device: torch.device,
                         path: Optional[Path], on_point: Optional[Callable[[dict], None]] = None,
                         env: Optional[dict] = None) -> dict:
    """Run every (model, T) point, models in `MODEL_ORDER` order and T ascending.

    Args:
        models: names (or "all" / a comma-separated string).
        path: results JSON, rewritten atomically after every point (None: not written).
        on_point: called with every finished point.

    Returns:
        the results document (`prismbench.results` schema, mode "train" points).
    """
    from prismbench.env import collect_env

    names = resolve_models(models) if isinstance(models, str) else resolve_models(",".join(models))
    device = torch.device(device)
    env = env if env is not None else collect_env()
    cfg = get_config(settings.config)
    config = {"kind": "train-throughput", "preset": settings.config, "model_config": cfg.as_dict(),
              "settings": asdict(settings), "models": names, "data": "one batch of uniform random tokens, repeated every step",
              "optimizer": {"name": "AdamW", "betas": [0.9, 0.95], "fused": device.type == "cuda"}}
    doc = resmod.new_document(env, config)
    t_run = time.perf_counter()
    seqs = sorted(settings.seq_lens)
    for name in names:
        serial = LM_MIXERS[name].serial
        budget = settings.serial_budget_s if serial else settings.point_budget_s
        n_steps = (settings.serial_warmup + settings.serial_steps) if serial else (settings.warmup + settings.steps)
        last_ok: Optional[dict] = None
        timed_out_at: Optional[int] = None
        for j, T in enumerate(seqs):
            b = budget + (settings.first_point_extra_s if j == 0 and not serial else 0.0)
            skip = None
            if settings.total_budget_s is not None:
                left = settings.total_budget_s - (time.perf_counter() - t_run)
                if left <= 1.0:
                    skip = f"skipped: the run's total budget of {settings.total_budget_s:.0f} s is spent"
                b = min(b, max(left, 1.0))
            if skip is None and timed_out_at is not None:
                skip = f"skipped: lm-{name} timed out at T={timed_out_at} (budget {budget:.0f} s per point)"
            pred = None
            if skip is None and serial and last_ok is not None:
                per_step = last_ok["median_ms"] / 1e3 * T / last_ok["T"]
                pred = per_step
                if per_step * n_steps > b:
                    skip = (f"skipped: predicted {per_step:.0f} s per step x {n_steps} step(s) > budget {b:.0f} s "
                            f"(measured {last_ok['median_ms'] / 1e3:.1f} s per step at T={last_ok['T']}; a "
                            f"per-token loop's step time grows linearly in T at a fixed token budget)")
            if skip is not None:
                rec = _base_point(name, settings, T, device)
                rec["error"], rec["budget_s"] = skip, b
                if pred is not None:
                    rec["predicted_step_s"] = pred
                    rec["tokens_per_s_predicted"] = settings.tokens_per_step / pred
            else:
                rec = train_point(name, settings, T, device, budget_s=b)
                if rec["status"] == "ok":
                    last_ok = rec
                elif str(rec.get("error", "")).startswith("timeout"):
                    timed_out_at = T
            doc["points"].append(rec)
            if path is not None:
                resmod.write(doc, path)
            if on_point is not None:
                on_point(rec)
    return doc


def fmt_tokens(x: Optional[float]) -> str:
    """Tokens/s as thousands with one decimal ("57.3K"), "-" for None/NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x / 1e3:,.1f}K" if x >= 100 else f"{x:.1f}"
