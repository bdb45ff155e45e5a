"""A small causal language model whose token mixer is any registered layer (issue 10).

    h      = Embed(ids)                                   [B, T, D]
    h      = h + Mixer(RMSNorm(h))                        per block (pre-norm)
    h      = h + W_down (SiLU(W_gate x) * W_up x),        x = RMSNorm(h)   (SwiGLU MLP, per block)
    logits = RMSNorm(h) Embed^T                           [B, T, vocab]   (head tied to the embedding)

Only the mixer changes between models (`prismbench.lm.mixers.LM_MIXERS`), so every model has the
same embedding, MLPs and head. The embedding, MLP and norm weights are initialised here (normal,
std `init_std`; norms at 1); every mixer keeps its own layer's initialisation.

Configurations, chosen by name (`LM_CONFIGS`):

| name   | vocab  | D   | blocks | heads (K = V = D/heads) | MLP hidden | parameters          |
|--------|--------|-----|--------|-------------------------|------------|---------------------|
| `130m` | 32000  | 768 | 12     | 12 (64)                 | 2048       | ~0.11-0.14 B by mixer |
| `tiny` | 256    | 32  | 2      | 2 (16)                  | 64         | CPU smoke           |

`count_parameters(model)` gives the exact count (the tied head counted once); `prismbench
train-throughput --dry-run` prints it for every mixer.

Example::

    >>> from prismbench.lm import LM_CONFIGS, build_lm
    >>> model = build_lm("transformer", LM_CONFIGS["tiny"], device="cpu")
    >>> ids = torch.randint(0, 256, (2, 17))
    >>> model(ids[:, :-1]).shape, model.loss(ids).shape
    (torch.Size([2, 16, 256]), torch.Size([]))
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LMConfig", "LM_CONFIGS", "SwiGLU", "Block", "CausalLM", "count_parameters", "get_config"]


@dataclass(frozen=True)
class LMConfig:
    """Shape of the language model (the mixer is chosen separately).

    Attributes:
        name: config name (recorded in results as `model`).
        vocab_size: embedding rows = head outputs.
        hidden_size: model width D.
        num_layers: blocks.
        num_heads: mixer heads H; head widths K = V = D / H.
        mlp_hidden: SwiGLU inner width.
        norm_eps: RMSNorm epsilon.
        init_std: std of the normal init of the embedding and MLP weights.
        conv_size: short-convolution width of the mixers that have one.
    """

    name: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_hidden: int
    norm_eps: float = 1e-6
    init_std: float = 0.02
    conv_size: int = 4

    def __post_init__(self):
        for f in ("vocab_size", "hidden_size", "num_layers", "num_heads", "mlp_hidden", "conv_size"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"LMConfig {self.name!r}: {f} must be an int >= 1, got {f}={v!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"LMConfig {self.name!r}: hidden_size={self.hidden_size} is not divisible by "
                             f"num_heads={self.num_heads}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def as_dict(self) -> dict:
        return asdict(self)


LM_CONFIGS: dict[str, LMConfig] = {
    "130m": LMConfig("130m", vocab_size=32000, hidden_size=768, num_layers=12, num_heads=12, mlp_hidden=2048),
    "tiny": LMConfig("tiny", vocab_size=256, hidden_size=32, num_layers=2, num_heads=2, mlp_hidden=64),
}


def get_config(name: str) -> LMConfig:
    """The `LMConfig` called `name`; ValueError naming the known ones otherwise."""
    try:
        return LM_CONFIGS[name]
    except KeyError:
        raise ValueError(f"config={name!r} is not one of {', '.join(LM_CONFIGS)}") from None


class SwiGLU(nn.Module):
    """`x [B, T, D] -> W_down (SiLU(W_gate x) * W_up x) [B, T, D]` (no biases)."""

    def __init__(self, hidden_size: int, inner: int):
        super().__init__()
        self.gate_up = nn.Linear(hidden_size, 2 * inner, bias=False)
        self.down = nn.Linear(inner, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm block: `h + Mixer(RMSNorm(h))`, then `h + SwiGLU(RMSNorm(h))`. `[B, T, D] -> [B, T, D]`."""

    def __init__(self, cfg: LMConfig, mixer: nn.Module):
        super().__init__()
        self.mixer_norm = nn.RMSNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.mixer = mixer
        self.mlp_norm = nn.RMSNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.mlp_hidden)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = self.mixer(self.mixer_norm(h))
        if isinstance(y, tuple):  # layers that return (y, state)
            y = y[0]
        h = h + y
        return h + self.mlp(self.mlp_norm(h))


class CausalLM(nn.Module):
    """Causal language model: token ids `[B, T]` -> logits `[B, T, vocab]`.

    Args:
        cfg: an `LMConfig`.
        make_mixer: `make_mixer(layer_index) -> nn.Module` mapping `[B, T, D] -> [B, T, D]` (or a
            `(y, state)` tuple); one call per block.
        backend: label of the code that computes the mixer (recorded in results).

    Example::

        >>> cfg = LM_CONFIGS["tiny"]
        >>> lm = CausalLM(cfg, lambda i: nn.Identity(), backend="identity")
        >>> lm(torch.randint(0, cfg.vocab_size, (2, 5))).shape
        torch.Size([2, 5, 256])
    """

    def __init__(self, cfg: LMConfig, make_mixer: Callable[[int], nn.Module], backend: str = ""):
        super().__init__()
        self.cfg, self.backend = cfg, backend
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.blocks = nn.ModuleList(Block(cfg, make_mixer(i)) for i in range(cfg.num_layers))
        self.norm = nn.RMSNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        nn.init.normal_(self.embed.weight, std=self.cfg.init_std)
        for b in self.blocks:
            for lin in (b.mlp.gate_up, b.mlp.down):
                nn.init.normal_(lin.weight, std=self.cfg.init_std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids `[B, T]` (int64 in [0, vocab)) -> logits `[B, T, vocab]`."""
        if ids.dim() != 2:
            raise ValueError(f"CausalLM: ids must be [B, T], got ids.shape={tuple(ids.shape)}")
        h = self.embed(ids)
        for b in self.blocks:
            h = b(h)
        return F.linear(self.norm(h), self.embed.weight)

    def loss(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy of ids `[B, T+1]` (inputs ids[:, :-1], targets ids[:, 1:]) -> scalar."""
        if ids.dim() != 2 or ids.shape[1] < 2:
            raise ValueError(f"CausalLM.loss: ids must be [B, T+1] with T >= 1, got ids.shape={tuple(ids.shape)}")
        logits = self(ids[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())


def count_parameters(model: nn.Module, non_embedding: bool = False) -> int:
    """Exact number of parameters (shared tensors, e.g. the tied head, counted once).

    non_embedding: leave out the token embedding (= head) matrix.
    """
    seen, n = set(), 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n += p.numel()
    if non_embedding and isinstance(model, CausalLM):
        n -= model.embed.weight.numel()
    return n
