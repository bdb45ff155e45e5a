#!/usr/bin/env python3
"""Session 16 on: picks the settings a call's later steps run, from that call's sweeps in $OUT (prism_tune.py's
TUNE_SET=bytes, or $S16_BYTES_SET, e.g. bytes2, cand17, cand18 or cand19; and rb2 when its log is there), and prints the winners'
settings as shell assignments for s16_apply.sh, which sets only those (an empty last line: nothing won):

    S16_FWD16='("tr", "w",)' S16_TR16='False'

The first sweep's winner: the variant with the lowest ms_fwd + ms_fwd_bwd, if that sum is more than 1% below the
defaults' (mean of the defaults rows). rb2's: the lowest ms_fwd_bwd, if more than 1.5% below (session 15's rule).
Every row is echoed as a comment line first.
    python3 scripts/gpu/s16_choose.py $OUT
"""
import json
import os
import sys

# chunk.py setting -> the variable s16_apply.sh reads
VARS = {"FWD_16": "S16_FWD16", "TR16_DOTS": "S16_TR16", "DOT16": "S16_DOT16", "DH16_WY": "S16_DH16",
        "KEYS_VALUES_BS": "S16_VBS", "KEYS_COLUMNS_BS": "S16_CBS", "RB_D16": "S16_RBD16",
        "WY_V1_16": "S16_V116", "KEYS_VALUES_BV": "S16_VBV", "MAXNREG": "S16_MAXNREG",
        "KEYS_ROWS_SPLIT": "S16_RSPLIT"}


def rows(path):
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.startswith('{"variant"')]


def winner(name, rs, score, margin):
    """The non-default row with the lowest score(row) if below (1 - margin) of the defaults rows' mean, else None."""
    for r in rs:
        diff = max((r.get("max_rel_diff_vs_defaults") or {}).values(), default=None)
        print("#", r["variant"], r.get("ms_fwd_bwd"), r.get("ms_fwd"), diff, r.get("error", "")[:200])
    ok = [r for r in rs if "ms_fwd_bwd" in r and "ms_fwd" in r]
    base = [score(r) for r in ok if r["variant"].startswith("defaults")]
    cand = [r for r in ok if not r["variant"].startswith("defaults")]
    if not (base and cand):
        return None
    ref = sum(base) / len(base)
    best = min(cand, key=score)
    print(f"# {name}: best {best['variant']} {score(best):.3f} against defaults {ref:.3f} ({score(best) / ref - 1:+.1%})")
    return best if score(best) < ref * (1 - margin) else None


def literal(v):
    """A setting's value as chunk.py spells it (a list from the JSON is a tuple there)."""
    if isinstance(v, dict):
        return json.dumps(v)
    if isinstance(v, list):
        return "(" + "".join(f'"{n}", ' for n in v).rstrip() + ")"
    return str(v)


def main(out):
    settings = {}
    best = winner("first sweep", rows(os.path.join(out, f"prism_tune_{os.environ.get('S16_BYTES_SET', 'bytes')}.log")),
                  lambda r: r["ms_fwd"] + r["ms_fwd_bwd"], 0.01)
    if best:
        settings.update(best["settings"])
    best = winner("rb2", rows(os.path.join(out, "prism_tune_rb2.log")), lambda r: r["ms_fwd_bwd"], 0.015)
    if best:
        settings.update(best["settings"])
    print(" ".join(f"{VARS[k]}='{literal(v)}'" for k, v in settings.items()))


if __name__ == "__main__":
    main(sys.argv[1])
