"""Cancel saves a checkpoint at the step end; the round resumes from it; a full
disk stops cleanly with the last good checkpoint kept; one round at a time."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from engine.jobs import RecordingState
from engine.training import dpo, rounds
from engine.training.callbacks import good_checkpoints


class CancelAfter(RecordingState):
    """Cancels once the trainer reports ``n`` steps done."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def progress(self, done, total, message="", force=False):
        super().progress(done, total, message, force)
        if message.startswith("DPO: step ") and int(message.split()[2].split("/")[0]) >= self.n:
            self.cancel()


def cfg(tiny_model_dir, tiny_gguf, **over):
    return dpo.make_config("smoke", {"model": str(tiny_model_dir), "base_gguf": str(tiny_gguf), "threads": 1,
                                     "max_steps": 4, "save_steps": 100, "verdict": False, **over})


def test_cancelled_round_resumes_from_its_checkpoint(tiny_model_dir, tiny_gguf, fake_reward, store):
    out = dpo.run(cfg(tiny_model_dir, tiny_gguf), CancelAfter(2), store)
    assert out["cancelled"] and out["steps"] == 2
    row = rounds.get_round(store, out["round_id"])
    assert row["status"] == "cancelled"
    ckpts = good_checkpoints(row["checkpoint_dir"])
    assert [c.name for c in ckpts] == ["checkpoint-2"]  # saved at the cancelling step end
    assert not store.db["adapters"].count
    state = RecordingState()
    done = dpo.run(dpo.make_config("smoke", {"resume": out["round_id"]}), state, store)
    assert done["round_id"] == out["round_id"] and done["steps"] == 4
    assert done["metrics"]["resumed_from"].endswith("checkpoint-2")
    steps = [c["step"] for c in state.of_type("metric") if c["name"] == "loss"]
    assert steps and min(steps) == 3  # training went on from step 3, not from the start
    assert rounds.get_round(store, out["round_id"])["status"] == "done"
    assert store.db["pairs"].count == rounds.get_round(store, out["round_id"])["lineage"]["n_pairs"]


def test_disk_full_while_checkpointing_keeps_last_good(tiny_model_dir, tiny_gguf, fake_reward, store,
                                                       monkeypatch):
    from transformers import Trainer

    real = Trainer._save_checkpoint
    calls = []

    def flaky(self, model, trial):
        calls.append(self.state.global_step)
        if len(calls) == 2:
            out = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            out.mkdir(parents=True)
            (out / "adapter_model.safetensors").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, model, trial)

    monkeypatch.setattr(Trainer, "_save_checkpoint", flaky)
    with pytest.raises(OSError):
        dpo.run(cfg(tiny_model_dir, tiny_gguf, save_steps=1), RecordingState(), store)
    row = store.db["rounds"].rows_where().__next__()
    assert row["status"] == "failed" and "disk filled" in row["error"] and "checkpoint-1" in row["error"]
    assert [c.name for c in good_checkpoints(row["checkpoint_dir"])] == ["checkpoint-1"]
    assert not (Path(row["checkpoint_dir"]) / "checkpoint-2").exists()
    assert not store.db["adapters"].count


def test_one_round_at_a_time(data_dir):
    with rounds.exclusive("first"):
        with pytest.raises(rounds.RoundBusy, match="Another round"):
            with rounds.exclusive("second"):
                pass
    with rounds.exclusive("third"):  # released
        pass


def test_adapter_is_listed_only_when_complete(store, monkeypatch, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)),
                           LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))

    class Broken:
        def save_pretrained(self, path):
            model.save_pretrained(path)
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        rounds.write_adapter(store, Broken(), "r1", "tiny", None, {})
    from engine import paths

    assert list(paths.adapters_dir().iterdir()) == [] and store.db["adapters"].count == 0
    row = rounds.write_adapter(store, model, "r1", "tiny", None, {})
    assert Path(row["peft_path"]).is_dir() and rounds.list_adapters(store)[0]["id"] == row["id"]


def test_crashed_round_resumes_from_its_last_checkpoint(tiny_model_dir, tiny_gguf, fake_reward, store,
                                                         monkeypatch):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise RuntimeError("native crash stand-in")

    from trl import DPOTrainer

    real_init = DPOTrainer.__init__

    def init(self, *a, callbacks=None, **kw):
        real_init(self, *a, callbacks=[*(callbacks or []), Crash()], **kw)

    monkeypatch.setattr(DPOTrainer, "__init__", init)
    with pytest.raises(RuntimeError):
        dpo.run(cfg(tiny_model_dir, tiny_gguf, save_steps=2), RecordingState(), store)
    row = next(iter(rounds.list_rounds(store)))
    assert row["status"] == "failed" and "crash stand-in" in row["error"]
    monkeypatch.setattr(DPOTrainer, "__init__", real_init)
    done = dpo.run(dpo.make_config("smoke", {"resume": row["id"]}), RecordingState(), store)
    assert done["steps"] == 4 and done["metrics"]["resumed_from"].endswith("checkpoint-2")
