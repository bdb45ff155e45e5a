"""Train one tiny model on one task and score it on a disjoint test stream.

`run_one(preset, task, method, width, seed)` returns one results record (a dict). It never
raises for a method that cannot run: a missing mixer gives `status="unavailable"`, any other
failure `status="error"`, both with a `reason`.

`run_group(preset, runs)` trains several runs at once in this process, in lockstep: on CUDA each
run has its own stream, and after a few eager warm-up steps each run's whole training step
(forward, loss, backward, clipping, AdamW) is captured once as a CUDA graph and replayed. The
models are tiny (width 16, length 128), so one run alone leaves a GPU idle between its ~10^3
small kernel launches per step; graphs remove the launch cost and the streams let the runs' kernels
share the GPU. A run whose step cannot be captured (e.g. an op that syncs with the host) keeps
training eagerly, and its record says so (`cuda_graph`). Records are the same as `run_one`'s,
plus `group_size`; `train_seconds` is then the whole group's training time.

Device-agnostic and free of per-step host syncs: a run's training batches are generated on the
CPU up front (compact dtypes) and copied to the device once; each step picks its batch with a
device-side step counter and writes its loss into a device buffer, read back once at the end;
accuracy counts are summed on the device.

Example::

    >>> rec = run_one(get_preset("ci"), "mux", "transformer", width=16, seed=0, steps=20)
    >>> rec["status"], 0.0 <= rec["accuracy"] <= 1.0
    ('ok', True)
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from prismbench.accuracy.mixers import MixerUnavailable
from prismbench.accuracy.model import TinyLM
from prismbench.accuracy.presets import Preset
from prismbench.accuracy.tasks import IGNORE, TaskStream, Vocab, stable_seed
from prismbench.registry import Unsupported

CHUNK_STEPS = 100  # steps of training data generated (and narrowed to compact dtypes) at once
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


def _record(preset: Preset, task: str, method: str, width: Optional[int], seed: int, steps: Optional[int],
            dev: torch.device) -> dict:
    if task not in preset.tasks:
        raise ValueError(f"task={task!r} is not in preset {preset.name!r} (tasks: {', '.join(preset.tasks)})")
    setting = preset.tasks[task]
    width = setting.width if width is None else width
    steps = preset.steps if steps is None else steps
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    return {
        "task": task, "method": method, "width": width, "seed": seed, "steps": steps, "accuracy": None,
        "preset": preset.name, "status": "ok", "reason": None, "backend": None,
        "seq_len": setting.seq_len, "vocab_size": preset.vocab_size, "task_params": dict(setting.params),
        "batch_size": preset.batch_size, "lr": preset.lr, "n_layers": preset.n_layers, "heads": preset.heads,
        "device": _device_name(dev),
    }


def _fail(rec: dict, e: BaseException) -> None:
    if isinstance(e, (MixerUnavailable, Unsupported)):
        rec.update(status="unavailable", reason=f"{type(e).__name__}: {e}")
    else:
        rec.update(status="error", reason=f"{type(e).__name__}: {e}")


def train_data(preset: Preset, task: str, seed: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's training batches, `x` uint8 and `y` int16 (IGNORE fits), both `[steps, B, T]`, on the CPU.

    The stream does not depend on how it is consumed, so this equals drawing batch after batch."""
    setting = preset.tasks[task]
    T, B = setting.seq_len, preset.batch_size
    if preset.vocab_size > 256:
        raise ValueError(f"vocab_size={preset.vocab_size}: the compact training data holds token ids < 256")
    stream = TaskStream(task, seq_len=T, vocab=Vocab(preset.vocab_size, preset.n_noise), seed=seed, split="train",
                        params=setting.params)
    xs, ys = [], []
    for done in range(0, steps, CHUNK_STEPS):
        n = min(CHUNK_STEPS, steps - done)
        x, y = stream.take(n * B)
        xs.append(x.to(torch.uint8).view(n, B, T))
        ys.append(y.to(torch.int16).view(n, B, T))
    return torch.cat(xs), torch.cat(ys)


