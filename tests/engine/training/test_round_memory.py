"""A round through the REAL engine process gives its memory back: the round runs in a
child process that exits, so the idle engine's resident memory afterwards is close to
what it was before (issue: 4.9 GB kept after a default round). Cancel still reaches
the round, and a failure still names the round."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.client import EngineProcess

TARGET_RATIO = 1.5


def _engine(data_dir: Path, cache: Path, **env) -> EngineProcess:
    eng = EngineProcess(env={"HAL_STUDIO_DATA": str(data_dir), "HAL_STUDIO_DB": str(data_dir / "studio.sqlite3"),
                             "HAL_STUDIO_CACHE": str(cache), "HF_HUB_OFFLINE": "1", **env})
    assert eng.request("hello", timeout=60).type == "result"
    assert eng.request("round.kinds", timeout=120).type == "result"  # what the studio asks first
    return eng


@pytest.mark.timeout(600)
def test_engine_memory_after_a_round_is_close_to_before(tiny_model_dir, tiny_gguf, data_dir, tmp_path):
    data_dir.mkdir(parents=True, exist_ok=True)
    eng = _engine(data_dir, tmp_path / "cache")
    try:
        time.sleep(0.3)
        before = eng.rss_mb()
        config = {"model": str(tiny_model_dir), "base_gguf": str(tiny_gguf), "threads": 1, "judge": "surface",
                  "canary_dialogues": 2}
        reply = eng.send("round.start", {"kind": "dpo", "preset": "smoke", "config": config})
        assert reply.done.wait(480), "the round did not finish"
        assert reply.final.type == "result", reply.final.content
        out = reply.final.content
        assert out["steps"] == 2 and Path(out["adapter_path"]).is_dir() and out["verdict"]["canary"]
        kinds = {m.type for _, m in reply.events}
        assert {"progress", "metric"} <= kinds  # the child's events reach the client
        time.sleep(1.0)
        after = eng.rss_mb()
        assert after <= TARGET_RATIO * before, f"engine RSS {before:.0f} MB before the round, {after:.0f} MB after"
        rounds = eng.request("round.list", {"limit": 5}, timeout=60).content["rounds"]
        assert rounds[0]["status"] == "done" and rounds[0]["adapter_id"] == out["adapter"]
        # a failing round still names itself, so the studio can offer its resume
        bad = eng.request("round.start", {"kind": "dpo", "preset": "smoke",
                                          "config": {**config, "margin": 1e6, "verdict": False}}, timeout=300)
        assert bad.type == "error" and bad.content["kind"] == "no_pairs" and bad.content.get("round_id")
    finally:
        eng.close()


@pytest.mark.timeout(600)
def test_cancel_reaches_a_round_in_its_child_process(tiny_model_dir, tiny_gguf, data_dir, tmp_path):
    data_dir.mkdir(parents=True, exist_ok=True)
    eng = _engine(data_dir, tmp_path / "cache")
    try:
        config = {"model": str(tiny_model_dir), "base_gguf": str(tiny_gguf), "threads": 1, "judge": "surface",
                  "max_steps": 200, "save_steps": 1000, "verdict": False}
        reply = eng.send("round.start", {"kind": "dpo", "preset": "smoke", "config": config})
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not reply.done.is_set():
            if any(m.type == "metric" and m.content["name"] == "loss" for _, m in reply.events):
                break
            time.sleep(0.02)
        assert eng.request("cancel", {"target": reply.id}, timeout=30).content["found"]
        assert reply.done.wait(240)
        assert reply.final.type == "result" and reply.final.content.get("cancelled"), reply.final.content
        assert reply.final.content["steps"] < 200
    finally:
        eng.close()


@pytest.mark.timeout(600)
def test_bench_train_reports_the_engine_memory_ratio(tiny_model_dir):
    from engine.training.bench import bench_rss_round

    out = bench_rss_round(str(tiny_model_dir), "smoke", timeout_s=480)
    assert out["rss_round"]["ok"], out
    assert out["rss_before_round_mb"] > 0 and out["rss_after_round_mb"] > 0
    assert out["rss_after_round_ratio"] == pytest.approx(out["rss_after_round_mb"] / out["rss_before_round_mb"],
                                                         abs=0.01)
    assert out["rss_after_round_ratio"] <= TARGET_RATIO
