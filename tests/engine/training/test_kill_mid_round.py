"""kill -9 of the REAL engine process while a DPO round trains (a tiny llama,
real TRL steps, checkpoints every 2 steps), then a fresh engine on the same
data directory: the round reads as failed with the reason, resumes from its
last complete checkpoint through ``round.start {resume}``, and finishes; no
half-written adapter or checkpoint is ever listed; the store passes
PRAGMA integrity_check after the kill and at the end."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from engine.client import EngineProcess
from engine.store import Store
from engine.training.callbacks import good_checkpoints

STEPS, SAVE_EVERY, KILL_AFTER = 8, 2, 3


def _engine(data_dir: Path, cache: Path) -> EngineProcess:
    eng = EngineProcess(env={"HAL_STUDIO_DATA": str(data_dir), "HAL_STUDIO_DB": str(data_dir / "studio.sqlite3"),
                             "HAL_STUDIO_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    assert eng.request("hello", timeout=60).type == "result"
    return eng


def _loss_steps(reply) -> list[int]:
    return [m.content["step"] for _, m in reply.events if m.type == "metric" and m.content["name"] == "loss"]


def _integrity(db: Path) -> None:
    store = Store(db)
    try:
        assert store.integrity_ok()
    finally:
        store.close()


def _wait_for_the_round_child_to_die(data_dir, timeout_s: float = 60.0) -> None:
    """The round runs in a child process that the kernel kills when the engine dies
    (PR_SET_PDEATHSIG); on a loaded machine that takes a moment. Until then the round
    lock is held and the round still reads as running."""
    import json as _json

    try:
        pid = int(_json.loads((data_dir / "round.lock").read_text() or "{}").get("pid") or 0)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout_s
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:  # reap it if it is ours (it is not: its parent was the engine)
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    assert not pid or time.monotonic() < deadline, f"the round's child process {pid} outlived the engine"


@pytest.mark.timeout(300)
def test_kill_9_mid_training_step_then_a_fresh_engine_resumes_from_the_last_checkpoint(
        tiny_model_dir, tiny_gguf, data_dir, tmp_path):
    data_dir.mkdir(parents=True, exist_ok=True)
    db = data_dir / "studio.sqlite3"
    config = {"model": str(tiny_model_dir), "base_gguf": str(tiny_gguf), "threads": 1, "max_steps": STEPS,
              "save_steps": SAVE_EVERY, "verdict": False}
    eng = _engine(data_dir, tmp_path / "cache")
    try:
        first = eng.send("round.start", {"kind": "dpo", "preset": "smoke", "config": config})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not first.done.is_set():
            if max(_loss_steps(first), default=0) >= KILL_AFTER:
                break
            time.sleep(0.005)
        assert not first.done.is_set(), f"the round ended before the kill: {first.final and first.final.content}"
        assert max(_loss_steps(first), default=0) >= KILL_AFTER, "training never reached the kill point"
        os.kill(eng.pid, signal.SIGKILL)  # the next step is running
        eng.proc.wait(30)
        assert eng.proc.returncode == -signal.SIGKILL
    finally:
        eng.close()
    killed_at = max(_loss_steps(first))
    assert killed_at < STEPS
    _wait_for_the_round_child_to_die(data_dir)
    _integrity(db)

    eng = _engine(data_dir, tmp_path / "cache")
    try:
        rounds = eng.request("round.list", {"limit": 5}, timeout=60).content["rounds"]
        assert len(rounds) == 1
        row = rounds[0]
        assert row["status"] == "failed" and "stopped while this round ran" in row["error"]
        good = good_checkpoints(row["checkpoint_dir"])
        assert good, "no complete checkpoint was written before the kill"
        last_good = int(good[-1].name.split("-")[1])
        assert last_good % SAVE_EVERY == 0 and SAVE_EVERY <= last_good < STEPS
        assert eng.request("adapter.list", timeout=60).content["adapters"] == []  # nothing half-written listed

        resumed = eng.send("round.start", {"kind": "dpo", "config": {"resume": row["id"]}})
        assert resumed.done.wait(240), "the resumed round did not finish"
        final = resumed.final
        assert final.type == "result", final.content
        assert final.content["round_id"] == row["id"] and final.content["steps"] == STEPS
        assert final.content["metrics"]["resumed_from"].endswith(f"checkpoint-{last_good}")
        assert min(_loss_steps(resumed)) == last_good + 1  # training went on, not from step 1

        done = eng.request("round.get", {"round_id": row["id"]}, timeout=60).content["round"]
        assert done["status"] == "done" and done["error"] is None
        adapters = eng.request("adapter.list", timeout=60).content["adapters"]
        assert [a["id"] for a in adapters] == [final.content["adapter"]]
        folder = Path(adapters[0]["peft_path"])
        assert adapters[0]["exists"] and (folder / "adapter_model.safetensors").is_file()
        assert (folder / "hal_adapter.json").is_file()
        assert not list(folder.parent.glob(".tmp-*"))
    finally:
        assert eng.close() == 0
    _integrity(db)
    assert not (data_dir / "round.lock").exists()
