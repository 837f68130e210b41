"""Replies per second of the local judges, beside a trivial pass for scale.

The machine may be busy with other work, so every judge is timed in the same
process as a baseline (a ``str.split`` word count over the same texts); the
ratio to the baseline is steadier than the raw rate.
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.errors import BadRequest
from engine.scoring import shared_data_dir
from engine.scoring.importers import load_any


def _rates(fns: dict, n: int, repeat: int) -> dict[str, dict]:
    """Time every function once per round, rounds interleaved so load drifts hit all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, repeat)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    out = {}
    for name, ts in times.items():
        ts = sorted(ts)
        out[name] = {"replies_per_s": n / ts[0] if ts[0] > 0 else float("inf"),
                     "median_replies_per_s": n / ts[len(ts) // 2] if ts[len(ts) // 2] > 0 else float("inf")}
    return out


def bench_llm(items: list, repeat: int = 3, model=None, n_threads: int | None = None,
              questionnaire="hal16") -> dict:
    """The llm judge (16-trait questionnaire by default): replies/s, and the cost of
    all traits of a reply against one trait, timed in paired interleaved rounds."""
    from engine.scoring.judges.llm import LLMJudge

    judge = LLMJudge(questionnaire=questionnaire, cache=False, model=model, n_threads=n_threads)
    try:
        one = [judge.questionnaire.trait_ids[0]]
        if repeat > 1:
            judge.rate_detailed(items[0], trait_ids=one)  # warm-up: the first decode pays for buffers
        ratios, t_all, t_one = [], [], []
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            for d in items:
                judge.rate_detailed(d)
            t1 = time.perf_counter()
            for d in items:
                judge.rate_detailed(d, trait_ids=one)
            t2 = time.perf_counter()
            t_all.append(t1 - t0)
            t_one.append(t2 - t1)
            ratios.append((t1 - t0) / (t2 - t1))
        ratios.sort()
        tokens = [len(judge.backend.model.tokenize(judge.prompts(d, one)[0])) for d in items] \
            if judge.backend.kind == "llamacpp" else []
        return {"judge": judge.judge_id, "questionnaire": judge.questionnaire.ref, "n_replies": len(items),
                "n_traits": len(judge.questionnaire.trait_ids), "rounds": max(1, repeat),
                "replies_per_s": len(items) / min(t_all), "one_trait_replies_per_s": len(items) / min(t_one),
                "all_vs_one_trait_cost": ratios[len(ratios) // 2],
                "all_vs_one_trait_cost_per_round": ratios,
                **({"mean_prompt_tokens": sum(tokens) / len(tokens)} if tokens else {})}
    finally:
        judge.close()


def bench_score(path: str | Path | None = None, repeat: int = 3, llm_n: int = 6, llm_model=None,
                llm_threads: int | None = None) -> dict:
    from engine.scoring.judges import RatingCache, get_judge
    from engine.scoring.judges.distilled import DistilledJudge, fit_distilled, list_models

    path = Path(path) if path else shared_data_dir() / "turing_gpt5_train.csv"
    if not path.is_file():
        raise BadRequest(f"no data to time on: {path}", detail="pass --path or set HAL_SHARED_DATA")
    items = [d for d in load_any(path).dialogues if d.speaker_lines()]
    texts = [d.speaker_text() for d in items]
    n = len(items)
    judges = {"lexical": get_judge("lexical", cache=False)}
    notes = {"lexical": {}}
    if list_models():
        judges["distilled"] = get_judge("distilled", cache=False)
        notes["distilled"] = {"model": "saved"}
    else:
        rated = [d for d in items if d.ratings]
        if len(rated) >= 20:
            model, _ = fit_distilled(rated, [d.ratings for d in rated], folds=2, source="bench")
            judges["distilled"] = DistilledJudge(cache=False, model=model)
            notes["distilled"] = {"model": "fitted in the bench (not saved)"}
    fns = {"baseline": lambda: [len(t.split()) for t in texts]}
    fns.update({name: (lambda j=j: j.rate_many(items)) for name, j in judges.items()})
    rates = _rates(fns, n, repeat)
    base = rates.pop("baseline")
    report: dict = {"data": str(path), "n_replies": n, "unit": "one rated speaker's lines (a Turing side)",
                    "mean_words": sum(len(t.split()) for t in texts) / max(n, 1), "rounds": repeat,
                    "baseline": {"what": "str.split word count", **base}, "judges": {}}
    for name, r in rates.items():
        report["judges"][name] = {"judge": judges[name].judge_id, **notes[name], **r,
                                  "vs_baseline": r["replies_per_s"] / base["replies_per_s"]}
    if "distilled" not in judges:
        report["judges"]["distilled"] = {"skipped": "none saved and too few precomputed ratings to fit one"}

    # The cache's own cost: a warm pass reads every rating back from SQLite.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cache = RatingCache(Path(tmp) / "bench.sqlite3")
        cached = get_judge("lexical", cache=cache)
        cached.rate_many(items)
        warm = _rates({"warm": lambda: cached.rate_many(items)}, n, repeat)["warm"]
        cache.close()
    report["judges"]["lexical"]["cached_replies_per_s"] = warm["replies_per_s"]
    if llm_n > 0:
        llm = bench_llm(items[:llm_n], repeat=repeat, model=llm_model, n_threads=llm_threads)
        report["judges"]["llm"] = llm
        report["llm_all_vs_one_trait_cost"] = llm["all_vs_one_trait_cost"]
        report["llm_all_vs_one_trait_target"] = 3.0
    else:
        report["judges"]["llm"] = {"skipped": "--llm-n 0"}
    return report
