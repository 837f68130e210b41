"""The bridge from a TRL trainer to a job's state: progress, metrics, cancel.

Cancel is honoured at the next step end: the callback asks the trainer to
save a checkpoint there and stop, so the round can resume from that step.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

# Metrics worth streaming (TRL's names); others still land in the round's row.
STREAMED = ("loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected",
            "reward", "reward_std", "kl", "accuracy", "learning_rate", "grad_norm", "entropy", "anchor_nll")


class JobCallback(TrainerCallback):
    """Streams a trainer's life to ``state`` (a JobState) and stops on cancel."""

    def __init__(self, state, phase: str = "training", offset: float = 0.0, span: float = 1.0,
                 total_units: float = 1.0, stream: tuple = STREAMED):
        self.state = state
        self.phase = phase
        self.offset, self.span, self.total_units = offset, span, total_units
        self.stream = stream
        self.cancelled = False
        self.last_logs: dict = {}
        self.history: list[dict] = []
        self._t_first: float | None = None
        self._step_first = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._t_first = time.monotonic()
        self._step_first = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        total = max(1, state.max_steps)
        done = self.offset + self.span * state.global_step / total
        self.state.progress(done, self.total_units, f"{self.phase}: step {state.global_step}/{total}")
        if self.state.cancelled():
            self.cancelled = True
            control.should_save = True  # a checkpoint at this step end, then stop
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        step = int(state.global_step)
        clean = {k: float(v) for k, v in logs.items()
                 if isinstance(v, (int, float)) and math.isfinite(float(v))}
        self.history.append({"step": step, **clean})
        if "train_runtime" not in clean:
            self.last_logs = clean
        for name in self.stream:
            if name in clean:
                self.state.metric(name, clean[name], step)
        if self._t_first is not None and step > self._step_first:
            rate = (step - self._step_first) / max(1e-9, time.monotonic() - self._t_first)
            self.state.metric("steps_per_s", rate, step)


# -- checkpoints -------------------------------------------------------------
def good_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoints the trainer finished writing (trainer_state.json comes last), oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for p in folder.glob("checkpoint-*"):
        try:
            step = int(p.name.split("-")[-1])
        except ValueError:
            continue
        if (p / "trainer_state.json").is_file() and any(p.glob("*.safetensors")):
            out.append((step, p))
    return [p for _, p in sorted(out)]


def drop_partial_checkpoints(folder: str | Path) -> list[str]:
    """Remove checkpoint folders cut short (a crash or a full disk mid-save)."""
    folder = Path(folder)
    good = set(good_checkpoints(folder))
    removed = []
    for p in folder.glob("checkpoint-*") if folder.is_dir() else []:
        if p not in good:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed


def last_checkpoint(folder: str | Path) -> str | None:
    good = good_checkpoints(folder)
    return str(good[-1]) if good else None
