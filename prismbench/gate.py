"""The throughput regression gate: `prismbench gate CURRENT --baseline BASELINE`.

Compares two results files (prismbench/results.py) point by point; a point is identified by
`results.KEY_FIELDS` (method, mode, dtype, B, T, H, K, V, L).

What is compared
----------------
Absolute times only hold for one GPU model, so by default the gate compares each method's
throughput *as a ratio to a reference method measured in the same run* (SPEC section 4: a ratio is
the figure of merit)::

    r = tokens_per_s(point) / tokens_per_s(reference at the same mode, dtype, B, T, H, K, V,
                                           and L equal to the point's L, else L = null)
    change = r_current / r_baseline - 1          fails when change < -tolerance

The reference method and the tolerance come from bench.toml's optional `[gate]` table
(`reference = "gla-fla-chunk"`, `tolerance = 0.05`); `--reference` / `--tolerance` override them.
With `--absolute` the gate compares tokens/s directly (`change = tps_cur / tps_base - 1`), and only
when both files were measured on the same device (same GPU name; on CPUs, the same CPU model):
otherwise it refuses (exit 2).

Verdicts (a row per point present in either file, after `--methods`)
--------------------------------------------------------------------
- `pass`              both ok, change >= -tolerance
- `slower`            FAIL: both ok, change < -tolerance
- `missing`           FAIL: in the baseline, absent from the current run
- `newly erroring`    FAIL: status "error" now, not "error" in the baseline
- `newly unsupported` FAIL: status "unsupported" now, "ok" in the baseline
- `no throughput`     FAIL: status "ok" now but tokens_per_s is null, NaN or <= 0
- `new`               in the current run only: reported, not failed (whatever its status)
- `skipped`           both ok but not comparable: the reference method has no ok point at this
                      point's shape in one of the files (or the baseline's throughput is unusable).
                      Such a point is compared only with `--absolute`. Reported and counted, never
                      a silent pass; it does not fail the gate.
- `reference`         the reference method's own point in ratio mode (its ratio is 1 by definition);
                      it still fails as `missing` / `newly erroring` / `newly unsupported`.
- `fixed`             ok now, error or unsupported in the baseline
- `still erroring`, `unsupported`   the same non-ok status in both files: reported, not failed

Exit codes: 0 no regression; 1 at least one FAIL verdict; 2 unusable input (unreadable file,
different schema versions, no shared points, a reference method absent from the baseline,
`--absolute` across devices, a bad option or bench.toml).

Example::

    prismbench run --preset gate -o out/                       # writes out/gate-<gpu-slug>.json
    prismbench gate out/gate-nvidia-h100-80gb-hbm3.json --baseline results/baselines/ --json out/gate.json
    prismbench gate new.json --baseline old.json --reference sdpa --tolerance 0.1 --methods prism-torch
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import typer
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prismbench import results

GATE_REPORT_VERSION = 1
DEFAULT_REFERENCE = "gla-fla-chunk"
DEFAULT_TOLERANCE = 0.05

# verdict -> does it fail the gate
VERDICTS: dict[str, bool] = {
    "pass": False,
    "slower": True,
    "missing": True,
    "newly erroring": True,
    "newly unsupported": True,
    "no throughput": True,
    "new": False,
    "skipped": False,
    "reference": False,
    "fixed": False,
    "still erroring": False,
    "unsupported": False,
}


class GateInputError(ValueError):
    """Input the gate cannot use (exit code 2); the message names the file or option."""


# ----------------------------------------------------------------------------------------------
# bench.toml [gate]
# ----------------------------------------------------------------------------------------------
class GateConfig(BaseModel):
    """bench.toml's optional `[gate]` table.

    reference: method every point's tokens/s is divided by (measured in the same run).
    tolerance: allowed relative slow-down of that ratio, in [0, 1) (0.05 = 5%).

    Example::

        [gate]
        reference = "gla-fla-chunk"
        tolerance = 0.05
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    reference: str = DEFAULT_REFERENCE
    tolerance: float = DEFAULT_TOLERANCE

    @field_validator("tolerance", mode="before")
    @classmethod
    def _float(cls, v):
        if isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        return v

    @field_validator("tolerance")
    @classmethod
    def _tol(cls, v: float) -> float:
        check_tolerance(v, "tolerance")
        return v

    @field_validator("reference")
    @classmethod
    def _ref(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a method, got an empty string")
        return v


def check_tolerance(v: float, name: str = "--tolerance") -> float:
    if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v < 1):
        raise ValueError(f"{name}={v!r} must be a fraction in [0, 1) (0.05 = 5%)")
    return float(v)