class _Trainer:
    """One run's model, optimiser, training data and loss buffer on one device.

    `step()` trains on batch number `step_idx` (a device counter), so an eager step and a replay of
    the captured step compute the same thing."""

    def __init__(self, preset: Preset, rec: dict, dev: torch.device):
        self.preset, self.rec, self.dev = preset, rec, dev
        task, method, width, seed = rec["task"], rec["method"], rec["width"], rec["seed"]
        torch.manual_seed(stable_seed("init", preset.name, task, method, width, seed))
        self.model = TinyLM(preset.vocab_size, width, method, preset.n_layers, preset.heads, preset.mlp_ratio,
                            device=dev, mixer_kwargs={"conv": preset.conv_size,
                                                      **preset.mixer_kwargs.get(method, {})}).to(dev)
        rec["backend"] = self.model.backend
        rec["n_params"] = self.model.n_params()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        cuda = dev.type == "cuda"
        # capturable on CUDA whether or not a graph is captured, so eager and replayed steps run the same kernels
        self.opt = torch.optim.AdamW(self.params, lr=preset.lr, weight_decay=preset.weight_decay,
                                     **({"fused": True, "capturable": True} if cuda else {}))
        self.stream = torch.cuda.Stream(dev) if cuda else None
        self.losses = torch.empty(rec["steps"], device=dev)
        self.step_idx = torch.zeros(1, dtype=torch.long, device=dev)
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.x_all = self.y_all = None

    def load(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The whole run's training data (`train_data`), copied to the device once."""
        pin = self.dev.type == "cuda"
        self.x_all = (x.pin_memory() if pin else x).to(self.dev, non_blocking=pin)
        self.y_all = (y.pin_memory() if pin else y).to(self.dev, non_blocking=pin)

    def _body(self) -> None:
        i = self.step_idx
        x = self.x_all.index_select(0, i)[0].long()
        y = self.y_all.index_select(0, i)[0].long()
        logits = self.model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), ignore_index=IGNORE)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, self.preset.grad_clip, foreach=True)
        self.opt.step()
        self.losses.index_copy_(0, i, loss.detach().view(1))
        self.step_idx += 1

    def step(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self.opt.zero_grad(set_to_none=True)
            self._body()

    def capture(self) -> None:
        """Capture one training step as a CUDA graph (after eager warm-up steps on `self.stream`)."""
        self.opt.zero_grad(set_to_none=True)  # the captured backward allocates the gradients it then overwrites
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=self.stream, capture_error_mode="thread_local"):
            self._body()
        self.graph = g

    def evaluate(self) -> None:
        preset, rec = self.preset, self.rec
        setting = preset.tasks[rec["task"]]
        test = TaskStream(rec["task"], seq_len=setting.seq_len, vocab=Vocab(preset.vocab_size, preset.n_noise),
                          seed=rec["seed"], split="test", params=setting.params)
        self.model.eval()
        t0 = time.perf_counter()
        correct = torch.zeros((), dtype=torch.long, device=self.dev)
        total = torch.zeros((), dtype=torch.long, device=self.dev)
        with torch.no_grad():
            left = preset.test_samples
            while left > 0:
                n = min(preset.eval_batch, left)
                x, y = test.take(n)
                x, y = x.to(self.dev), y.to(self.dev)
                pred = self.model(x).argmax(-1)
                mask = y != IGNORE
                correct += ((pred == y) & mask).sum()
                total += mask.sum()
                left -= n
        correct, total = int(correct), int(total)
        rec["eval_seconds"] = time.perf_counter() - t0
        rec["test_samples"] = preset.test_samples
        rec["test_positions"] = total
        rec["accuracy"] = correct / total

        steps = rec["steps"]
        curve = self.losses.float().cpu()
        span = max(1, math.ceil(steps / LOSS_CURVE_POINTS))
        rec["loss_curve"] = [float(curve[i : i + span].mean()) for i in range(0, steps, span)]
        rec["loss_curve_every"] = span
        rec["final_loss"] = float(curve[-min(steps, 100):].mean())
        rec["diverged"] = not math.isfinite(rec["final_loss"])

    def release(self) -> None:
        self.graph = None
        self.model = self.opt = self.params = self.x_all = self.y_all = None


