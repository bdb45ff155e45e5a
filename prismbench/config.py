"""bench.toml: the sweep table, timing and check settings, and named presets, validated.

Layout::

    [sweep]                       # the base sweep (also what runs with no --preset on a GPU)
    methods = ["prism-triton", "gla-fla-chunk"]   # or "all"
    T = [2048, 4096]              # sequence lengths
    tokens = 32768                # fixed budget: B = tokens / T   (or give B = [..] instead)
    H = 16
    K = [64]                      # state size; V = K unless V is given
    L = [1, 3]                    # PRISM solver depth (ignored by methods that have none)
    dtype = "bfloat16"
    modes = ["fwd", "fwdbwd"]
    device = "cuda"               # what the sweep is meant for: "cpu", "cuda" or "any"

    [timing]                      # optional
    warmup_ms = 25                # GPU: do_bench warm-up and repetition time
    rep_ms = 100
    cpu_warmup = 1                # CPU: untimed calls, then timed calls
    cpu_reps = 5
    cpu_threads = 1               # CPU: torch threads (default: torch's own choice)

    [check]                       # optional
    rel_err = true                # measure error against the float64 reference
    seed = 0

    [presets.smoke]               # overrides any [sweep] key; may hold its own timing/check tables
    device = "cpu"
    T = [64, 128]

Every axis accepts a scalar or a list. Unknown keys, wrong types, K or V not a multiple of 16, L < 1,
T not dividing the token budget and unknown method names are errors that name the field
(`bench.toml: presets.smoke.K[1]=20 is not a multiple of 16`).
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from prismbench.registry import DTYPES, MODES


class ConfigError(ValueError):
    """A bench.toml that cannot be used; the message names the field."""


def _as_list(v: Any) -> Any:
    return v if isinstance(v, list) or v is None else [v]


class TimingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    warmup_ms: float = 25.0
    rep_ms: float = 100.0
    cpu_warmup: int = 1
    cpu_reps: int = 5
    # CPU: torch intra-op threads for the run (None: torch's default). Small shapes time more
    # steadily on one thread: with two, a parallel region stalls whenever the other core is busy.
    cpu_threads: Optional[int] = None

    @field_validator("warmup_ms", "rep_ms", mode="before")
    @classmethod
    def _float(cls, v):
        if isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        return v

    @field_validator("warmup_ms", "rep_ms")
    @classmethod
    def _pos_ms(cls, v: float) -> float:
        if v <= 0:
            raise ValueError(f"must be > 0, got {v}")
        return v

    @field_validator("cpu_warmup")
    @classmethod
    def _nonneg(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"must be >= 0, got {v}")
        return v

    @field_validator("cpu_reps", "cpu_threads")
    @classmethod
    def _pos(cls, v: Optional[int]) -> Optional[int]:
        if v is not None and v < 1:
            raise ValueError(f"must be >= 1, got {v}")
        return v


class CheckConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    rel_err: bool = True
    seed: int = 0


PositiveInts = list[int]


class SweepConfig(BaseModel):
    """A resolved sweep (the [sweep] table with a preset's overrides applied)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    description: str = ""
    methods: Union[Literal["all"], list[str]] = "all"
    T: PositiveInts
    tokens: Optional[int] = None
    B: Optional[PositiveInts] = None
    H: PositiveInts = [16]
    K: PositiveInts = [64]
    V: Optional[PositiveInts] = None
    L: PositiveInts = [1]
    dtype: list[str] = ["bfloat16"]
    modes: list[str] = ["fwd", "fwdbwd"]
    device: Literal["cpu", "cuda", "any"] = "any"
    timing: TimingConfig = TimingConfig()
    check: CheckConfig = CheckConfig()

    @field_validator("T", "B", "H", "K", "V", "L", "dtype", "modes", mode="before")
    @classmethod
    def _listify(cls, v):
        return _as_list(v)

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, v):
        return v if v == "all" else _as_list(v)

    @field_validator("methods")
    @classmethod
    def _methods_nonempty(cls, v):
        if v != "all" and not v:
            raise ValueError('must not be empty (use "all" for every registered method)')
        return v

    @field_validator("T", "B", "H")
    @classmethod
    def _positive(cls, v):
        if v is None:
            return v
        if not v:
            raise ValueError("must not be empty")
        for i, x in enumerate(v):
            if x < 1:
                raise ValueError(f"[{i}]={x} must be >= 1")
        return v

    @field_validator("K", "V")
    @classmethod
    def _mult16(cls, v):
        if v is None:
            return v
        if not v:
            raise ValueError("must not be empty")
        for i, x in enumerate(v):
            if x < 16 or x % 16:
                raise ValueError(f"[{i}]={x} is not a multiple of 16")
        return v

    @field_validator("L")
    @classmethod
    def _depth(cls, v):
        if not v:
            raise ValueError("must not be empty")
        for i, x in enumerate(v):
            if x < 1:
                raise ValueError(f"[{i}]={x}: solver depth L must be >= 1")
        return v

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, v):
        if v is not None and v < 1:
            raise ValueError(f"={v} must be >= 1")
        return v

    @field_validator("dtype")
    @classmethod
    def _dtypes(cls, v):
        if not v:
            raise ValueError("must not be empty")
        for i, x in enumerate(v):
            if x not in DTYPES:
                raise ValueError(f"[{i}]={x!r} is not one of {list(DTYPES)}")
        return v

    @field_validator("modes")
    @classmethod
    def _modes(cls, v):
        if not v:
            raise ValueError("must not be empty")
        for i, x in enumerate(v):
            if x not in MODES:
                raise ValueError(f"[{i}]={x!r} is not one of {list(MODES)}")
        return v

    @model_validator(mode="after")
    def _batch(self):
        if (self.tokens is None) == (self.B is None):
            raise ValueError("give exactly one of `tokens` (B = tokens / T) or `B`")
        if self.tokens is not None:
            for i, t in enumerate(self.T):
                if self.tokens % t:
                    raise ValueError(f"T[{i}]={t} does not divide tokens={self.tokens}")
        if self.V is not None and len(self.V) != len(self.K):
            raise ValueError(f"V has {len(self.V)} entries but K has {len(self.K)}; V pairs with K")
        return self

    def batches(self, T: int) -> list[int]:
        return [self.tokens // T] if self.tokens is not None else list(self.B)

    def state_sizes(self) -> list[tuple[int, int]]:
        return list(zip(self.K, self.V if self.V is not None else self.K))


class BenchFile(BaseModel):
    """The whole bench.toml, unresolved."""

    model_config = ConfigDict(extra="forbid")
    sweep: dict
    timing: dict = {}
    check: dict = {}
    presets: dict[str, dict] = {}
    gate: dict = {}


def _field_path(loc: tuple, preset: Optional[str], preset_table: dict) -> str:
    parts = [str(p) for p in loc if p not in ("function-after[_batch()]",)]
    if not parts:
        return preset and f"presets.{preset}" or "sweep"
    top = parts[0]
    if top in ("timing", "check"):
        base = f"presets.{preset}.{top}" if preset and top in preset_table else top
        rest = parts[1:]
    else:
        base = f"presets.{preset}" if preset and top in preset_table else "sweep"
        rest = parts
    path = base
    for p in rest:
        path += f"[{p}]" if p.isdigit() else f".{p}"
    return path


def _format(e: ValidationError, source: str, preset: Optional[str], preset_table: dict) -> str:
    lines = []
    for err in e.errors():
        path = _field_path(tuple(err["loc"]), preset, preset_table)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif msg.startswith("["):  # list-item message from our validators: fold into the path
            idx, _, rest = msg.partition("]")
            path += idx + "]"
            msg = rest.lstrip(" :=")
            msg = f"={msg}" if not msg.startswith("=") else msg
            lines.append(f"{source}: {path}{msg}")
            continue
        elif "input" in err and err["type"] not in ("value_error",):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"{source}: {path}: {msg}")
    return "\n".join(lines)