def load_gate(bench: dict, source: str = "bench.toml") -> GateConfig:
    """The `[gate]` table of a raw bench.toml dict (as `config.load` returns it), validated.

    Missing table -> defaults (reference "gla-fla-chunk", tolerance 0.05). Raises
    `config.ConfigError` naming the field, e.g. `bench.toml: gate.tolerance: ... got 1.5`.

    Example::

        from prismbench import config, gate
        g = gate.load_gate(config.load(Path("bench.toml")))
        g.reference, g.tolerance           # ("gla-fla-chunk", 0.05)
    """
    from prismbench.config import ConfigError

    table = bench.get("gate", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: gate must be a table, got {table!r}")
    try:
        return GateConfig.model_validate(table)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            else:
                msg = err["msg"].removeprefix("Value error, ")
                if "input" in err and err["type"] != "value_error":
                    msg += f" (got {err['input']!r})"
            lines.append(f"{source}: gate.{where}: {msg}")
        raise ConfigError("\n".join(lines)) from None


# ----------------------------------------------------------------------------------------------
# comparison
# ----------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One point's comparison. baseline/current: the ratio to the reference (ratio mode) or
    tokens/s (absolute mode), None when not measured; change = current / baseline - 1."""

    method: str
    mode: str
    dtype: str
    B: int
    T: int
    H: int
    K: int
    V: int
    L: Optional[int]
    device: Optional[str]
    baseline_status: Optional[str]
    current_status: Optional[str]
    baseline: Optional[float]
    current: Optional[float]
    change: Optional[float]
    verdict: str
    fail: bool
    note: str = ""
    baseline_tokens_per_s: Optional[float] = None
    current_tokens_per_s: Optional[float] = None

    def label(self) -> str:
        L = f" L={self.L}" if self.L is not None else ""
        return (f"{self.method} {self.mode} {self.dtype} B={self.B} T={self.T} H={self.H} "
                f"K={self.K} V={self.V}{L}")


@dataclass
class GateReport:
    compare: str                      # "ratio" | "absolute"
    reference: Optional[str]
    tolerance: float
    baseline: dict                    # path, device, git_commit, timestamp
    current: dict
    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.fail]

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def counts(self) -> dict[str, int]:
        c: dict[str, int] = {}
        for r in self.rows:
            c[r.verdict] = c.get(r.verdict, 0) + 1
        return c

    def to_json(self) -> dict:
        return {
            "gate_report_version": GATE_REPORT_VERSION,
            "exit_code": self.exit_code,
            "compare": self.compare,
            "reference": self.reference,
            "tolerance": self.tolerance,
            "baseline": self.baseline,
            "current": self.current,
            "counts": self.counts(),
            "failures": [f"{r.label()}: {r.verdict}" + (f" ({r.note})" if r.note else "")
                         for r in self.failures],
            "warnings": self.warnings,
            "rows": [asdict(r) for r in self.rows],
        }


def device_name(env: dict) -> str:
    """The device a results file was measured on: its GPU name, else `CPU (<model>)`."""
    return env.get("gpu_name") or f"CPU ({env.get('cpu') or '?'})"


def _file_info(path: Path, doc: dict) -> dict:
    env = doc.get("env", {}) or {}
    return {"path": str(path), "device": device_name(env), "git_commit": env.get("git_commit"),
            "timestamp": env.get("timestamp"), "preset": (doc.get("config") or {}).get("preset")}


def _tps(p: Optional[dict]) -> float:
    """A point's tokens/s, NaN when missing, non-finite or <= 0."""
    if p is None:
        return math.nan
    try:
        v = results.as_float(p.get("tokens_per_s"))
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) and v > 0 else math.nan


def _ref_index(points: list[dict], reference: str) -> dict[tuple, dict]:
    """Reference method's points by (mode, dtype, B, T, H, K, V, L)."""
    idx = {}
    for p in points:
        if p["method"] == reference:
            idx[tuple(p[f] for f in ("mode", "dtype", "B", "T", "H", "K", "V", "L"))] = p
    return idx


