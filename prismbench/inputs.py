"""Helpers shared by the methods' input builders: seeded CPU draws, then leaves on the point's device."""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from prismbench.registry import Inputs, Shape


def seeded_normal(seed: int) -> Callable[..., torch.Tensor]:
    """`rnd(*size)`: float32 standard normals from one CPU generator (same values on any device)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def rnd(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=gen, dtype=torch.float32)

    return rnd


def as_leaves(x: dict[str, torch.Tensor], shape: Shape, keep_fp32: Iterable[str] = ()) -> Inputs:
    """Move every tensor to shape.device in shape.dtype as a leaf that requires grad; the names in
    keep_fp32 (log-decays, which need the range) stay float32 unless the point is float64."""
    keep = set(keep_fp32)
    out = {}
    for name, t in x.items():
        dt = torch.float32 if name in keep and shape.dtype != torch.float64 else shape.dtype
        out[name] = t.to(device=shape.device, dtype=dt).requires_grad_(True)
    return out