def resolve(bench: dict, preset: Optional[str], source: str = "bench.toml",
            overrides: Optional[dict] = None) -> SweepConfig:
    """Merge [sweep] with presets.NAME (and their timing/check tables), then `overrides` (sweep fields, e.g.
    from `prismbench run --set T=16384`), and validate."""
    try:
        top = BenchFile.model_validate(bench)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            msg = "unknown top-level table" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{source}: {where}: {msg}")
        raise ConfigError("\n".join(lines)) from None
    table: dict = {}
    if preset is not None:
        if preset not in top.presets:
            known = ", ".join(sorted(top.presets)) or "none"
            raise ConfigError(f"{source}: preset {preset!r} not found (presets: {known})")
        table = top.presets[preset]
        for sub in ("timing", "check"):
            if sub in table and not isinstance(table[sub], dict):
                raise ConfigError(f"{source}: presets.{preset}.{sub}: must be a table (got {table[sub]!r})")
    merged = dict(top.sweep)
    # a preset that gives the batch one way replaces the other way it would inherit
    if "B" in table:
        merged.pop("tokens", None)
    if "tokens" in table:
        merged.pop("B", None)
    merged.update({k: v for k, v in table.items() if k not in ("timing", "check")})
    for k, v in (overrides or {}).items():
        if k in ("timing", "check"):
            raise ConfigError(f"--set {k}: only sweep fields can be set from the command line")
        if k == "B":
            merged.pop("tokens", None)
        if k == "tokens":
            merged.pop("B", None)
        merged[k] = v
    merged["timing"] = {**top.timing, **table.get("timing", {})}
    merged["check"] = {**top.check, **table.get("check", {})}
    try:
        cfg = SweepConfig.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_format(e, source, preset, table)) from None
    if cfg.methods != "all":
        from prismbench import registry

        known = registry.all_methods()
        for i, m in enumerate(cfg.methods):
            if m not in known:
                where = f"presets.{preset}" if preset and "methods" in table else "sweep"
                raise ConfigError(
                    f"{source}: {where}.methods[{i}]={m!r} is not a registered method "
                    f"(known: {', '.join(sorted(known))})")
    return cfg


def load(path: Path) -> dict:
    """Read a bench.toml and validate [sweep] and every preset (a broken preset is an error even
    when another is selected). Returns the raw table for `resolve`."""
    path = Path(path)
    try:
        bench = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    resolve(bench, None, str(path))
    for name in bench.get("presets", {}) or {}:
        resolve(bench, name, str(path))
    return bench


def preset_names(bench: dict) -> list[str]:
    return sorted(bench.get("presets", {}))
