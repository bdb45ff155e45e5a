"""The language models of the throughput study: model name -> mixer constructor (existing layer classes).

Every entry builds one of the project's layers (nothing is re-implemented here):

| model                 | family | mixer (class, backend)                                                        |
|-----------------------|--------|-------------------------------------------------------------------------------|
| `prism-triton`        | prism  | `kernels.prism.layer.PRISM`, backend "triton" (exact chunked Triton kernel)   |
| `prism-torch`         | prism  | `PRISM`, backend "torch" (chunked PyTorch form)                               |
| `gla`                 | gla    | `baselines.fla_ops.gla.GLALayer` (fla `chunk_gla` on CUDA, fla naive on CPU)  |
| `gdn`                 | peer   | `accuracy.mixers.GatedDeltaNet` on fla `chunk_gated_delta_rule` where fla runs its backward; else (Hopper with Triton < 3.7.1) `PRISM` with L=1 on Triton; on the CPU `PRISM` L=1 "torch". The backend label says which. |
| `transformer`         | peer   | `accuracy.mixers.SoftmaxAttention` (torch SDPA, RoPE; its short-conv front end) |
| `ttt-triton`          | ttt    | `baselines.ttt.layer.TTTLinearLayer`, backend "triton" (fused exact, mini-batch 1) |
| `ttt-fla-chunk`       | ttt    | `TTTLinearLayer`, backend "fla_chunk" (fla `chunk_ttt_linear`, mini-batch 16) |
| `ttt-loop`            | ttt    | `TTTLinearLayer`, backend "loop" (exact, mini-batch 1, per-token PyTorch loop) |
| `ttt-loop-simplified` | ttt    | `TTTLinearLayer`, backend "simplified" (the PRISM authors' TTT.py loop)       |

Model names are SPEC section 4's method names where one applies; in results a model is recorded as
`method = "lm-<model>"` (e.g. `lm-prism-triton`), so model-level points never mix with kernel-level
ones. `serial` marks the per-token Python loops, whose step time grows with T at a fixed token
budget (the throughput runner predicts and skips points that cannot fit its time budget).

Example::

    >>> from prismbench.lm import LM_CONFIGS, build_lm
    >>> lm = build_lm("prism-torch", LM_CONFIGS["tiny"], device="cpu", L=2)
    >>> lm.backend
    'prism-torch (L=2)'
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn

from prismbench.lm.model import CausalLM, LMConfig, get_config
from prismbench.registry import Unsupported

__all__ = ["LMMixer", "LM_MIXERS", "MODEL_ORDER", "build_lm", "model_state_size", "resolve_models"]


@dataclass(frozen=True)
class LMMixer:
    """One language model of the study.

    build(cfg, device, L, max_T) -> (make_layer(i) -> nn.Module, backend label). Raises
        `prismbench.registry.Unsupported` when the model cannot run on `device`.
    state_size(cfg, T, L) -> floats of recurrent state (or KV cache) per sequence, all blocks.
    """

    name: str
    family: str
    description: str
    build: Callable[[LMConfig, torch.device, int, int], tuple[Callable[[int], nn.Module], str]]
    state_size: Callable[[LMConfig, int, int], int]
    uses_L: bool = False
    serial: bool = False


class _Tuple0(nn.Module):
    """Wraps a layer whose forward returns `(y, state)`; returns `y [B, T, D]`."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)[0]


# ---------------------------------------------------------------------------------------------
# PRISM


def _prism_layer(cfg: LMConfig, L: int, backend: str) -> nn.Module:
    from prismbench.kernels.prism.layer import PRISM

    return _Tuple0(PRISM(hidden_size=cfg.hidden_size, num_heads=cfg.num_heads, head_k_dim=cfg.head_dim,
                         num_steps=L, conv_size=cfg.conv_size, backend=backend))


def _need_triton(device: torch.device, who: str) -> None:
    """Triton kernels need CUDA, or the interpreter (TRITON_INTERPRET=1, tiny shapes) on the CPU."""
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise Unsupported(f"{who}: Triton needs CUDA (or TRITON_INTERPRET=1 on the CPU), device is {device}")


