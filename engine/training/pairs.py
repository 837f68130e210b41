"""Preference pairs: the policy's own replies ranked by the score, and the researcher's votes.

For each training prompt K replies are sampled and scored; every ordered pair
whose score gap exceeds the margin (by default half the std of all scores, as
the paper did) becomes (prompt, chosen, rejected). Decisive ratings become
pairs too; ties and "both bad" never do. Pairs are stored with their lineage
and export to TRL's conversational preference format.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.errors import BadRequest
from engine.store import new_id, now
from engine.training.prompts import Prompt
from engine.training.reward import Reward
from engine.training.sampling import SampleSettings, Sampler


@dataclass
class Pair:
    prompt: list[dict]
    chosen: str
    rejected: str
    chosen_score: float | None = None
    rejected_score: float | None = None
    source: str = "sampled"  # "sampled" | "rating" | "human" (a Chit-Chat reply as chosen)
    rating_id: str | None = None
    weight: float = 1.0
    prompt_id: str | None = None

    def trl_row(self) -> dict:
        return {"prompt": [dict(m) for m in self.prompt],
                "chosen": [{"role": "assistant", "content": self.chosen}],
                "rejected": [{"role": "assistant", "content": self.rejected}]}


@dataclass
class SampledPool:
    """Everything pair building saw: replies and scores per prompt (kept for the record)."""

    replies: dict[str, list[str]] = field(default_factory=dict)
    scores: dict[str, list[float]] = field(default_factory=dict)
    traits: dict[str, list[dict]] = field(default_factory=dict)

    def all_scores(self) -> list[float]:
        """Every finite score (a reply the judge could not rate scores NaN)."""
        return [s for v in self.scores.values() for s in v if math.isfinite(s)]


def sample_and_score(prompts: list[Prompt], sampler: Sampler, reward: Reward, k: int,
                     adapter: str | None, settings: SampleSettings, seed: int,
                     cancelled: Callable[[], bool] = lambda: False,
                     progress: Callable[[int, int], None] = lambda d, t: None) -> SampledPool:
    """K replies per prompt, seeds ``seed + j`` for the j-th reply of every prompt."""
    flat = [(p, j) for p in prompts for j in range(k)]
    texts = sampler.generate([p.as_messages() for p, _ in flat], [seed + j for _, j in flat], adapter,
                             settings, cancelled, lambda n: progress(n, len(flat)))
    pool = SampledPool()
    if len(texts) < len(flat):  # cancelled part-way
        return pool
    judged = reward.judge_many([(p.as_messages(), t) for (p, _), t in zip(flat, texts)])
    for ((p, _), text), j in zip(zip(flat, texts), judged):
        pool.replies.setdefault(p.id, []).append(text)
        pool.scores.setdefault(p.id, []).append(j.score)
        pool.traits.setdefault(p.id, []).append(j.traits)
    return pool


def margin_of(scores: list[float], margin: float | None, margin_std: float) -> float:
    """An absolute margin, or ``margin_std`` times the std of the scores."""
    if margin is not None:
        return float(margin)
    return margin_std * (statistics.pstdev(scores) if len(scores) > 1 else 0.0)


def looping_detector() -> Callable[[str], bool] | None:
    """``engine.scoring.loops.is_looping`` (None where the detector is not installed)."""
    try:
        from engine.scoring.loops import is_looping
    except ImportError:
        return None
    return is_looping


def _words(text: str) -> int:
    return max(1, len(text.split()))


def pairs_from_pool(prompts: list[Prompt], pool: SampledPool, margin: float,
                    max_per_prompt: int = 0, looping: Callable[[str], bool] | None = None,
                    length_ratio_max: float = 0.0) -> list[Pair]:
    """Ordered pairs with score gap > margin; identical texts never pair.

    A reply ``looping`` flags is never chosen (it may still be rejected). With
    ``length_ratio_max`` > 0 a pair is kept only when the longer reply has at most
    that many times the words of the shorter, so length alone cannot decide it.
    With ``max_per_prompt`` the widest gaps are kept first."""
    out = []
    for p in prompts:
        texts, scores = pool.replies.get(p.id, []), pool.scores.get(p.id, [])
        loops = [bool(looping(t)) if looping else False for t in texts]
        cands = []
        for i in range(len(texts)):
            if loops[i] or not texts[i].strip():
                continue
            for j in range(len(texts)):
                gap = scores[i] - scores[j]  # NaN (unrated) never passes
                if gap <= margin or texts[i] == texts[j]:
                    continue
                if length_ratio_max > 0:
                    a, b = _words(texts[i]), _words(texts[j])
                    if max(a, b) / min(a, b) > length_ratio_max:
                        continue
                cands.append((gap, i, j))
        cands.sort(reverse=True)
        if max_per_prompt:
            cands = cands[:max_per_prompt]
        for _, i, j in cands:
            out.append(Pair(p.as_messages(), texts[i], texts[j], scores[i], scores[j],
                            "sampled", None, 1.0, p.id))
    return out


def human_pairs(n: int, sampler: Sampler, adapter: str | None, settings: SampleSettings, seed: int,
                cancelled: Callable[[], bool] = lambda: False,
                progress: Callable[[int, int], None] = lambda d, t: None) -> list[Pair]:
    """Human-anchored pairs: a real person's next message in a Chit-Chat conversation
    (the corpus's train split, by chat id) as chosen, the policy's own reply to the
    same context as rejected."""
    from engine.training.anchor import human_exchanges

    if n <= 0:
        return []
    snippets = human_exchanges("train", n, seed=seed + 7919)
    contexts = [m[:-1] for m in snippets]
    texts = sampler.generate(contexts, [seed + i for i in range(len(contexts))], adapter, settings,
                             cancelled, lambda d: progress(d, len(contexts)))
    out = []
    for ctx, snippet, text in zip(contexts, snippets, texts):
        human = snippet[-1]["content"]
        if text.strip() and text.strip() != human.strip():
            out.append(Pair(ctx, human, text, None, None, "human", None, 1.0, None))
    return out


def rating_pairs(store, likely_weight: float = 0.5, certainly_weight: float = 1.0) -> list[Pair]:
    """The researcher's decisive votes as pairs (ties and "both bad" stay out)."""
    from engine.results.exports import preference_pairs

    out = []
    for row in preference_pairs(store, with_metadata=True):
        weight = certainly_weight if row.get("strength") == "certainly" else likely_weight
        if weight <= 0:
            continue
        out.append(Pair(row["prompt"], row["chosen"][0]["content"], row["rejected"][0]["content"],
                        source="rating", rating_id=row["rating_id"], weight=weight))
    return out


def training_rows(pairs: list[Pair], rating_repeat: int = 1) -> list[dict]:
    """TRL rows; a rating pair appears round(weight * rating_repeat) times (at least once),
    which is how a vote outweighs a sampled pair without per-example loss weights."""
    rows = []
    for p in pairs:
        n = 1 if p.source != "rating" else max(1, round(p.weight * rating_repeat))
        rows.extend([p.trl_row()] * n)
    return rows


# -- the store -----------------------------------------------------------------
def save(store, pairs: list[Pair], round_id: str | None, reward: Reward | None) -> str:
    """Write a pair set with its lineage; returns the pair_set id."""
    pair_set = new_id()
    stamp = now()
    with store._lock, store.db.conn:
        store.db.execute("BEGIN IMMEDIATE")
        for p in pairs:
            store._insert("pairs", {
                "id": new_id(), "pair_set": pair_set, "round_id": round_id,
                "prompt": json.dumps({"id": p.prompt_id, "messages": p.prompt}, ensure_ascii=False),
                "chosen": p.chosen, "rejected": p.rejected, "chosen_score": p.chosen_score,
                "rejected_score": p.rejected_score, "source": p.source, "rating_id": p.rating_id,
                "judge": reward.judge if reward else None,
                "questionnaire": reward.questionnaire if reward else None,
                "weights": reward.weights_ref if reward else None, "weight": p.weight,
                "created_at": stamp})
    return pair_set


def load(store, pair_set: str) -> list[Pair]:
    rows = list(store.db["pairs"].rows_where("pair_set = ?", [pair_set], order_by="rowid"))
    if not rows:
        raise BadRequest(f"no pair set {pair_set!r} in the store")
    out = []
    for r in rows:
        prompt = json.loads(r["prompt"])
        out.append(Pair(prompt["messages"], r["chosen"], r["rejected"], r["chosen_score"],
                        r["rejected_score"], r["source"], r["rating_id"], r["weight"] or 1.0,
                        prompt.get("id")))
    return out


def lineage(pair_set: str, pairs: list[Pair], reward: Reward | None, extra: dict | None = None) -> dict:
    return {"pair_set": pair_set, "n_pairs": len(pairs),
            "n_sampled": sum(p.source == "sampled" for p in pairs),
            "n_rating": sum(p.source == "rating" for p in pairs),
            "n_human": sum(p.source == "human" for p in pairs),
            "prompt_ids": sorted({p.prompt_id for p in pairs if p.prompt_id}),
            "rating_ids": sorted({p.rating_id for p in pairs if p.rating_id}),
            "judge": reward.judge if reward else None,
            "weights": reward.weights_ref if reward else None,
            "questionnaire": reward.questionnaire if reward else None, **(extra or {})}


# -- exports ---------------------------------------------------------------------
def export_jsonl(pairs: list[Pair], path: str | Path, rating_repeat: int = 1) -> int:
    rows = training_rows(pairs, rating_repeat)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)


def to_dataset(pairs: list[Pair], rating_repeat: int = 1):
    import datasets

    rows = training_rows(pairs, rating_repeat)
    if not rows:
        raise BadRequest("there are no preference pairs to train on")
    return datasets.Dataset.from_list(rows)


def export_datasets(pairs: list[Pair], folder: str | Path, rating_repeat: int = 1) -> int:
    """A folder that ``datasets.load_from_disk`` opens."""
    import datasets

    datasets.disable_progress_bars()
    ds = to_dataset(pairs, rating_repeat)
    ds.save_to_disk(str(folder))
    return len(ds)
