"""What a verdict needs beyond the training judge's Δ before it may say
"sounds more human".

A round can raise the score of the judge that built its pairs while its
replies shrink or loop: that judge is being optimised, so it cannot also be
the one that grades. Three checks on the same held-out replies:

- **an evaluator the round did not train on**: another judge (or the same
  judge with other weights) scores base and aligned; its paired Δ and
  bootstrap interval are the headline;
- **length-controlled Δ**: every held-out reply's evaluator score is regressed
  on log(1 + words) over base and aligned replies pooled; the paired
  difference of the residuals is what is left once length is taken out;
- **looping**: the share of replies the loop detector flags
  (``engine.scoring.loops``), base and aligned, with Wilson intervals.

The verdict says "sounds more human" only when the evaluator's interval is
above 0, the looping share did not rise, and the length-controlled Δ is
positive; otherwise it names what failed.
"""

from __future__ import annotations

import math

import numpy as np

from engine.results.stats import wilson


def _finite_pairs(a, b):
    return [(x, y) for x, y in zip(a, b) if x is not None and y is not None
            and math.isfinite(x) and math.isfinite(y)]


def paired_delta(base_scores, new_scores, bootstrap_ci) -> dict:
    pairs = _finite_pairs(base_scores, new_scores)
    diff = [y - x for x, y in pairs]
    return {"n": len(diff), "base_mean": _r(np.mean([x for x, _ in pairs])) if pairs else None,
            "aligned_mean": _r(np.mean([y for _, y in pairs])) if pairs else None,
            "delta": _r(np.mean(diff)) if diff else None, "delta_ci": bootstrap_ci(diff)}


def length_controlled(base_scores, new_scores, base_words, new_words, bootstrap_ci) -> dict:
    """Paired Δ of the scores' residuals after a pooled fit of score on log(1 + words)."""
    rows = [(sb, sn, wb, wn) for sb, sn, wb, wn in zip(base_scores, new_scores, base_words, new_words)
            if sb is not None and sn is not None and math.isfinite(sb) and math.isfinite(sn)]
    if len(rows) < 3:
        return {"n": len(rows), "delta": None, "delta_ci": [None, None], "slope_per_log_word": None}
    y = np.array([r[0] for r in rows] + [r[1] for r in rows], dtype=float)
    x = np.log1p(np.array([r[2] for r in rows] + [r[3] for r in rows], dtype=float))
    if float(np.ptp(x)) == 0.0:
        slope, icpt = 0.0, float(np.mean(y))
    else:
        slope, icpt = np.polyfit(x, y, 1)
    resid = y - (slope * x + icpt)
    n = len(rows)
    diff = resid[n:] - resid[:n]
    return {"n": n, "delta": _r(float(np.mean(diff))), "delta_ci": bootstrap_ci(diff.tolist()),
            "slope_per_log_word": _r(float(slope)),
            "method": "evaluator score regressed on log(1 + words) over base and aligned replies pooled; "
                      "paired mean of the residuals"}


def loop_shares(base_texts: list[str], new_texts: list[str]) -> dict | None:
    """Looping replies of base and aligned with Wilson intervals (None without the detector)."""
    try:
        from engine.scoring.loops import is_looping
    except ImportError:
        return None
    out = {}
    for name, texts in (("base", base_texts), ("aligned", new_texts)):
        k = sum(1 for t in texts if is_looping(t))
        ci = wilson(k, len(texts))
        out[name] = {"looping": k, "n": len(texts), "share": _r(k / len(texts)) if texts else None,
                     "ci": [_r(ci[0]), _r(ci[1])] if ci else [None, None]}
    out["rose"] = bool(out["aligned"]["looping"] > out["base"]["looping"])
    return out


def headline(evaluator: dict | None, length_ctl: dict | None, loops: dict | None) -> dict:
    """The verdict's one line: "sounds more human" only when every check holds."""
    failed = []
    if not evaluator or evaluator.get("delta_ci", [None])[0] is None:
        failed.append("no evaluator score")
    elif evaluator["delta_ci"][0] <= 0:
        failed.append(f"the evaluator's interval is not above 0 ({_ci_text(evaluator['delta_ci'])})")
    if loops is None:
        failed.append("looping was not measured")
    elif loops["rose"]:
        failed.append(f"looping rose ({loops['base']['looping']} -> {loops['aligned']['looping']} of "
                      f"{loops['aligned']['n']} replies)")
    if not length_ctl or length_ctl.get("delta") is None:
        failed.append("no length-controlled Δ")
    elif length_ctl["delta"] <= 0:
        failed.append(f"the length-controlled Δ is not positive ({length_ctl['delta']:+.2f})")
    ok = not failed
    text = ("Sounds more human: the evaluator's interval is above 0, looping did not rise and the "
            "length-controlled Δ is positive." if ok else "Not shown to sound more human: " + "; ".join(failed) + ".")
    return {"sounds_more_human": ok, "failed": failed, "text": text}


def evaluate_checks(msgs, base_texts, new_texts, evaluator, bootstrap_ci) -> dict:
    """The evaluator's scores of the same held-out replies, length control, loops and the headline."""
    ev = None
    if evaluator is not None:
        jb = evaluator.judge_many(list(zip(msgs, base_texts)))
        jn = evaluator.judge_many(list(zip(msgs, new_texts)))
        sb, sn = [j.score for j in jb], [j.score for j in jn]
        ev = {"judge": evaluator.judge, "weights": evaluator.weights_ref, **paired_delta(sb, sn, bootstrap_ci)}
        lc = length_controlled(sb, sn, [len(t.split()) for t in base_texts],
                               [len(t.split()) for t in new_texts], bootstrap_ci)
    else:
        lc = None
    loops = loop_shares(base_texts, new_texts)
    return {"evaluator": ev, "length_controlled": lc, "looping": loops, "headline": headline(ev, lc, loops)}


def _r(x: float) -> float:
    return round(float(x), 4)


def _ci_text(ci) -> str:
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci and ci[0] is not None else "[–]"
