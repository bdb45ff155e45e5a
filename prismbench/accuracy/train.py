"""Train one tiny model on one task and score it on a disjoint test stream.

`run_one(preset, task, method, width, seed)` returns one results record (a dict). It never
raises for a method that cannot run: a missing mixer gives `status="unavailable"`, any other
failure `status="error"`, both with a `reason`.

Device-agnostic and free of per-step host syncs: batches are generated on the CPU a chunk of
steps at a time and copied once per chunk; the loss of every step stays on the device and is read
back once at the end; accuracy counts are summed on the device.

Example::

    >>> rec = run_one(get_preset("ci"), "mux", "transformer", width=16, seed=0, steps=20)
    >>> rec["status"], 0.0 <= rec["accuracy"] <= 1.0
    ('ok', True)
"""
from __future__ import annotations

import math
import time
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from prismbench.accuracy.mixers import MixerUnavailable
from prismbench.accuracy.model import TinyLM
from prismbench.accuracy.presets import Preset
from prismbench.accuracy.tasks import IGNORE, TaskStream, Vocab, stable_seed
from prismbench.registry import Unsupported

CHUNK_STEPS = 100  # steps of training data generated and copied to the device at once
LOSS_CURVE_POINTS = 50  # the record keeps the mean loss over this many equal spans of training


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available")
    return dev


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def run_one(preset: Preset, task: str, method: str, width: Optional[int] = None, seed: int = 0, *,
            steps: Optional[int] = None, device: str = "auto",
            on_step: Optional[Callable[[int], None]] = None, sync_check: bool = False) -> dict:
    """Train `method`'s TinyLM on `task` under `preset` and return its results record.

    Args:
        width: model width (default: the preset's width for the task).
        steps: training steps (default: the preset's).
        on_step: called with the number of steps done, every few steps (host side only).
        sync_check: on CUDA, run every training step after the first under
            `torch.cuda.set_sync_debug_mode("error")`, so a host sync fails the run (a test hook).

    Returns a dict with `task, method, width, seed, steps, accuracy, preset, status`, plus the
    mixer backend, sizes, final loss, a coarse loss curve and timings.
    """
    if task not in preset.tasks:
        raise ValueError(f"task={task!r} is not in preset {preset.name!r} (tasks: {', '.join(preset.tasks)})")
    setting = preset.tasks[task]
    width = setting.width if width is None else width
    steps = preset.steps if steps is None else steps
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    dev = resolve_device(device)
    rec = {
        "task": task, "method": method, "width": width, "seed": seed, "steps": steps, "accuracy": None,
        "preset": preset.name, "status": "ok", "reason": None, "backend": None,
        "seq_len": setting.seq_len, "vocab_size": preset.vocab_size, "task_params": dict(setting.params),
        "batch_size": preset.batch_size, "lr": preset.lr, "n_layers": preset.n_layers, "heads": preset.heads,
        "device": _device_name(dev),
    }
    try:
        _train_eval(preset, task, method, width, seed, steps, dev, on_step, rec, sync_check)
    except (MixerUnavailable, Unsupported) as e:
        rec.update(status="unavailable", reason=f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - one failing run must not stop a sweep
        rec.update(status="error", reason=f"{type(e).__name__}: {e}")
    finally:
        if sync_check and dev.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    return rec


def _train_eval(preset, task, method, width, seed, steps, dev, on_step, rec, sync_check=False):
    setting = preset.tasks[task]
    vocab = Vocab(preset.vocab_size, preset.n_noise)
    T, B = setting.seq_len, preset.batch_size
    train = TaskStream(task, seq_len=T, vocab=vocab, seed=seed, split="train", params=setting.params)
    test = TaskStream(task, seq_len=T, vocab=vocab, seed=seed, split="test", params=setting.params)

    torch.manual_seed(stable_seed("init", preset.name, task, method, width, seed))
    model = TinyLM(preset.vocab_size, width, method, preset.n_layers, preset.heads, preset.mlp_ratio,
                   device=dev, mixer_kwargs={"conv": preset.conv_size, **preset.mixer_kwargs.get(method, {})}).to(dev)
    rec["backend"] = model.backend
    rec["n_params"] = model.n_params()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=preset.lr, weight_decay=preset.weight_decay,
                            **({"fused": True} if dev.type == "cuda" else {}))
    losses = torch.empty(steps, device=dev)
    pin = dev.type == "cuda"

    model.train()
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        n = min(CHUNK_STEPS, steps - done)
        x, y = train.take(n * B)
        if pin:
            x, y = x.pin_memory(), y.pin_memory()
        x = x.to(dev, non_blocking=True).view(n, B, T)
        y = y.to(dev, non_blocking=True).view(n, B, T)
        for i in range(n):
            if sync_check and dev.type == "cuda" and done + i >= 1 and torch.cuda.get_sync_debug_mode() == 0:
                torch.cuda.set_sync_debug_mode("error")  # every step but the very first
            logits = model(x[i])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y[i].reshape(-1), ignore_index=IGNORE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, preset.grad_clip, foreach=True)
            opt.step()
            losses[done + i] = loss.detach()
            if on_step is not None and (done + i + 1) % 10 == 0:
                on_step(done + i + 1)
        done += n
        if sync_check and dev.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")  # the next chunk's host-to-device copy may wait
    if on_step is not None:
        on_step(steps)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    rec["train_seconds"] = time.perf_counter() - t0

    model.eval()
    t0 = time.perf_counter()
    correct = torch.zeros((), dtype=torch.long, device=dev)
    total = torch.zeros((), dtype=torch.long, device=dev)
    with torch.no_grad():
        left = preset.test_samples
        while left > 0:
            n = min(preset.eval_batch, left)
            x, y = test.take(n)
            x, y = x.to(dev), y.to(dev)
            pred = model(x).argmax(-1)
            mask = y != IGNORE
            correct += ((pred == y) & mask).sum()
            total += mask.sum()
            left -= n
    correct, total = int(correct), int(total)
    rec["eval_seconds"] = time.perf_counter() - t0
    rec["test_samples"] = preset.test_samples
    rec["test_positions"] = total
    rec["accuracy"] = correct / total

    curve = losses.float().cpu()
    span = max(1, math.ceil(steps / LOSS_CURVE_POINTS))
    rec["loss_curve"] = [float(curve[i : i + span].mean()) for i in range(0, steps, span)]
    rec["loss_curve_every"] = span
    rec["final_loss"] = float(curve[-min(steps, 100):].mean())
    rec["diverged"] = not math.isfinite(rec["final_loss"])
