"""The method registry: every benchmarked implementation is one `Method` entry.

A method is data, not code in the runner. It names itself (SPEC section 4), its family and backend,
the devices, dtypes and modes it supports, how to build inputs for a shape, the callable, and which
method's float64 run its numerical error is measured against. The runner never branches on a name.

Example::

    from prismbench.registry import Method, Shape, register

    register(Method(
        name="gla-naive", family="gla", backend="fla-naive",
        devices=("cpu",), dtypes=("float32", "float64"),
        make_inputs=make_gla_inputs, fn=lambda x, shape: naive_recurrent_gla(**x)[0],
        reference="gla-naive",
    ))
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

import torch

Family = Literal["prism", "ttt", "gla", "peer"]
Mode = Literal["fwd", "fwdbwd"]
FAMILIES: tuple[str, ...] = ("prism", "ttt", "gla", "peer")
MODES: tuple[str, ...] = ("fwd", "fwdbwd")
DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


class Unsupported(Exception):
    """Raised by a method (at build or call time) for a point it cannot run.

    The runner records the point with status "unsupported" and this message, and goes on.
    Wrap library refusals in it (e.g. fla refusing a backward pass on Hopper with Triton < 3.7.1).
    """


@dataclass(frozen=True)
class Shape:
    """One sweep point's problem size. Tensors use fla's `[B, T, H, ...]` layout.

    B: batch, T: sequence length, H: heads, K: key (state rows) width, V: value (state columns)
    width, L: PRISM solver depth (methods that ignore it get L=None in results).
    """

    B: int
    T: int
    H: int
    K: int
    V: int
    L: int
    dtype: torch.dtype
    device: torch.device

    @property
    def tokens(self) -> int:
        return self.B * self.T

    def with_(self, **changes) -> "Shape":
        d = {f: getattr(self, f) for f in ("B", "T", "H", "K", "V", "L", "dtype", "device")}
        d.update(changes)
        return Shape(**d)


Inputs = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Method:
    """A benchmarked implementation.

    make_inputs(shape, seed) -> dict of tensors on shape.device. Floating tensors that should receive
        gradients must have requires_grad=True (they are the "input gradients" checked and timed).
        Inputs must be valid for the method (normalised keys, log-decays <= 0, step sizes in (0, 1)).
    fn(inputs, shape) -> output tensor (the layer output o, e.g. [B, T, H, V]).
    reference: name of the method whose float64 run (same inputs cast to float64) is the ground truth
        for this method's rel_err; None when no reference is affordable or defined.
    supports(shape, mode) -> None if the point can run, else a reason string ("unsupported: ...").
    uses_L: whether L changes what the method computes (if not, the sweep runs it once per shape,
        with L recorded as None).
    state_size(shape) -> floats of recurrent state per sequence (for plots against state size).
    ref_max_tokens: when this method serves as a reference, the largest B*T*H at which its float64 run
        is affordable. Larger points measure the error on the first batch element only, or skip it
        (rel_err null, with the reason) when even one sequence is over the budget.
    """

    name: str
    family: Family
    backend: str
    make_inputs: Callable[[Shape, int], Inputs]
    fn: Callable[[Inputs, Shape], torch.Tensor]
    devices: tuple[str, ...] = ("cpu", "cuda")
    dtypes: tuple[str, ...] = ("float32", "bfloat16", "float16", "float64")
    modes: tuple[str, ...] = MODES
    reference: Optional[str] = None
    supports: Optional[Callable[[Shape, str], Optional[str]]] = None
    uses_L: bool = False
    state_size: Optional[Callable[[Shape], int]] = None
    ref_max_tokens: int = 1 << 20
    description: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"method {self.name!r}: family={self.family!r} is not one of {FAMILIES}")
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise ValueError(f"method {self.name!r}: modes {bad} not in {MODES}")
        bad = [d for d in self.dtypes if d not in DTYPES]
        if bad:
            raise ValueError(f"method {self.name!r}: dtypes {bad} not in {tuple(DTYPES)}")

    def unsupported_reason(self, shape: Shape, mode: str) -> Optional[str]:
        """Static check of a point; None when it should run."""
        dev = torch.device(shape.device).type
        if dev not in self.devices:
            return f"device {dev} not supported (supports {', '.join(self.devices)})"
        dname = dtype_name(shape.dtype)
        if dname not in self.dtypes:
            return f"dtype {dname} not supported (supports {', '.join(self.dtypes)})"
        if mode not in self.modes:
            return f"mode {mode} not supported (supports {', '.join(self.modes)})"
        if self.supports is not None:
            return self.supports(shape, mode)
        return None


def dtype_name(dtype: torch.dtype) -> str:
    for k, v in DTYPES.items():
        if v == dtype:
            return k
    raise ValueError(f"unknown dtype {dtype}")


_REGISTRY: dict[str, Method] = {}

# Modules whose import registers methods. Each module calls `register` at import time.
METHOD_MODULES: tuple[str, ...] = (
    "prismbench.kernels.prism.methods",
    "prismbench.baselines.methods",
)


def register(method: Method) -> Method:
    if method.name in _REGISTRY and _REGISTRY[method.name] is not method:
        raise ValueError(f"method {method.name!r} is registered twice")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


_loaded = False


def load_all() -> None:
    """Import every module in METHOD_MODULES (once), so their methods register."""
    global _loaded
    if _loaded:
        return
    for mod in METHOD_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            # a module not written yet is skipped; a missing dependency inside one is not
            if not (e.name and mod.startswith(e.name)):
                raise
    _loaded = True


def get(name: str) -> Method:
    load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def all_methods() -> dict[str, Method]:
    load_all()
    return dict(_REGISTRY)
