"""The contrast path: how well does each surface feature alone tell human from AI?

For every candidate: AUC (the chance that a random human side shows more of it
than a random AI side), a bootstrap interval that resamples whole games (the two
sides of a game are not independent), the direction, Cliff's delta and Cohen's
d, and, for paired games, how often the human side shows more of it than its
own AI opponent. Near-duplicate features (|Spearman rho| above a threshold) are
grouped, so the researcher sees "message length" once, not five times.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from scipy.stats import rankdata

from engine.discovery.candidates import candidate_matrix, describe
from engine.errors import BadRequest
from engine.scoring.dialogue import Dialogue

MIN_PER_SIDE = 5


@dataclass
class ContrastConfig:
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples of whole games for the AUC interval"})
    group_threshold: float = field(default=0.7, metadata={"help": "|Spearman rho| at or above which features group"})
    by: str | None = field(default=None, metadata={"help": "also rank within each value of this meta key "
                                                           "(e.g. ai_model)"})
    seed: int = field(default=0, metadata={"help": "seed of the bootstrap"})


def weighted_auc(x: np.ndarray, y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """AUC of ``x`` for ``y`` (1 = human) under each row of weights ``W`` (ties count half).

    Sorting once and summing weights per distinct value makes a thousand
    bootstrap resamples cost about as much as a thousand passes over the data.
    """
    u, inv = np.unique(x, return_inverse=True)
    onehot_t = sparse.csr_matrix((np.ones(len(x)), (inv, np.arange(len(x)))), shape=(len(u), len(x)))
    wh = np.asarray(onehot_t @ (W * y).T).T  # (resamples, distinct values)
    wa = np.asarray(onehot_t @ (W * (1 - y)).T).T
    below = np.cumsum(wa, axis=1) - wa
    num = (wh * (below + 0.5 * wa)).sum(axis=1)
    den = wh.sum(axis=1) * wa.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _cohen_d(h: np.ndarray, a: np.ndarray) -> float:
    if len(h) < 2 or len(a) < 2:
        return float("nan")
    pooled = np.sqrt(((len(h) - 1) * h.var(ddof=1) + (len(a) - 1) * a.var(ddof=1)) / (len(h) + len(a) - 2))
    return float((h.mean() - a.mean()) / pooled) if pooled > 0 else float("nan")


def _paired_win(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[float | None, int]:
    """Share of games (one human, one AI side) where the human side shows more; ties half."""
    wins, n = 0.0, 0
    order = np.argsort(groups, kind="stable")
    g, xs, ys = groups[order], x[order], y[order]
    bounds = np.flatnonzero(np.r_[True, g[1:] != g[:-1], True])
    for s, e in zip(bounds[:-1], bounds[1:]):
        if e - s == 2 and ys[s] != ys[s + 1] and not np.isnan(xs[s:e]).any():
            h, a = (xs[s], xs[s + 1]) if ys[s] == 1 else (xs[s + 1], xs[s])
            wins += 1.0 if h > a else 0.5 if h == a else 0.0
            n += 1
    return (wins / n if n else None), n


def rank_features(names: list[str], X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                  config: ContrastConfig) -> tuple[list[dict], list[dict]]:
    """One record per usable feature (best first) and one note per feature left out."""
    rng = np.random.default_rng(config.seed)
    ug, gi = np.unique(groups, return_inverse=True)
    counts = rng.multinomial(len(ug), np.full(len(ug), 1 / len(ug)), size=config.n_boot).astype(float)
    out, skipped = [], []
    for j, name in enumerate(names):
        x = X[:, j]
        ok = ~np.isnan(x)
        xv, yv = x[ok], y[ok]
        if min(yv.sum(), len(yv) - yv.sum()) < MIN_PER_SIDE:
            skipped.append({"name": name, "reason": "does not apply to enough speakers on both sides"})
            continue
        if np.ptp(xv) == 0:
            skipped.append({"name": name, "reason": f"no variation (always {xv[0]:g})"})
            continue
        raw = float(weighted_auc(xv, yv, np.ones((1, len(xv))))[0])
        boot = weighted_auc(xv, yv, counts[:, gi[ok]])
        higher = raw >= 0.5
        oriented = boot if higher else 1 - boot
        lo, hi = np.nanpercentile(oriented, [2.5, 97.5])
        h, a = xv[yv == 1], xv[yv == 0]
        paired, n_pairs = _paired_win(x, y, groups)
        q10, q50, q90 = np.percentile(xv, [10, 50, 90])
        out.append({
            "name": name, **describe(name, higher),
            "auc": round(max(raw, 1 - raw), 4), "auc_raw": round(raw, 4),
            "ci": [round(float(lo), 4), round(float(hi), 4)],
            "direction": "higher in humans" if higher else "lower in humans",
            "cliffs_delta": round(2 * raw - 1, 4), "cohens_d": round(_cohen_d(h, a), 4),
            "paired_win": None if paired is None else round(paired if higher else 1 - paired, 4),
            "n_pairs": n_pairs, "n": int(ok.sum()),
            "human_mean": round(float(h.mean()), 5), "ai_mean": round(float(a.mean()), 5),
            "quantiles": {"p10": round(float(q10), 5), "p50": round(float(q50), 5), "p90": round(float(q90), 5)},
        })
    out.sort(key=lambda r: (-r["auc"], r["name"]))
    for rank, r in enumerate(out, start=1):
        r["rank"] = rank
    return out, skipped


def group_features(names: list[str], X: np.ndarray, threshold: float) -> list[list[str]]:
    """Features whose values move together (average-linkage on 1 - |Spearman rho|)."""
    if len(names) < 2:
        return [list(names)]
    filled = np.where(np.isnan(X), np.nanmedian(X, axis=0), X)
    R = np.corrcoef(rankdata(filled, axis=0), rowvar=False)
    R = np.nan_to_num(R, nan=0.0)
    D = 1 - np.abs(R)
    np.fill_diagonal(D, 0)
    D = np.clip((D + D.T) / 2, 0, 1)
    labels = fcluster(linkage(squareform(D, checks=False), method="average"), t=1 - threshold, criterion="distance")
    groups: dict[int, list[str]] = {}
    for name, label in zip(names, labels):
        groups.setdefault(int(label), []).append(name)
    return list(groups.values())


def _rho(X: np.ndarray, i: int, j: int) -> float:
    ok = ~(np.isnan(X[:, i]) | np.isnan(X[:, j]))
    if ok.sum() < 3:
        return float("nan")
    return float(np.corrcoef(rankdata(X[ok, i]), rankdata(X[ok, j]))[0, 1])


def contrast_table(dialogues: list[Dialogue], config: ContrastConfig) -> dict:
    """Ranked candidates and their groups for labelled dialogues (raises on too little data)."""
    labelled = [d for d in dialogues if d.label is not None]
    n_h = sum(1 for d in labelled if d.is_human)
    n_a = len(labelled) - n_h
    if min(n_h, n_a) < MIN_PER_SIDE:
        raise BadRequest(f"too few dialogues to contrast: need at least {MIN_PER_SIDE} human and {MIN_PER_SIDE} AI "
                         f"speakers, found {n_h} human and {n_a} AI")
    names, X = candidate_matrix(labelled)
    y = np.array([1.0 if d.is_human else 0.0 for d in labelled])
    groups = np.array([d.group or d.id for d in labelled])
    if len(np.unique(groups)) < 2:
        raise BadRequest("the bootstrap needs at least two games")
    ranked, skipped = rank_features(names, X, y, groups, config)
    used = [r["name"] for r in ranked]
    cols = [names.index(n) for n in used]
    by_name = {r["name"]: r for r in ranked}
    group_list = []
    for members in group_features(used, X[:, cols], config.group_threshold):
        members.sort(key=lambda n: by_name[n]["rank"])
        lead = members[0]
        group_list.append({"lead": lead, "members": members, "auc": by_name[lead]["auc"],
                           "rho_to_lead": {m: round(_rho(X[:, cols], used.index(lead), used.index(m)), 3)
                                           for m in members[1:]}})
    group_list.sort(key=lambda g: -g["auc"])
    for k, g in enumerate(group_list, start=1):
        g["id"] = f"g{k}"
        for m in g["members"]:
            by_name[m]["group"] = g["id"]
    return {"candidates": ranked, "groups": group_list, "skipped": skipped,
            "n_human": n_h, "n_ai": n_a, "n_games": int(len(np.unique(groups)))}


def contrast_report(dialogues: list[Dialogue], config: ContrastConfig) -> dict:
    """The pooled table plus, with ``by``, one table per stratum (AI system, persona...)."""
    report = contrast_table(dialogues, config)
    if config.by:
        strata: dict[str, dict] = {}
        values = sorted({str(d.meta.get(config.by)) for d in dialogues if d.meta.get(config.by) is not None})
        if not values:
            raise BadRequest(f"no dialogue has the meta key {config.by!r} to split by")
        for value in values:
            part = [d for d in dialogues if str(d.meta.get(config.by)) == value]
            try:
                t = contrast_table(part, config)
            except BadRequest as exc:
                strata[value] = {"error": exc.message}
                continue
            strata[value] = {"n_games": t["n_games"], "n_human": t["n_human"], "n_ai": t["n_ai"],
                             "candidates": t["candidates"], "groups": t["groups"]}
        report["by"] = config.by
        report["strata"] = strata
    return report
