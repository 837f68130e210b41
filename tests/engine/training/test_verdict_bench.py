"""Verdict statistics, the verdict on fixed replies, and the training benchmark's shape."""

from __future__ import annotations

import numpy as np

from engine.training import prompts as PS
from engine.training.verdict import bootstrap_ci, run_verdict


def test_bootstrap_ci_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, big = rng.normal(1.0, 1.0, 20), rng.normal(1.0, 1.0, 2000)
    lo, hi = bootstrap_ci(small)
    assert lo < small.mean() < hi
    blo, bhi = bootstrap_ci(big)
    assert bhi - blo < hi - lo and blo < 1.0 < bhi


class TwoModels:
    name = "fixed"

    def generate(self, prompts, seeds, adapter, settings, cancelled=lambda: False, on_done=lambda n: None):
        text = "lol yeah" if adapter == "new" else "Hello! As an AI I am glad to help you with that today."
        return [text] * len(prompts)


def test_verdict_reports_difference_traits_length_and_canary(fake_reward):
    held = PS.load().split("heldout")[:6]
    v = run_verdict(held, TwoModels(), fake_reward, None, "new", n_seeds=2,
                    perplexity=lambda on: 10.5 if on else 10.0)
    assert v["delta"] > 0 and v["delta_ci"][0] > 0
    assert v["aligned"]["mean"] > v["base"]["mean"]
    assert v["length_delta"] < 0 and v["traits_delta"]["1"] > 0
    assert v["canary"]["change"] == 0.05 and v["canary"]["within_10pct"]
    assert v["n_prompts"] == 6 and v["n_seeds"] == 2


def test_bench_train_compares_plain_and_ours(tiny_model_dir):
    from engine.training import bench

    seen = []
    bench.PROBES.append(lambda phase: seen.append(phase) or ({"probe": "ok"} if phase == "stop" else None))
    try:
        out = bench.bench_train(str(tiny_model_dir), steps=1, batch=2, repeats=1, threads=1)
    finally:
        bench.PROBES.clear()
    assert out["plain_s_per_step"] > 0 and out["ours_s_per_step"] > 0 and out["ratio"] > 0
    assert out["plain_thread_s_per_step"] > 0 and out["overhead_ratio"] > 0
    assert 0 <= out["callback_ms_per_step"] < 1000 * out["ours_s_per_step"]
    assert seen == ["start", "stop"] and out["probe"] == "ok"