def _ref_tps(idx: dict[tuple, dict], p: dict) -> tuple[float, str]:
    """Reference tokens/s for point p: the reference at the same L, else at L = null, else at the
    smallest L it was measured at (a reference with a solver depth, against a method without one);
    (NaN, why) when unavailable."""
    base = tuple(p[f] for f in ("mode", "dtype", "B", "T", "H", "K", "V"))
    cands = [idx.get(base + (p["L"],))]
    if p["L"] is not None:
        cands.append(idx.get(base + (None,)))
    cands += [idx[k] for k in sorted((k for k in idx if k[:-1] == base and k[-1] is not None),
                                     key=lambda k: k[-1])]
    found = [c for c in cands if c is not None]
    if not found:
        return math.nan, "no reference point at this shape"
    r = found[0]
    if r["status"] != "ok":
        return math.nan, f"reference point is {r['status']}"
    t = _tps(r)
    return (t, "") if math.isfinite(t) else (math.nan, "reference point has no throughput")


def _reference_drift(bref: dict, cref: dict, reference: str, tolerance: float) -> list[str]:
    """On one device, the reference's own absolute change per shape: a ratio moves with its reference, so a
    reference that moved by more than the tolerance (an H100 run on a fresh machine measured GLA's forward at
    T=2048 30% slower than two runs before it, every other point within 1.3%: results/gate/spread-h100.md) can
    hide a real regression at that shape or show a spurious one. Returns one warning per such shape."""
    out = []
    for k in bref:
        b, c = bref[k], cref.get(k)
        if c is None or b["status"] != "ok" or c["status"] != "ok":
            continue
        change = _tps(c) / _tps(b) - 1
        if math.isfinite(change) and abs(change) > tolerance:
            mode, dtype, B, T, H, K, V, L = k
            where = f"{mode} {dtype} B={B} T={T} H={H} K={K} V={V}" + (f" L={L}" if L is not None else "")
            out.append(f"reference {reference} {where} moved {change:+.1%} in absolute tokens/s on the same "
                       f"device: every ratio at that shape moves with it; rerun, or check it with --absolute")
    return out


def _check_schemas(base_doc: dict, cur_doc: dict, base_path: Path, cur_path: Path) -> None:
    for doc, path in ((base_doc, base_path), (cur_doc, cur_path)):
        if not isinstance(doc, dict) or "schema_version" not in doc:
            raise GateInputError(f"{path}: not a prismbench results file (no schema_version)")
    bv, cv = base_doc["schema_version"], cur_doc["schema_version"]
    if bv != cv:
        raise GateInputError(
            f"schema versions differ: baseline {base_path} has schema_version={bv!r}, current "
            f"{cur_path} has {cv!r}; re-measure the baseline with this prismbench")


