"""The results format (versioned; plots, the gate and users' scripts read it).

One JSON document::

    {
      "schema_version": 1,
      "env": {...},                 # prismbench.env.collect_env(): GPU, driver, torch, triton, fla, git ...
      "config": {...},              # the resolved sweep (preset name, axes, timing settings)
      "points": [ {point}, ... ]
    }

Each point (see POINT_FIELDS):

    method, family, backend       SPEC section 4 names
    mode                          "fwd" | "fwdbwd"
    dtype                         "float32" | "bfloat16" | ...
    B, T, H, K, V, L              shape; L is null for methods that ignore it
    median_ms, p20_ms, p80_ms     time per call (CUDA events on GPU, perf_counter on CPU)
    tokens_per_s                  B*T / median
    peak_mem_bytes                GPU: torch.cuda.max_memory_allocated over one call, inputs included;
                                  CPU: growth of the process's peak resident set over one call (Linux
                                  VmHWM, reset before the call), null where unavailable
    peak_mem_kind                 "cuda_max_allocated" | "cpu_peak_rss_growth" | null
    rel_err                       {"o": e, "dq": e, ...} = ||x - ref|| / ||ref|| against the float64
                                  reference method, or null (rel_err_note says why)
    rel_err_note                  how the error was measured (reference name, sub-batch) or why not
    state_size                    floats of recurrent state (or KV cache) per sequence, or null
    status                        "ok" | "error" | "unsupported"
    error                         message for error/unsupported, else null
    device                        "cpu" | "cuda"
    seconds                       wall time spent on the point (build, check, timing)
    run                           (merged files only) index into env.merged_from: the run that measured it

Results are rewritten atomically after every point, so an interrupted run keeps what it measured.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1

POINT_FIELDS = (
    "method", "family", "backend", "mode", "dtype", "B", "T", "H", "K", "V", "L",
    "median_ms", "p20_ms", "p80_ms", "tokens_per_s", "peak_mem_bytes", "peak_mem_kind",
    "rel_err", "rel_err_note", "state_size", "status", "error", "device", "seconds",
)
KEY_FIELDS = ("method", "mode", "dtype", "B", "T", "H", "K", "V", "L", "device")
STATUSES = ("ok", "error", "unsupported")


class ResultsError(ValueError):
    """A results file that cannot be used (unreadable, wrong schema, malformed points)."""


def point_key(point: dict) -> tuple:
    """Identity of a point: method, mode, dtype and shape."""
    return tuple(point.get(f) for f in KEY_FIELDS)


def new_document(env: dict, config: dict) -> dict:
    return {"schema_version": SCHEMA_VERSION, "env": env, "config": config, "points": []}


def dumps(doc: dict) -> str:
    """The document as strict JSON text (non-finite floats as strings, as in the files)."""
    return json.dumps(_finite(doc), indent=1, default=_json_default, allow_nan=False)


def write(doc: dict, path: Path) -> None:
    """Write atomically (temp file + rename): a crash mid-write never leaves a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(dumps(doc))
            f.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _finite(o: Any) -> Any:
    """Strict JSON: non-finite floats become the strings "nan", "inf", "-inf" (never dropped)."""
    if isinstance(o, float) and not math.isfinite(o):
        return "nan" if math.isnan(o) else ("inf" if o > 0 else "-inf")
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def as_float(x: Any) -> float:
    """A numeric field as a float ("nan"/"inf" strings included); None stays NaN."""
    if x is None:
        return math.nan
    return float(x)


