"""Reward update, interpretable: refit the trait weights with the researcher's votes.

Each decisive vote says "the chosen reply is more human than the rejected
one": a Bradley-Terry term sigma(w . (x_chosen - x_rejected)) on the judge's
trait ratings. Contrastive dialogues (labelled human / AI) add logistic terms
sigma(w . x + b). An L2 pull toward the old weights keeps a handful of votes
from throwing the published fit away. Agreement with held-out votes is
reported for the old and the new weights; the new weights are saved as a new
version whose parent is the old one.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from engine.errors import EngineError
from engine.training.config import from_dict, opt, to_dict, validate

KIND = "reward_weights"


@dataclass
class RewardWeightsConfig:
    judge: str = opt("auto", "judge whose trait ratings the weights apply to")
    weights: str = opt("hal16_published", "the weights to start from (id or id@version)")
    new_id: str = opt("", "id to save the refit weights under (empty = the old id, next version)")
    contrastive: str = opt("", "labelled dialogues (Turing CSV or JSONL) added to the fit; empty = none")
    contrastive_max: int = opt(400, "use at most this many contrastive dialogues", 0, 1_000_000)
    vote_weight: float = opt(1.0, "weight of one vote relative to one contrastive dialogue", 0.0, 1000)
    likely_weight: float = opt(0.5, "a 'likely' vote counts this much of a 'certainly' one", 0.0, 1.0)
    prior: float = opt(1.0, "L2 pull toward the old weights (0 = none)", 0.0, 1e6)
    holdout_share: float = opt(0.25, "share of votes kept aside to measure agreement", 0.0, 0.9)
    min_votes: int = opt(4, "refuse to refit on fewer decisive votes than this", 1, 1_000_000)


PRESETS = {"smoke": {"min_votes": 2}, "default": {}}


def make_config(preset: str = "default", overrides: dict | None = None) -> RewardWeightsConfig:
    import dataclasses

    base = dataclasses.replace(RewardWeightsConfig(), **PRESETS.get(preset, {}))
    return from_dict(RewardWeightsConfig, overrides, base)


def is_heldout(rating_id: str, share: float) -> bool:
    """A fixed split: the same vote is always on the same side."""
    h = int(hashlib.sha256(rating_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < share


def fit(trait_ids: list[int], w0: np.ndarray, b0: float, diffs: np.ndarray, diff_w: np.ndarray,
        X: np.ndarray, y: np.ndarray, x_w: np.ndarray, prior: float) -> tuple[np.ndarray, float]:
    """Minimise the weighted logistic losses plus prior * ||(w, b) - (w0, b0)||^2."""
    from scipy.optimize import minimize

    k = len(trait_ids)

    def loss(theta):
        w, b = theta[:k], theta[k]
        total, grad = 0.0, np.zeros(k + 1)
        if len(diffs):
            z = diffs @ w
            total += float(np.sum(diff_w * np.logaddexp(0, -z)))
            g = -diff_w / (1 + np.exp(z))
            grad[:k] += diffs.T @ g
        if len(X):
            z = X @ w + b
            total += float(np.sum(x_w * (np.logaddexp(0, z) - y * z)))
            g = x_w * (1 / (1 + np.exp(-z)) - y)
            grad[:k] += X.T @ g
            grad[k] += g.sum()
        d = theta - np.append(w0, b0)
        total += prior * float(d @ d)
        grad += 2 * prior * d
        return total, grad

    res = minimize(loss, np.append(w0, b0), jac=True, method="L-BFGS-B")
    return res.x[:k], float(res.x[k])


def agreement(diffs: np.ndarray, w: np.ndarray) -> float | None:
    """Share of votes where the weights score the chosen reply higher."""
    if not len(diffs):
        return None
    return round(float(np.mean(diffs @ w > 0)), 4)


def run(config: RewardWeightsConfig, state, store=None) -> dict:
    from engine.scoring.traits import Weights, load_weights, save_weights
    from engine.store import Store
    from engine.training.pairs import rating_pairs
    from engine.training.reward import load_reward
    from engine.training.rounds import RoundRecord, exclusive

    validate(config)
    store = store or Store()
    t0 = time.perf_counter()
    with exclusive("reward update (weights)"):
        votes = rating_pairs(store, config.likely_weight, 1.0)
        if len(votes) < config.min_votes:
            raise EngineError(f"There are {len(votes)} decisive vote(s); refitting the weights needs at "
                              f"least {config.min_votes}. Rate more replies (ties and 'both bad' do not "
                              "count).", kind="no_pairs")
        old = load_weights(config.weights)
        reward = load_reward(config.judge, config.weights)
        record = RoundRecord(store, KIND, to_dict(config))
        try:
            state.progress(0, 3, "rating the voted replies", force=True)
            tids = old.trait_ids
            judged = reward.judge_many([(v.prompt, t) for v in votes for t in (v.chosen, v.rejected)])

            def vec(j):
                return np.array([j.traits.get(t) if j.traits.get(t) is not None else 3.0 for t in tids])

            diffs = np.array([vec(judged[2 * i]) - vec(judged[2 * i + 1]) for i in range(len(votes))])
            weights = np.array([v.weight * config.vote_weight for v in votes])
            held = np.array([is_heldout(v.rating_id, config.holdout_share) for v in votes])
            if held.all():
                held[:] = False
            X, y = _contrastive(config, reward, tids, state)
            w0 = np.array([old.weights[t] for t in tids])
            state.progress(2, 3, "fitting", force=True)
            w1, b1 = fit(tids, w0, old.bias, diffs[~held], weights[~held], X, y,
                         np.ones(len(X)), config.prior)
            new = Weights(id=config.new_id or old.id, version=None, name=f"{old.name} + researcher votes",
                          weights={t: float(v) for t, v in zip(tids, w1)}, bias=b1,
                          questionnaire=old.questionnaire, parent=old.ref,
                          description=f"refit by round {record.id} on {int((~held).sum())} votes",
                          fitted_on={"round_id": record.id, "votes": int((~held).sum()),
                                     "contrastive": config.contrastive, "n_contrastive": int(len(X)),
                                     "judge": reward.judge},
                          metrics={})
            saved = save_weights(new, config.new_id or None)
            report = {
                "old_weights": old.ref, "new_weights": saved.ref,
                "traits": {str(t): {"old": round(float(a), 4), "new": round(float(b), 4),
                                    "change": round(float(b - a), 4)} for t, a, b in zip(tids, w0, w1)},
                "bias": {"old": round(old.bias, 4), "new": round(b1, 4)},
                "n_votes_fit": int((~held).sum()), "n_votes_heldout": int(held.sum()),
                "n_contrastive": int(len(X)),
                "agreement_heldout": {"old": agreement(diffs[held], w0), "new": agreement(diffs[held], w1)},
                "agreement_fit": {"old": agreement(diffs[~held], w0), "new": agreement(diffs[~held], w1)},
                "judge": reward.judge}
            seconds = round(time.perf_counter() - t0, 2)
            record.set_lineage({"rating_ids": sorted(v.rating_id for v in votes),
                                "heldout_rating_ids": sorted(v.rating_id for v, h in zip(votes, held) if h),
                                "old_weights": old.ref, "new_weights": saved.ref,
                                "contrastive": config.contrastive, "judge": reward.judge})
            record.finish("done", None, metrics={**report, "round_seconds": seconds})
            state.progress(3, 3, "done", force=True)
            return {"round_id": record.id, "adapter": None, "seconds": seconds, "steps": 0,
                    "metrics": report, "verdict": None, "weights": saved.ref}
        except BaseException as exc:
            record.fail_from(exc)
            raise


def _contrastive(config, reward, tids, state) -> tuple[np.ndarray, np.ndarray]:
    """(ratings matrix, human labels) of the contrastive dialogues, rated by our judge."""
    if not config.contrastive or config.contrastive_max == 0:
        return np.zeros((0, len(tids))), np.zeros(0)
    from engine.scoring.importers import load_any

    imported = load_any(config.contrastive)
    ds = [d for d in imported.dialogues if d.is_human is not None][: config.contrastive_max]
    if not ds:
        raise EngineError(f"{config.contrastive} holds no labelled dialogues", kind="bad_request")
    state.progress(1, 3, f"rating {len(ds)} contrastive dialogues", force=True)
    items = []
    for d in ds:
        msgs, reply = [], ""
        for t in d.turns:
            role = "assistant" if t.speaker == d.rated_speaker else "user"
            msgs.append({"role": role, "content": t.text})
        while msgs and msgs[-1]["role"] == "assistant":  # the rated speaker's last line is "the reply"
            reply = msgs.pop()["content"] + ("\n" + reply if reply else "")
        items.append((msgs or [{"role": "user", "content": ""}], reply))
    judged = reward.judge_many(items)
    X = np.array([[j.traits.get(t) if j.traits.get(t) is not None else 3.0 for t in tids] for j in judged])
    y = np.array([1.0 if d.is_human else 0.0 for d in ds])
    return X, y