def read_pair(base_path: Path, cur_path: Path) -> tuple[dict, dict]:
    """Read both files; schema versions must agree (and be the one this prismbench reads)."""
    docs = []
    for path in (base_path, cur_path):
        try:
            docs.append(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise GateInputError(f"{path}: no such results file") from None
        except IsADirectoryError:
            raise GateInputError(f"{path}: is a directory, expected a results file") from None
        except json.JSONDecodeError as e:
            raise GateInputError(f"{path}: not valid JSON ({e})") from None
    _check_schemas(docs[0], docs[1], base_path, cur_path)
    for doc, path in zip(docs, (base_path, cur_path)):
        try:
            results.validate(doc, str(path))
        except results.ResultsError as e:
            raise GateInputError(str(e)) from None
    return docs[0], docs[1]


def compare(base_doc: dict, cur_doc: dict, *, reference: Optional[str], tolerance: float,
            absolute: bool = False, methods: Optional[list[str]] = None,
            base_path: Path = Path("baseline"), cur_path: Path = Path("current")) -> GateReport:
    """Compare two validated results documents point by point.

    Args:
        base_doc, cur_doc: results documents (`results.read`), same schema version.
        reference: reference method name (ratio mode); ignored when `absolute`.
        tolerance: allowed slow-down in [0, 1).
        absolute: compare tokens/s directly (both files must name the same device).
        methods: only report these methods (the reference is still used for ratios).

    Returns a GateReport; raises GateInputError for unusable input.

    Example::

        rep = compare(results.read(old), results.read(new), reference="sdpa", tolerance=0.05)
        rep.exit_code, [r.label() for r in rep.failures]
    """
    try:
        tolerance = check_tolerance(tolerance)
    except ValueError as e:
        raise GateInputError(str(e)) from None
    base_info, cur_info = _file_info(base_path, base_doc), _file_info(cur_path, cur_doc)
    rep = GateReport("absolute" if absolute else "ratio", None if absolute else reference,
                     tolerance, base_info, cur_info)
    bpts, cpts = base_doc["points"], cur_doc["points"]
    if absolute:
        if base_info["device"] != cur_info["device"]:
            raise GateInputError(
                f"--absolute: baseline {base_path} was measured on {base_info['device']}, current "
                f"{cur_path} on {cur_info['device']}; absolute tokens/s only compare on the same "
                f"device (drop --absolute to compare ratios to a reference method)")
    else:
        if not reference:
            raise GateInputError("no reference method: give --reference or [gate] reference")
        if base_info["device"] != cur_info["device"]:
            rep.warnings.append(f"different devices ({base_info['device']} vs {cur_info['device']}): "
                                f"ratios to {reference} are compared, absolute times are not")
        if not any(p["method"] == reference for p in bpts + cpts):
            raise GateInputError(
                f"reference method {reference!r} appears in neither {base_path} nor {cur_path}; "
                f"choose one measured in both runs with --reference (or bench.toml [gate] reference)")
        for pts, which, path in ((bpts, "baseline", base_path), (cpts, "current run", cur_path)):
            if not any(p["method"] == reference and p["status"] == "ok" for p in pts):
                raise GateInputError(f"reference method {reference!r} has no successful point in the "
                                     f"{which} {path}; choose another with --reference")
    if methods is not None:
        present = {p["method"] for p in bpts + cpts}
        unknown = [m for m in methods if m not in present]
        if unknown:
            raise GateInputError(f"--methods: {unknown} appear in neither results file "
                                 f"(present: {', '.join(sorted(present))})")
        keep = set(methods)
    else:
        keep = None
    bidx = {results.point_key(p): p for p in bpts}
    cidx = {results.point_key(p): p for p in cpts}
    keys = [k for k in bidx] + [k for k in cidx if k not in bidx]
    if keep is not None:
        keys = [k for k in keys if k[0] in keep]
    shared = [k for k in keys if k in bidx and k in cidx]
    if not shared:
        raise GateInputError(
            f"no shared points between baseline {base_path} ({len(bpts)} points) and current "
            f"{cur_path} ({len(cpts)} points)" + (f" for methods {methods}" if methods else "")
            + "; were they made with the same preset?")
    bref = cref = None
    if not absolute:
        bref, cref = _ref_index(bpts, reference), _ref_index(cpts, reference)
    for k in keys:
        rep.rows.append(_row(k, bidx.get(k), cidx.get(k), rep, bref, cref))
    if not absolute and base_info["device"] == cur_info["device"]:
        rep.warnings += _reference_drift(bref, cref, reference, tolerance)
    compared = [r for r in rep.rows if r.verdict not in ("skipped", "new", "reference")]
    if not compared:
        raise GateInputError(
            f"no point could be compared ({len(rep.rows)} skipped or new): the reference "
            f"{reference!r} has no throughput at the shapes of the gated methods; a gate that compares "
            f"nothing does not pass")
    return rep


def _row(k: tuple, b: Optional[dict], c: Optional[dict], rep: GateReport,
         bref: Optional[dict], cref: Optional[dict]) -> Row:
    fields = dict(zip(results.KEY_FIELDS, k))
    row = Row(**fields, baseline_status=b and b["status"], current_status=c and c["status"],
              baseline=None, current=None, change=None, verdict="pass", fail=False,
              baseline_tokens_per_s=_nan_none(_tps(b)), current_tokens_per_s=_nan_none(_tps(c)))

    def verdict(v: str, note: str = "") -> Row:
        row.verdict, row.fail, row.note = v, VERDICTS[v], note
        return row

    if c is None:
        return verdict("missing", "in the baseline, absent from the current run")
    if b is None:
        return verdict("new", f"status {c['status']}" + (f": {c.get('error')}" if c.get("error") else ""))
    bs, cs = b["status"], c["status"]
    if cs == "error":
        if bs == "error":
            return verdict("still erroring", str(c.get("error") or ""))
        return verdict("newly erroring", str(c.get("error") or ""))
    if cs == "unsupported":
        if bs == "ok":
            return verdict("newly unsupported", str(c.get("error") or ""))
        return verdict("unsupported", str(c.get("error") or ""))
    # current ok
    if bs != "ok":
        return verdict("fixed", f"{bs} in the baseline")
    ct, bt = _tps(c), _tps(b)
    if not math.isfinite(ct):
        return verdict("no throughput", f"tokens_per_s={c.get('tokens_per_s')!r}")
    if not math.isfinite(bt):
        return verdict("skipped", f"baseline tokens_per_s={b.get('tokens_per_s')!r}")
    if rep.compare == "absolute":
        row.baseline, row.current = bt, ct
    else:
        if row.method == rep.reference:
            row.baseline = row.current = 1.0
            row.change = 0.0
            return verdict("reference")
        br, bwhy = _ref_tps(bref, b)
        cr, cwhy = _ref_tps(cref, c)
        if not (math.isfinite(br) and math.isfinite(cr)):
            why = "; ".join(f"{w} in {n}" for w, n in ((bwhy, "baseline"), (cwhy, "current")) if w)
            return verdict("skipped", f"{why}: compared only with --absolute")
        row.baseline, row.current = bt / br, ct / cr
    row.change = row.current / row.baseline - 1
    if row.change < -rep.tolerance:
        return verdict("slower", f"{row.change:+.1%}, tolerance {rep.tolerance:.1%}")
    return verdict("pass")


def _nan_none(x: float) -> Optional[float]:
    return x if math.isfinite(x) else None


# ----------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------
_STYLE = {"pass": "green", "reference": "cyan", "new": "cyan", "fixed": "green", "skipped": "yellow",
          "still erroring": "yellow", "unsupported": "dim"}


def render(rep: GateReport, console: Console) -> None:
    """Print the comparison table, then one line per failure (full point label)."""
    unit = f"ratio to {rep.reference}" if rep.compare == "ratio" else "ktok/s"
    t = Table(title=f"prismbench gate: {rep.compare} ({unit}), tolerance {rep.tolerance:.1%}",
              caption=f"baseline {rep.baseline['path']} [{rep.baseline['device']}, "
                      f"{str(rep.baseline['git_commit'] or '?')[:8]}]  vs  current "
                      f"{rep.current['path']} [{rep.current['device']}, "
                      f"{str(rep.current['git_commit'] or '?')[:8]}]")
    for c in ("method", "mode", "dtype", "B", "T", "H", "K", "V", "L", "baseline", "current",
              "change", "verdict"):
        t.add_column(c, justify="right" if c in "BTHKVL" or c in ("baseline", "current", "change")
                     else "left", overflow="fold")
    scale = 1e-3 if rep.compare == "absolute" else 1.0
    fmt = ",.1f" if rep.compare == "absolute" else ".4g"

    def val(x, status):
        if status is None:
            return "-"
        if status != "ok":
            return status
        return "-" if x is None else format(x * scale, fmt)

    for r in rep.rows:
        style = "bold red" if r.fail else _STYLE.get(r.verdict, "")
        verdict = ("FAIL: " if r.fail else "") + r.verdict
        t.add_row(r.method, r.mode, r.dtype, str(r.B), str(r.T), str(r.H), str(r.K), str(r.V),
                  "" if r.L is None else str(r.L), val(r.baseline, r.baseline_status),
                  val(r.current, r.current_status),
                  "-" if r.change is None else f"{r.change:+.1%}",
                  f"[{style}]{verdict}[/]" if style else verdict)
    console.print(t)
    for w in rep.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    counts = ", ".join(f"{v} {n}" for v, n in sorted(rep.counts().items()))
    for r in rep.failures:
        console.print(f"[bold red]FAIL[/] {escape(r.label())}: {r.verdict}"
                      + (f" ({escape(r.note)})" if r.note else ""),
                      highlight=False, soft_wrap=True)
    skipped = [r for r in rep.rows if r.verdict == "skipped"]
    if skipped:
        console.print(f"[yellow]{len(skipped)} point(s) skipped[/] (not compared; see the verdicts)",
                      highlight=False)
    head = "[bold red]gate FAILED[/]" if rep.failures else "[bold green]gate passed[/]"
    console.print(f"{head}: {len(rep.failures)} failure(s) over {len(rep.rows)} point(s) ({counts})",
                  highlight=False, soft_wrap=True)


def resolve_baseline(baseline: Path, cur_path: Path) -> Path:
    """A baseline file, or a directory holding `<preset>-<device-slug>.json` per GPU model (the
    name `prismbench run` gives its results): picked by the current file's preset and device."""
    baseline = Path(baseline)
    if not baseline.is_dir():
        return baseline
    from prismbench.env import device_slug

    try:
        cur = json.loads(Path(cur_path).read_text())
    except FileNotFoundError:
        raise GateInputError(f"{cur_path}: no such results file") from None
    except (json.JSONDecodeError, IsADirectoryError) as e:
        raise GateInputError(f"{cur_path}: not a results file ({e})") from None
    if not isinstance(cur, dict):
        raise GateInputError(f"{cur_path}: not a prismbench results file")
    env = cur.get("env") or {}
    preset = (cur.get("config") or {}).get("preset") or "sweep"
    path = baseline / f"{preset}-{device_slug(env)}.json"
    if not path.exists():
        have = ", ".join(sorted(p.name for p in baseline.glob("*.json"))) or "none"
        raise GateInputError(
            f"--baseline {baseline}: no baseline for preset {preset!r} on {device_name(env)} "
            f"(expected {path.name}; have: {have}). See results/baselines/README.md to make one")
    return path


def run_gate(current: Path, baseline: Path, *, reference: Optional[str], tolerance: float,
             absolute: bool = False, methods: Optional[list[str]] = None) -> GateReport:
    """Read both files and compare them (raises GateInputError for unusable input)."""
    baseline = resolve_baseline(baseline, current)
    base_doc, cur_doc = read_pair(baseline, current)
    return compare(base_doc, cur_doc, reference=reference, tolerance=tolerance, absolute=absolute,
                   methods=methods, base_path=baseline, cur_path=current)


def _write_json(obj: dict, dest: Path) -> None:
    text = json.dumps(results._finite(obj), indent=1, allow_nan=False) + "\n"
    if str(dest) == "-":
        sys.stdout.write(text)
        return
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)