def _check_prism_triton(who: str) -> None:
    from prismbench.kernels.prism.layer import _load_triton_kernel

    try:
        _load_triton_kernel()
    except RuntimeError as e:
        raise Unsupported(f"{who}: {e}") from e


def _build_prism(backend: str):
    def build(cfg, device, L, max_T):
        if backend == "triton":
            _need_triton(device, "prism-triton")
            _check_prism_triton("prism-triton")
        return (lambda i: _prism_layer(cfg, L, backend)), f"prism-{backend} (L={L})"

    return build


def _prism_state(cfg: LMConfig, T: int, L: int) -> int:
    per_layer = cfg.num_heads * cfg.head_dim * cfg.head_dim + (cfg.conv_size - 1) * cfg.hidden_size
    return cfg.num_layers * per_layer


# ---------------------------------------------------------------------------------------------
# GLA


def _build_gla(cfg, device, L, max_T):
    from prismbench.baselines.fla_ops.gla import GLALayer

    label = "fla-chunk-gla" if device.type == "cuda" else "fla-naive-recurrent-gla"
    return (lambda i: _Tuple0(GLALayer(hidden_size=cfg.hidden_size, num_heads=cfg.num_heads,
                                       conv_size=cfg.conv_size))), label


def _gla_state(cfg: LMConfig, T: int, L: int) -> int:
    return _prism_state(cfg, T, L)


# ---------------------------------------------------------------------------------------------
# Gated DeltaNet


def _fla_gdn_refusal(device_str: str) -> Optional[str]:
    """None when fla's chunk_gated_delta_rule runs forward and backward on `device_str`, else why not (the
    accuracy mixers' probe, run once per device and process)."""
    from prismbench.accuracy.mixers import fla_gdn_refusal

    why = fla_gdn_refusal(device_str)
    return None if why is None else f"gdn: fla chunk_gated_delta_rule backward fails here: {why[1]}"


def _build_gdn(cfg, device, L, max_T):
    if device.type != "cuda":
        return (lambda i: _prism_layer(cfg, 1, "torch")), "prism-torch (L=1) as GDN stand-in (CPU)"
    why = _fla_gdn_refusal(str(device))
    if why is None:
        from prismbench.accuracy.mixers import GatedDeltaNet

        return (lambda i: GatedDeltaNet(cfg.hidden_size, cfg.num_heads, device, cfg.conv_size,
                                        backend="fla-chunk")), "fla-chunk-gated-delta-rule"
    _check_prism_triton("gdn")
    return ((lambda i: _prism_layer(cfg, 1, "triton")),
            f"prism-triton (L=1) as GDN stand-in (fla chunk_gated_delta_rule refused: {why[:160]})")


def _gdn_state(cfg: LMConfig, T: int, L: int) -> int:
    return cfg.num_layers * cfg.num_heads * cfg.head_dim * cfg.head_dim


# ---------------------------------------------------------------------------------------------
# Transformer


def _build_transformer(cfg, device, L, max_T):
    from prismbench.accuracy.mixers import SoftmaxAttention

    return (lambda i: SoftmaxAttention(cfg.hidden_size, cfg.num_heads, cfg.conv_size)), "torch-sdpa (RoPE)"


def _kv_cache(cfg: LMConfig, T: int, L: int) -> int:
    return cfg.num_layers * 2 * T * cfg.hidden_size


# ---------------------------------------------------------------------------------------------
# TTT-Linear


_TTT_LABELS = {
    "triton": "ttt-triton (fused exact, mini-batch 1)",
    "fla_chunk": "fla-chunk-ttt-linear (mini-batch 16)",
    "loop": "ttt-loop (PyTorch per-token loop, exact, mini-batch 1)",
    "simplified": "ttt-loop-simplified (PRISM authors' TTT.py loop, mini-batch 1)",
}


def _build_ttt(backend: str):
    def build(cfg, device, L, max_T):
        from prismbench.baselines.ttt.layer import TTTLinearLayer

        if backend == "triton":
            _need_triton(device, "ttt-triton")
        label = _TTT_LABELS[backend]
        if backend == "fla_chunk" and device.type != "cuda":
            label = "ttt mini-batch 16 dual form, PyTorch (CPU stand-in for fla chunk_ttt_linear)"
        return (lambda i: TTTLinearLayer(cfg.hidden_size, cfg.num_heads, backend=backend,
                                         max_seq_len=max(max_T, 1))), label

    return build


