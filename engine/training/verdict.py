"""The verdict after a round: does the new adapter sound more human than the base?

On held-out prompts both answer with the same seeds; we report the mean score
of each with a bootstrap 95% interval, the paired difference with its interval,
each trait's change, the change in reply length (the obvious confound), and a
drift canary: the perplexity of held-out human-like chat relative to the base.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import numpy as np

from engine.models.template_limits import chat_prompt
from engine.training.prompts import Prompt
from engine.training.reward import Reward
from engine.training.sampling import SampleSettings


def chat_settings(max_tokens: int):
    """The verdict's replies sample as a newcomer's chat does (engine.models.base.CHAT_DEFAULTS),
    so its looping share is the one a researcher would see in the Compare tab."""
    from engine.models.base import CHAT_DEFAULTS as C

    return SampleSettings(C["temperature"], C["top_p"], max_tokens, C["top_k"], C["min_p"], C["repeat_penalty"])


def bootstrap_ci(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the mean."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return [None, None]
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [round(float(lo), 4), round(float(hi), 4)]


def _mean(values) -> float:
    return round(float(np.mean(values)), 4) if len(values) else None


def _num(x: float):
    return round(x, 3) if math.isfinite(x) else None


def canary_perplexity(model, tokenizer, dialogues: list[list[dict]], adapter_on: bool, batch_size: int = 8,
                      progress: Callable[[int, int], None] = lambda d, t: None) -> float:
    """Perplexity of the last assistant turn of human-like chats (teacher-forced),
    over all their tokens; dialogues go through the model ``batch_size`` at a time."""
    import torch
    import torch.nn.functional as F

    ctx = contextlib.nullcontext() if adapter_on or not hasattr(model, "disable_adapter") \
        else model.disable_adapter()
    rows = []
    for msgs in dialogues:
        prefix = chat_prompt(tokenizer, msgs[:-1])
        p_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        ids = tokenizer(prefix + msgs[-1]["content"], add_special_tokens=False)["input_ids"]
        if len(ids) - len(p_ids) > 1:
            rows.append((ids, len(p_ids)))
    rows.sort(key=lambda r: len(r[0]))  # similar lengths together: less padding
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    nll, count, done = 0.0, 0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), ctx:
            for start in range(0, len(rows), batch_size):
                batch = rows[start:start + batch_size]
                width = max(len(ids) for ids, _ in batch)
                input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                labels = torch.full((len(batch), width), -100, dtype=torch.long)
                for i, (ids, n_prefix) in enumerate(batch):  # right padding: positions stay 0..n-1
                    input_ids[i, :len(ids)] = torch.tensor(ids)
                    mask[i, :len(ids)] = 1
                    labels[i, n_prefix:len(ids)] = torch.tensor(ids[n_prefix:])
                logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
                target = labels[:, 1:]
                nll += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                                             ignore_index=-100, reduction="sum"))
                count += int((target != -100).sum())
                done += len(batch)
                progress(done, len(rows))
    finally:
        if was_training:
            model.train()
    return math.exp(nll / count) if count else float("nan")


def run_verdict(prompts: list[Prompt], sampler, reward: Reward, base_adapter: str | None,
                new_adapter: str | None, n_seeds: int = 1, seed: int = 1234,
                settings: SampleSettings | None = None,
                perplexity: Callable[[bool], float] | None = None,
                cancelled: Callable[[], bool] = lambda: False,
                progress: Callable[[int, int], None] = lambda d, t: None,
                phase: Callable[[str], object] = lambda name: contextlib.nullcontext(),
                evaluator: Reward | None = None) -> dict:
    """Compare ``new_adapter`` with ``base_adapter`` (None = the bare base).

    ``reward`` is the judge the round trained on; ``evaluator`` another one that
    grades the same replies for the headline (``verdict_checks``). ``phase(name)``
    gives a context manager around each part ("verdict_sampling", "verdict_scoring",
    "canary"), so a round can time them and move its bar."""
    settings = settings or SampleSettings(temperature=0.7, top_p=0.9, max_tokens=64)
    flat = [(p, s) for p in prompts for s in range(n_seeds)]
    msgs = [p.as_messages() for p, _ in flat]
    seeds = [seed + s for _, s in flat]
    total = 2 * len(flat)
    with phase("verdict_sampling"):
        base_txt = sampler.generate(msgs, seeds, base_adapter, settings, cancelled,
                                    lambda n: progress(n, total))
        new_txt = sampler.generate(msgs, seeds, new_adapter, settings, cancelled,
                                   lambda n: progress(len(flat) + n, total))
    if cancelled() or len(new_txt) < len(flat):
        return {"cancelled": True}
    with phase("verdict_scoring"):
        jb = reward.judge_many(list(zip(msgs, base_txt)))
        jn = reward.judge_many(list(zip(msgs, new_txt)))
    sb_all, sn_all = [j.score for j in jb], [j.score for j in jn]
    sb = [x for x in sb_all if math.isfinite(x)]
    sn = [x for x in sn_all if math.isfinite(x)]
    diff = [b - a for a, b in zip(sb_all, sn_all) if math.isfinite(a) and math.isfinite(b)]
    traits: dict[str, float] = {}
    for tid in sorted({t for j in jb for t in j.traits}):
        a = [j.traits.get(tid) for j in jb]
        b = [j.traits.get(tid) for j in jn]
        both = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
        if both:
            traits[str(tid)] = round(float(np.mean([y - x for x, y in both])), 4)
    lb = [len(t.split()) for t in base_txt]
    ln = [len(t.split()) for t in new_txt]
    out = {
        "n_prompts": len(prompts), "n_seeds": n_seeds, "sampler": getattr(sampler, "name", None), "judge": reward.judge,
        "weights": reward.weights_ref,
        "base": {"mean": _mean(sb), "ci": bootstrap_ci(sb)},
        "aligned": {"mean": _mean(sn), "ci": bootstrap_ci(sn)},
        "delta": _mean(diff), "delta_ci": bootstrap_ci(diff),
        "traits_delta": traits,
        "unrated": {"base": len(sb_all) - len(sb), "aligned": len(sn_all) - len(sn)},
        "length_delta": round(float(np.mean(ln) - np.mean(lb)), 3) if flat else None,
        "length": {"base_words": _mean(lb), "aligned_words": _mean(ln)},
        "examples": [{"prompt": msgs[i][-1]["content"], "base": base_txt[i], "aligned": new_txt[i],
                      "base_score": _num(sb_all[i]), "aligned_score": _num(sn_all[i])}
                     for i in range(min(5, len(flat)))],
    }
    from engine.training.verdict_checks import evaluate_checks

    out.update(evaluate_checks(msgs, base_txt, new_txt, evaluator, bootstrap_ci))
    if perplexity is not None:
        with phase("canary"):
            out["canary"] = canary_figures(perplexity(False), perplexity(True))
    return out


def canary_figures(pb: float, pn: float) -> dict:
    """Base and aligned perplexity and the relative change (within 10% is the bar)."""
    change = pn / pb - 1 if pb and math.isfinite(pb) else float("nan")
    return {"base_ppl": round(pb, 4), "aligned_ppl": round(pn, 4),
            "change": round(change, 4), "within_10pct": bool(abs(change) <= 0.10),
            "worse_by_over_10pct": bool(change > 0.10)}
