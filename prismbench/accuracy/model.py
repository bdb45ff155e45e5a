"""The tiny probing model: embedding, `n_layers` pre-norm blocks (mixer + GELU MLP), final norm, head.

    h = Embed(x)                                   [B, T, D]
    h = h + Mixer(LayerNorm(h))                    per block
    h = h + MLP(LayerNorm(h))                      MLP: D -> mlp_ratio*D -> GELU -> D
    logits = Head(LayerNorm(h))                    [B, T, vocab] (untied)

This is the authors' probing architecture (SPEC section 7); only the mixer changes between
methods, so every method gets the same width, depth and training budget.

Example::

    >>> m = TinyLM(vocab_size=64, width=16, mixer="transformer")
    >>> m(torch.randint(0, 64, (2, 32))).shape
    torch.Size([2, 32, 64])
"""
from __future__ import annotations

import torch
import torch.nn as nn

from prismbench.accuracy.mixers import build_mixer


class Block(nn.Module):
    def __init__(self, width: int, mixer: nn.Module, mlp_ratio: int = 4):
        super().__init__()
        self.ln1, self.mixer = nn.LayerNorm(width), mixer
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))

    def forward(self, h):
        h = h + self.mixer(self.ln1(h))
        return h + self.mlp(self.ln2(h))


class TinyLM(nn.Module):
    """Token ids `[B, T]` -> logits `[B, T, vocab_size]`.

    Args:
        vocab_size: embedding and head size.
        width: model width D.
        mixer: a name in `prismbench.accuracy.mixers.MIXERS`.
        n_layers: blocks (2 in the paper). heads: mixer heads. mlp_ratio: MLP expansion.
        device: where the mixer is built (some mixers pick their op per device).
        mixer_kwargs: passed to the mixer's constructor.
    """

    def __init__(self, vocab_size: int, width: int, mixer: str, n_layers: int = 2, heads: int = 1,
                 mlp_ratio: int = 4, device="cpu", mixer_kwargs: dict | None = None):
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"TinyLM: vocab_size={vocab_size} must be >= 2")
        if n_layers < 1:
            raise ValueError(f"TinyLM: n_layers={n_layers} must be >= 1")
        self.embed = nn.Embedding(vocab_size, width)
        mixers = [build_mixer(mixer, width, heads, device, **(mixer_kwargs or {})) for _ in range(n_layers)]
        self.backend = mixers[0].backend
        self.blocks = nn.ModuleList(Block(width, m, mlp_ratio) for m in mixers)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for b in self.blocks:
            h = b(h)
        return self.head(self.norm(h))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
