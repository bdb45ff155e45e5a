#!/usr/bin/env python3
"""Session 16: picks the settings that the rest of the session's device calls run, from this call's two sweeps
(prism_tune.py TUNE_SET=bytes, or $S16_BYTES_SET, and rb2 in $OUT), and prints them as shell assignments for s16_apply.sh:

    S16_FWD16='("tr", "w",)' S16_TR16='False' S16_VBS='None' S16_CBS='None' S16_RBD16='True'

FWD_16: the variant with the lowest ms_fwd + ms_fwd_bwd, if that sum is more than 1% below the defaults' (mean of the
two defaults rows), else (). Row blocks: the rb2 variant with the lowest ms_fwd_bwd, if more than 1.5% below the
defaults' (session 15's rule), else whole chunks. Every row is echoed as a comment line first.
    python3 scripts/gpu/s16_choose.py $OUT
"""
import json
import os
import sys


def rows(path):
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.startswith('{"variant"')]


def main(out):
    choice = dict(S16_FWD16="()", S16_TR16="False", S16_VBS="None", S16_CBS="None", S16_RBD16="True")
    b = rows(os.path.join(out, f"prism_tune_{os.environ.get('S16_BYTES_SET', 'bytes')}.log"))
    for r in b:
        diff = max((r.get("max_rel_diff_vs_defaults") or {}).values(), default=None)
        print("#", r["variant"], r.get("ms_fwd_bwd"), r.get("ms_fwd"), diff, r.get("error", "")[:200])
    ok = [r for r in b if "ms_fwd_bwd" in r and "ms_fwd" in r]
    base = [r["ms_fwd"] + r["ms_fwd_bwd"] for r in ok if r["variant"].startswith("defaults")]
    cand = [r for r in ok if not r["variant"].startswith("defaults")]
    if base and cand:
        ref = sum(base) / len(base)
        best = min(cand, key=lambda r: r["ms_fwd"] + r["ms_fwd_bwd"])
        score = best["ms_fwd"] + best["ms_fwd_bwd"]
        print(f"# bytes: best {best['variant']} fwd+(fwd+bwd) {score:.3f} against defaults {ref:.3f} ({score / ref - 1:+.1%})")
        if score < ref * 0.99:
            choice["S16_FWD16"] = "(" + "".join(f'"{n}", ' for n in best["settings"]["FWD_16"]).rstrip() + ")"
            choice["S16_TR16"] = str(best["settings"].get("TR16_DOTS", False))
    r2 = rows(os.path.join(out, "prism_tune_rb2.log"))
    for r in r2:
        diff = max((r.get("max_rel_diff_vs_defaults") or {}).values(), default=None)
        print("#", r["variant"], r.get("ms_fwd_bwd"), r.get("ms_fwd"), diff, r.get("error", "")[:200])
    base = [r["ms_fwd_bwd"] for r in r2 if r["variant"].startswith("defaults") and "ms_fwd_bwd" in r]
    cand = [r for r in r2 if not r["variant"].startswith("defaults") and "ms_fwd_bwd" in r]
    if base and cand:
        ref = sum(base) / len(base)
        best = min(cand, key=lambda r: r["ms_fwd_bwd"])
        print(f"# rb2: best {best['variant']} {best['ms_fwd_bwd']:.3f} against defaults {ref:.3f} "
              f"({best['ms_fwd_bwd'] / ref - 1:+.1%})")
        if best["ms_fwd_bwd"] < ref * 0.985:
            s = best["settings"]
            choice.update(S16_VBS=str(s.get("KEYS_VALUES_BS")), S16_CBS=str(s.get("KEYS_COLUMNS_BS")),
                          S16_RBD16=str(s.get("RB_D16", True)))
    print(" ".join(f"{k}='{v}'" for k, v in choice.items()))


if __name__ == "__main__":
    main(sys.argv[1])