def _json_default(o: Any):
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read(path: Path) -> dict:
    """Read and validate a results file; raises ResultsError naming the problem."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file") from None
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not valid JSON ({e})") from None
    validate(doc, str(path))
    return doc


def validate(doc: Any, where: str = "results") -> None:
    if not isinstance(doc, dict):
        raise ResultsError(f"{where}: top level must be an object")
    for k in ("schema_version", "env", "points"):
        if k not in doc:
            raise ResultsError(f"{where}: missing key {k!r}")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise ResultsError(
            f"{where}: schema_version={doc['schema_version']!r}, this prismbench reads {SCHEMA_VERSION}")
    if not isinstance(doc["env"], dict):
        raise ResultsError(f"{where}: env must be an object")
    if not isinstance(doc["points"], list):
        raise ResultsError(f"{where}: points must be a list")
    for i, p in enumerate(doc["points"]):
        missing = [f for f in KEY_FIELDS + ("status",) if f not in p]
        if not missing and p["status"] == "ok" and not _positive_number(p.get("tokens_per_s")):
            raise ResultsError(f"{where}: points[{i}] has status ok but tokens_per_s={p.get('tokens_per_s')!r}")
        if missing:
            raise ResultsError(f"{where}: points[{i}] lacks {missing}")
        if p["status"] not in STATUSES:
            raise ResultsError(f"{where}: points[{i}].status={p['status']!r} not in {STATUSES}")


def _positive_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def ok_points(points: Iterable[dict]) -> list[dict]:
    return [p for p in points if p.get("status") == "ok"]


# a point whose p20-p80 span is wider than this fraction of its median was disturbed while it was timed (a slow
# host turn, another process): on an H100 a steady point spans under 1% (results/paper/README.md); run 18's
# prism-triton L=1 forward at T=2048 spanned 15% and read 13% above the same point three minutes earlier
NOISY_SPREAD = 0.10


def spread(point: dict) -> float | None:
    """(p80 - p20) / median of an ok point's timing, or None where it has no such figures."""
    m, lo, hi = (point.get(k) for k in ("median_ms", "p20_ms", "p80_ms"))
    if point.get("status") != "ok" or not all(_positive_number(x) for x in (m, lo, hi)):
        return None
    return (hi - lo) / m


# what every run of a merged file must share: results from different machines or software never mix
MERGE_KEYS = ("gpu_name", "device", "driver", "torch", "triton", "fla_core")


def merge(docs: list[dict], names: list[str], max_spread: float | None = None) -> dict:
    """One document from several runs on the same machine type and software (`prismbench merge`).

    Points are unioned by `point_key`; where two runs measured the same point, the later document's wins,
    except that a point that did not measure (status other than "ok": an error, a timeout, out of memory)
    never replaces one that did (a later run cut short at a point must not erase an earlier measurement), and,
    with max_spread, a measured point whose p20-p80 spread is above max_spread of its median (a disturbed timing,
    e.g. a slow host pacing a short call) never replaces one within it; env.merge_max_spread records the bound.
    Each point gets `run`, its run's index in `env.merged_from` (file, git commit, timestamp, preset), so a
    figure or a citation can say which run measured what. The env block is the last run's, plus
    `merged_from`; config is `{"merged": [each run's config]}`. Raises ResultsError when the runs differ in
    any of MERGE_KEYS (naming the field and the files) or when fewer than two documents are given.

    Example: `merge([read(a), read(b)], [str(a), str(b)])`.
    """
    if len(docs) < 2:
        raise ResultsError("merge needs at least two results files")
    first = docs[0]["env"]
    for doc, name in zip(docs[1:], names[1:]):
        for k in MERGE_KEYS:
            if doc["env"].get(k) != first.get(k):
                raise ResultsError(f"{name}: env.{k}={doc['env'].get(k)!r} but {names[0]} has {first.get(k)!r}; "
                                   f"results of different machines or software are not merged")
    by_key: dict[tuple, dict] = {}
    for i, doc in enumerate(docs):
        for p in doc["points"]:
            k = point_key(p)
            if k in by_key and by_key[k].get("status") == "ok" and p.get("status") != "ok":
                continue
            if max_spread is not None and k in by_key:
                old, new = spread(by_key[k]), spread(p)
                if old is not None and old <= max_spread and (new is None or new > max_spread):
                    continue
            by_key[k] = {**p, "run": i}
    runs = [{"file": n, "git_commit": d["env"].get("git_commit"), "git_dirty": d["env"].get("git_dirty"),
             "timestamp": d["env"].get("timestamp"), "preset": (d.get("config") or {}).get("preset")}
            for d, n in zip(docs, names)]
    env = {**docs[-1]["env"], "merged_from": runs}
    if max_spread is not None:
        env["merge_max_spread"] = max_spread
    return {"schema_version": SCHEMA_VERSION, "env": env,
            "config": {"merged": [d.get("config") for d in docs]}, "points": list(by_key.values())}
