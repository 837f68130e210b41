"""The contrast path: how well does each surface feature alone tell human from AI?

For every candidate: AUC (the chance that a random human side shows more of it
than a random AI side), a bootstrap interval that resamples whole games (the two
sides of a game are not independent), the direction, Cliff's delta and Cohen's
d, and, for paired games, how often the human side shows more of it than its
own AI opponent. Near-duplicate features (|Spearman rho| above a threshold) are
grouped, so the researcher sees "message length" once, not five times.

The data mixes AI systems that can fail in opposite ways (one persona overdoes
slang, another has none), so each candidate also carries its AUC within each
system's games, a stratified AUC (humans compared only with the AI of their own
system, in the pooled direction) and a flag when some system significantly
goes the other way. The ranking itself stays the pooled AUC: the systems in the
data are the AIs the question is about, and a per-system maximum would let the
direction change from system to system, which no trait statement can do.
A second, separate ranking (``two_sided``) asks whether humans sit nearer the
typical human level of a feature than the AIs do, on either side of it; its
centre is learnt on other games than the ones it is scored on (cross-fitting).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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
    systems: str = field(default="auto", metadata={"help": "meta key naming each game's AI system, for the "
                                                           "per-system AUCs and direction flips ('auto': ai_model "
                                                           "when every side has it; '' = none)"})
    two_sided: bool = field(default=True, metadata={"help": "also rank closeness to the typical human level "
                                                             "(cross-fitted)"})
    folds: int = field(default=5, metadata={"help": "folds of games for the two-sided ranking's human centre"})


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


def _oriented_ci(boot: np.ndarray, higher: bool) -> list[float]:
    lo, hi = np.nanpercentile(boot if higher else 1 - boot, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def _by_system(x: np.ndarray, y: np.ndarray, gi: np.ndarray, counts: np.ndarray, strata: np.ndarray,
               higher: bool) -> dict:
    """Per-system AUCs, the stratified AUC in the pooled direction, and the systems that go against it.

    The stratified AUC compares every human only with the AIs of the same system
    and averages the systems' AUCs weighted by their number of games, so each
    system counts as much as it does in the data (weighting by human-AI pairs
    would square the big systems' share); the same game resamples give its
    interval. It matches the pooled AUC unless the humans themselves differ
    from one system's games to the next.
    """
    per, num, den = {}, np.zeros(len(counts)), np.zeros(len(counts))
    raw_num = raw_den = 0.0
    for value in np.unique(strata):
        m = strata == value
        ys = y[m]
        n_h, n_a = int(ys.sum()), int(len(ys) - ys.sum())
        if min(n_h, n_a) < MIN_PER_SIDE:
            continue
        W = counts[:, gi[m]]
        raw = float(weighted_auc(x[m], ys, np.ones((1, m.sum())))[0])
        boot = weighted_auc(x[m], ys, W)
        w = (W * ys).sum(axis=1)  # the human sides drawn: one a game
        ok = ~np.isnan(boot)
        num[ok] += (w * boot)[ok]
        den[ok] += w[ok]
        raw_num += n_h * raw
        raw_den += n_h
        own = raw >= 0.5
        ci = _oriented_ci(boot, own)
        per[str(value)] = {"auc": round(max(raw, 1 - raw), 4), "auc_raw": round(raw, 4), "ci": ci,
                           "direction": "higher in humans" if own else "lower in humans",
                           "significant": bool(ci[0] > 0.5), "n_human": n_h, "n_ai": n_a}
    if not per:
        return {}
    with np.errstate(invalid="ignore", divide="ignore"):
        strat_boot = np.where(den > 0, num / den, np.nan)
    strat = raw_num / raw_den
    pooled_dir = "higher in humans" if higher else "lower in humans"
    against = sorted(k for k, v in per.items() if v["significant"] and v["direction"] != pooled_dir)
    worst = min(per, key=lambda k: per[k]["auc_raw"] if higher else 1 - per[k]["auc_raw"])
    worst_auc = per[worst]["auc_raw"] if higher else 1 - per[worst]["auc_raw"]
    return {"stratified_auc": round(strat if higher else 1 - strat, 4),
            "stratified_ci": _oriented_ci(strat_boot, higher),
            "worst_system": {"system": worst, "auc": round(worst_auc, 4)},
            "direction_flips": bool(against), "against_direction": against, "systems": per}


def rank_features(names: list[str], X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                  config: ContrastConfig, strata: np.ndarray | None = None,
                  humans_higher: bool = False) -> tuple[list[dict], list[dict]]:
    """One record per usable feature (best first) and one note per feature left out.

    ``strata`` (one AI system per row) adds per-system AUCs and the direction-flip flag.
    ``humans_higher`` fixes the direction instead of taking the better one: the
    AUC is then P(human side > AI side) and may fall below 0.5.
    """
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
        higher = humans_higher or raw >= 0.5
        oriented = boot if higher else 1 - boot
        lo, hi = np.nanpercentile(oriented, [2.5, 97.5])
        h, a = xv[yv == 1], xv[yv == 0]
        paired, n_pairs = _paired_win(x, y, groups)
        q10, q50, q90 = np.percentile(xv, [10, 50, 90])
        out.append({
            "name": name, **describe(name, higher),
            "auc": round(raw if higher else 1 - raw, 4), "auc_raw": round(raw, 4),
            "ci": [round(float(lo), 4), round(float(hi), 4)],
            "direction": "higher in humans" if higher else "lower in humans",
            "cliffs_delta": round(2 * raw - 1, 4), "cohens_d": round(_cohen_d(h, a), 4),
            "paired_win": None if paired is None else round(paired if higher else 1 - paired, 4),
            "n_pairs": n_pairs, "n": int(ok.sum()),
            "human_mean": round(float(h.mean()), 5), "ai_mean": round(float(a.mean()), 5),
            "quantiles": {"p10": round(float(q10), 5), "p50": round(float(q50), 5), "p90": round(float(q90), 5)},
        })
        if strata is not None:
            out[-1].update(_by_system(xv, yv, gi[ok], counts, strata[ok], higher))
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


def _systems(labelled: list[Dialogue], config: ContrastConfig) -> tuple[str | None, np.ndarray | None]:
    key = config.systems
    if key == "auto":
        key = "ai_model" if all(d.meta.get("ai_model") is not None for d in labelled) else ""
    if not key:
        return None, None
    values = [d.meta.get(key) for d in labelled]
    if any(v is None for v in values):
        raise BadRequest(f"not every dialogue has the meta key {key!r} to name its AI system")
    strata = np.array([str(v) for v in values])
    return (key, strata) if len(np.unique(strata)) > 1 else (None, None)


def two_sided(names: list[str], X: np.ndarray, y: np.ndarray, groups: np.ndarray, config: ContrastConfig,
              strata: np.ndarray | None, one_sided: dict[str, float]) -> list[dict]:
    """Do humans sit nearer the typical human level than the AIs, whichever side the AIs miss it on?

    A feature becomes its percentile among all sides (no labels used), and each
    side is scored by minus its distance to the median human percentile of the
    games in the other folds, so no side helps place its own centre. Ranked by
    the AUC of that closeness, with the same intervals and per-system view.
    """
    ug, gi = np.unique(groups, return_inverse=True)
    k = max(2, min(config.folds, len(ug)))
    fold = np.random.default_rng(config.seed + 1).permutation(len(ug)) % k
    fold = fold[gi]
    C = np.full(X.shape, np.nan)
    usable = []
    for j, name in enumerate(names):
        x = X[:, j]
        ok = ~np.isnan(x)
        if name not in one_sided or ok.sum() < 2 * MIN_PER_SIDE:
            continue
        r = np.full(len(x), np.nan)
        r[ok] = rankdata(x[ok]) / ok.sum()
        for f in range(k):
            train = ok & (fold != f) & (y == 1)
            test = ok & (fold == f)
            if train.any():
                C[test, j] = -np.abs(r[test] - np.median(r[train]))
        usable.append(j)
    ranked, _ = rank_features([names[j] for j in usable], C[:, usable], y, groups, config, strata,
                              humans_higher=True)
    for rec in ranked:
        j = names.index(rec["name"])
        h = X[(y == 1) & ~np.isnan(X[:, j]), j]
        label = rec["label"]
        rec.update({
            "direction": "nearer the typical human level",
            "statement": f"Shows {label} at an everyday human level, neither far more nor far less.",
            "human_median": round(float(np.median(h)), 5), "one_sided_auc": one_sided[rec["name"]],
            "gain_over_one_sided": round(rec["auc"] - one_sided[rec["name"]], 4),
        })
        for key in ("human_mean", "ai_mean", "quantiles", "cohens_d"):  # of the closeness, not the feature
            rec.pop(key, None)
        for part in (rec.get("systems") or {}).values():
            part["direction"] = "humans nearer" if part["direction"] == "higher in humans" else "AIs nearer"
    return ranked


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
    systems_key, strata = _systems(labelled, config)
    ranked, skipped = rank_features(names, X, y, groups, config, strata)
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
    out = {"candidates": ranked, "groups": group_list, "skipped": skipped,
           "n_human": n_h, "n_ai": n_a, "n_games": int(len(np.unique(groups)))}
    if strata is not None:
        game_system = dict(zip(groups, strata))
        out["systems_key"] = systems_key
        out["systems"] = {str(v): sum(1 for s in game_system.values() if s == v) for v in np.unique(strata)}
    if config.two_sided:
        out["two_sided"] = two_sided(names, X, y, groups, config, strata, {r["name"]: r["auc"] for r in ranked})
    out["summary"] = summarise(out)
    return out


def summarise(table: dict, at: float = 0.7) -> dict:
    """Counts a reader asks first: how many reach the AUC mark, pooled and in every system."""
    c = table["candidates"]
    summary = {"auc_mark": at, "n_candidates": len(c), "n_at_mark": sum(r["auc"] >= at for r in c),
               "n_groups_at_mark": sum(g["auc"] >= at for g in table["groups"]),
               "top": [r["name"] for r in c[:5]]}
    if "systems" in table:
        summary.update({
            "n_direction_flips": sum(bool(r.get("direction_flips")) for r in c),
            "n_at_mark_without_flip": sum(r["auc"] >= at and not r.get("direction_flips") for r in c),
            "n_stratified_at_mark": sum((r.get("stratified_auc") or 0) >= at for r in c),
            "n_at_mark_in_every_system": sum((r.get("worst_system") or {}).get("auc", 0) >= at for r in c),
        })
    if "two_sided" in table:
        summary["n_two_sided_at_mark"] = sum(r["auc"] >= at for r in table["two_sided"])
        summary["two_sided_top"] = [r["name"] for r in table["two_sided"][:5]]
    return summary


def contrast_report(dialogues: list[Dialogue], config: ContrastConfig) -> dict:
    """The pooled table plus, with ``by``, one table per stratum (AI system, persona...)."""
    report = contrast_table(dialogues, config)
    if config.by:
        strata: dict[str, dict] = {}
        values = sorted({str(d.meta.get(config.by)) for d in dialogues if d.meta.get(config.by) is not None})
        if not values:
            raise BadRequest(f"no dialogue has the meta key {config.by!r} to split by")
        part_config = replace(config, two_sided=False)
        for value in values:
            part = [d for d in dialogues if str(d.meta.get(config.by)) == value]
            try:
                t = contrast_table(part, part_config)
            except BadRequest as exc:
                strata[value] = {"error": exc.message}
                continue
            strata[value] = {"n_games": t["n_games"], "n_human": t["n_human"], "n_ai": t["n_ai"],
                             "candidates": t["candidates"], "groups": t["groups"], "summary": t["summary"]}
        report["by"] = config.by
        report["strata"] = strata
    return report