def run_one(preset: Preset, task: str, method: str, width: Optional[int] = None, seed: int = 0, *,
            steps: Optional[int] = None, device: str = "auto",
            on_step: Optional[Callable[[int], None]] = None, sync_check: bool = False) -> dict:
    """Train `method`'s TinyLM on `task` under `preset` (eagerly) and return its results record.

    Args:
        width: model width (default: the preset's width for the task).
        steps: training steps (default: the preset's).
        on_step: called with the number of steps done, every few steps (host side only).
        sync_check: on CUDA, run every training step after the first under
            `torch.cuda.set_sync_debug_mode("error")`, so a host sync fails the run (a test hook).

    Returns a dict with `task, method, width, seed, steps, accuracy, preset, status`, plus the
    mixer backend, sizes, final loss, a coarse loss curve and timings.
    """
    [rec] = run_group(preset, [(task, method, width, seed)], steps=steps, device=device, graphs=False,
                      on_step=on_step, progress_every=10, sync_check=sync_check)
    del rec["group_size"]  # a run trained alone
    return rec


def run_group(preset: Preset, runs: Sequence[tuple[str, str, Optional[int], int]], *, steps: Optional[int] = None,
              device: str = "auto", graphs: bool = True, warmup: int = 3,
              data: Optional[Callable[[str, int, int], tuple[torch.Tensor, torch.Tensor]]] = None,
              on_step: Optional[Callable[[int], None]] = None, progress_every: int = 100,
              sync_check: bool = False) -> list[dict]:
    """Train the runs `(task, method, width, seed)` at once, in lockstep, and return their records.

    Args:
        graphs: on CUDA, replay each run's captured training step after `warmup` eager steps
            (ignored on the CPU, where every step is eager).
        data: `(task, seed, steps) -> (x, y)` as `train_data` returns them (e.g. from worker processes);
            default: `train_data` here.
        on_step: called with the number of lockstep steps done, every `progress_every` steps and at the end.
        sync_check: on CUDA, run every eager training step after the first under
            `torch.cuda.set_sync_debug_mode("error")`, so a host sync fails the run (a test hook).

    A run that fails to build, load or step gets an `error` (or `unavailable`) record and leaves the
    group; the others go on. A run whose capture fails trains eagerly (`cuda_graph` says why).
    """
    dev = resolve_device(device)
    recs = [dict(_record(preset, t, m, w, s, steps, dev), group_size=len(runs)) for t, m, w, s in runs]
    if len({r["steps"] for r in recs}) > 1:
        raise ValueError("run_group: every run must have the same number of steps")
    cuda = dev.type == "cuda"
    use_graphs = graphs and cuda
    live: list[_Trainer] = []
    for rec in recs:
        try:
            tr = _Trainer(preset, rec, dev)
            x, y = (data or (lambda t, s, n: train_data(preset, t, s, n)))(rec["task"], rec["seed"], rec["steps"])
            with torch.cuda.stream(tr.stream) if cuda else contextlib.nullcontext():
                tr.load(x, y)
                tr.model.train()
            live.append(tr)
        except Exception as e:  # noqa: BLE001
            _fail(rec, e)
    if not recs:
        return recs
    n_steps = recs[0]["steps"]
    n_warm = min(warmup, n_steps) if use_graphs else 0

    def each(fn):
        for tr in list(live):
            try:
                with torch.cuda.stream(tr.stream) if cuda else contextlib.nullcontext():
                    fn(tr)
            except Exception as e:  # noqa: BLE001
                _fail(tr.rec, e)
                live.remove(tr)
                tr.release()

    if cuda:
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(n_warm):
        each(_Trainer.step)
    if use_graphs and n_steps > n_warm:
        if cuda:
            torch.cuda.synchronize(dev)

        def capture(tr):
            try:
                tr.capture()
                tr.rec["cuda_graph"] = True
            except Exception as e:  # noqa: BLE001 - fall back to eager steps for this run
                tr.graph = None
                tr.rec["cuda_graph"] = False
                tr.rec["cuda_graph_error"] = f"{type(e).__name__}: {e}"[:500]
                torch.cuda.synchronize(dev)

        each(capture)
    else:
        for tr in live:
            tr.rec["cuda_graph"] = False
    check_syncs = sync_check and cuda
    try:
        for k in range(n_warm, n_steps):
            if check_syncs and k == n_warm + 1:
                torch.cuda.set_sync_debug_mode("error")  # every step but the first
            each(_Trainer.step)
            if on_step is not None and (k + 1) % progress_every == 0:
                on_step(k + 1)
    finally:
        if check_syncs:
            torch.cuda.set_sync_debug_mode("default")
    if cuda:
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    if on_step is not None:
        on_step(n_steps)

    def finish(tr):
        tr.rec["train_seconds"] = seconds
        tr.evaluate()

    each(finish)
    for tr in live:
        tr.release()
    return recs