def _ttt_state(cfg: LMConfig, T: int, L: int) -> int:
    return cfg.num_layers * cfg.num_heads * (cfg.head_dim * cfg.head_dim + cfg.head_dim)


# ---------------------------------------------------------------------------------------------

LM_MIXERS: dict[str, LMMixer] = {m.name: m for m in (
    LMMixer("prism-triton", "prism", "PRISM layer, exact chunked Triton kernel", _build_prism("triton"),
            _prism_state, uses_L=True),
    LMMixer("gla", "gla", "GLA layer on fla chunk_gla", _build_gla, _gla_state),
    LMMixer("gdn", "peer", "Gated DeltaNet (fla chunk_gated_delta_rule, or PRISM L=1 where fla refuses)",
            _build_gdn, _gdn_state),
    LMMixer("transformer", "peer", "softmax attention (torch SDPA) with RoPE", _build_transformer, _kv_cache),
    LMMixer("ttt-triton", "ttt", "TTT-Linear, fused exact per-token Triton kernel (mini-batch 1)",
            _build_ttt("triton"), _ttt_state),
    LMMixer("ttt-fla-chunk", "ttt", "TTT-Linear through fla chunk_ttt_linear (mini-batch 16)",
            _build_ttt("fla_chunk"), _ttt_state),
    LMMixer("prism-torch", "prism", "PRISM layer, chunked PyTorch form", _build_prism("torch"),
            _prism_state, uses_L=True),
    LMMixer("ttt-loop-simplified", "ttt", "TTT-Linear as the PRISM authors' per-token loop (their TTT.py)",
            _build_ttt("simplified"), _ttt_state, serial=True),
    LMMixer("ttt-loop", "ttt", "TTT-Linear, exact per-token PyTorch loop (mini-batch 1)", _build_ttt("loop"),
            _ttt_state, serial=True),
)}

#: run order of `all`: fast models first, the per-token loops last (an interrupted run keeps the rest)
MODEL_ORDER: tuple[str, ...] = tuple(LM_MIXERS)


def resolve_models(spec: str) -> list[str]:
    """"all" or a comma-separated list of names -> names in `MODEL_ORDER` order; ValueError on an unknown name."""
    if spec.strip() == "all":
        return list(MODEL_ORDER)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ValueError(f"models={spec!r}: give 'all' or a comma-separated list of {', '.join(MODEL_ORDER)}")
    bad = [n for n in names if n not in LM_MIXERS]
    if bad:
        raise ValueError(f"models={spec!r}: unknown model(s) {bad}; known: {', '.join(MODEL_ORDER)}")
    return [n for n in MODEL_ORDER if n in names]


def build_lm(name: str, cfg: LMConfig | str, device="cpu", L: int = 2, max_T: int = 16384) -> CausalLM:
    """Build model `name` (a key of `LM_MIXERS`) with config `cfg` on `device`.

    Args:
        L: PRISM solver depth (prism-* models only).
        max_T: longest sequence the model will see (the simplified TTT layer learns one step offset
            per position up to it).

    Raises:
        ValueError: unknown name or config, L < 1.
        Unsupported: the model cannot run on this device.
    """
    if name not in LM_MIXERS:
        raise ValueError(f"model={name!r} is not one of {', '.join(MODEL_ORDER)}")
    if isinstance(cfg, str):
        cfg = get_config(cfg)
    if isinstance(L, bool) or not isinstance(L, int) or L < 1:
        raise ValueError(f"build_lm: L={L!r} must be an int >= 1")
    device = torch.device(device)
    make_layer, label = LM_MIXERS[name].build(cfg, device, L, max_T)
    return CausalLM(cfg, make_layer, backend=label).to(device)


def model_state_size(name: str, cfg: LMConfig, T: int, L: int = 2) -> int:
    """Floats of recurrent state (KV cache for the Transformer) per sequence, all blocks."""
    return int(LM_MIXERS[name].state_size(cfg, T, L))
