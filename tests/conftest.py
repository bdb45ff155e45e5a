"""Test-wide set-up.

Without a GPU, Triton kernels run in Triton's interpreter, which must be switched on before
anything imports Triton (prismbench/triton_support.py): this file is imported first.


Every floating tensor made by torch.empty / torch.empty_like / new_empty during a test is filled
with NaN, so an output tile a kernel forgets to write fails its comparison instead of passing on
leftover memory.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

_empty, _empty_like = torch.empty, torch.empty_like


def _poison(t):
    if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()):
        t.fill_(float("nan"))
    return t


def _nan_empty(*args, **kwargs):
    return _poison(_empty(*args, **kwargs))


def _nan_empty_like(*args, **kwargs):
    return _poison(_empty_like(*args, **kwargs))


@pytest.fixture(autouse=True)
def nan_poisoned_empty(monkeypatch):
    monkeypatch.setattr(torch, "empty", _nan_empty)
    monkeypatch.setattr(torch, "empty_like", _nan_empty_like)
    yield
