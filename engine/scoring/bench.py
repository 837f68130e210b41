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


def _best_rate(fn, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best if best > 0 else float("inf")


def bench_score(path: str | Path | None = None, repeat: int = 3) -> dict:
    from engine.scoring.judges import RatingCache, get_judge
    from engine.scoring.judges.distilled import DistilledJudge, fit_distilled, list_models

    path = Path(path) if path else shared_data_dir() / "turing_gpt5_train.csv"
    if not path.is_file():
        raise BadRequest(f"no data to time on: {path}", detail="pass --path or set HAL_SHARED_DATA")
    items = [d for d in load_any(path).dialogues if d.speaker_lines()]
    texts = [d.speaker_text() for d in items]
    n = len(items)
    baseline = _best_rate(lambda: [len(t.split()) for t in texts], n, repeat)
    report: dict = {"data": str(path), "n_replies": n, "unit": "one rated speaker's lines (a Turing side)",
                    "mean_words": sum(len(t.split()) for t in texts) / max(n, 1),
                    "baseline": {"what": "str.split word count", "replies_per_s": baseline}, "judges": {}}

    lexical = get_judge("lexical", cache=False)
    rate = _best_rate(lambda: lexical.rate_many(items), n, repeat)
    report["judges"]["lexical"] = {"judge": lexical.judge_id, "replies_per_s": rate, "vs_baseline": rate / baseline}

    if list_models():
        distilled = get_judge("distilled", cache=False)
        origin = "saved"
    else:
        rated = [d for d in items if d.ratings]
        if len(rated) < 20:
            distilled, origin = None, "none saved and the file has too few precomputed ratings to fit one"
        else:
            model, _ = fit_distilled(rated, [d.ratings for d in rated], folds=2, source="bench")
            distilled, origin = DistilledJudge(cache=False, model=model), "fitted in the bench (not saved)"
    if distilled is not None:
        rate = _best_rate(lambda: distilled.rate_many(items), n, repeat)
        report["judges"]["distilled"] = {"judge": distilled.judge_id, "model": origin, "replies_per_s": rate,
                                         "vs_baseline": rate / baseline}
    else:
        report["judges"]["distilled"] = {"skipped": origin}

    # The cache's own cost: a warm pass reads every rating back from SQLite.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cache = RatingCache(Path(tmp) / "bench.sqlite3")
        cached = get_judge("lexical", cache=cache)
        cached.rate_many(items)
        rate = _best_rate(lambda: cached.rate_many(items), n, repeat)
        cache.close()
    report["judges"]["lexical"]["cached_replies_per_s"] = rate
    report["judges"]["llm"] = {"skipped": "the llm judge is not available yet"}
    return report