def gate(
    current: Path = typer.Argument(..., help="Results file of the run under test."),
    baseline: Path = typer.Option(..., "--baseline", "-b",
                                  help="Baseline results file, or a directory of <preset>-<gpu-slug>.json "
                                       "(e.g. results/baselines/)."),
    tolerance: Optional[float] = typer.Option(None, "--tolerance", "-t",
                                              help="Allowed slow-down, a fraction (default: bench.toml "
                                                   "gate.tolerance, else 0.05)."),
    methods: Optional[str] = typer.Option(None, "--methods", "-m",
                                          help="Comma-separated methods to gate (default: all)."),
    reference: Optional[str] = typer.Option(None, "--reference", "-r",
                                            help="Reference method for ratios (default: bench.toml "
                                                 "gate.reference, else gla-fla-chunk)."),
    absolute: bool = typer.Option(False, "--absolute",
                                  help="Compare absolute tokens/s (both files must name the same GPU)."),
    config: Path = typer.Option(Path("bench.toml"), "--config", "-c",
                                help="bench.toml whose gate table gives the defaults."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the comparison as JSON here ('-': stdout)."),
):
    """Fail (exit 1) when a kernel got slower than the baseline; exit 2 on unusable input."""
    err = Console(stderr=True)

    def unusable(msg: str):
        err.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
        if json_out is not None:
            _write_json({"gate_report_version": GATE_REPORT_VERSION, "exit_code": 2, "error": msg}, json_out)
        raise typer.Exit(2)

    from prismbench import config as cfgmod

    gcfg = GateConfig()
    if Path(config).exists():
        try:
            gcfg = load_gate(cfgmod.load(config), str(config))
        except cfgmod.ConfigError as e:
            unusable(str(e))
    elif config != Path("bench.toml"):
        unusable(f"--config {config}: no such file")
    only = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    if methods is not None and not only:
        unusable(f"--methods={methods!r} names no method")
    tol = gcfg.tolerance if tolerance is None else tolerance
    try:
        rep = run_gate(current, baseline, reference=reference or gcfg.reference, tolerance=tol,
                       absolute=absolute, methods=only)
    except GateInputError as e:
        unusable(str(e))
    out = Console(width=None if sys.stdout.isatty() else 200,
                  stderr=json_out is not None and str(json_out) == "-")
    render(rep, out)
    if json_out is not None:
        _write_json(rep.to_json(), json_out)
    raise typer.Exit(rep.exit_code)
