"""A round's phases: where its progress bar stands, and where its time went.

A round is a fixed sequence of phases (loading the base, sampling pairs,
training, writing the adapter, the verdict's replies, their scoring and the
drift canaries). ``plan`` estimates each phase's seconds from the settings;
each phase owns that share of the progress bar, so the bar and the engine's
time estimate (elapsed / done x what is left) keep moving through the
verdict and its canaries instead of sitting at 100% for a minute. ``Phases``
also measures the wall seconds each phase really took: the round reports them
as ``timings`` with the verdict's share of the whole.

The estimates are rough seconds for the bundled 135M model on two quiet
cores (measured on this machine, see the comments); only their ratios matter.
"""

from __future__ import annotations

import contextlib
import time

# Phases that make up the verdict (its share of the round is reported).
VERDICT_PHASES = ("verdict_sampling", "verdict_scoring", "canary", "canary_human_chat")

# Rough per-unit seconds (2 quiet cores, SmolLM2-135M).
LOAD_S = 4.0  # reading the cached fp32 copy of the base
DEQUANTIZE_S = 15.0  # a GGUF base's first load in a data folder (transformers dequantizes it)
LLAMA_TOKEN_S = 0.012  # one sampled token in llama.cpp (two sequences per decode)
HF_TOKEN_S = 0.05  # one sampled token in transformers (batched)
JUDGE_S = 0.02  # scoring one reply (the lexical judge)
TRAIN_TOKEN_S = 0.015  # one token of one row in a DPO step (policy + reference + backward)
ADAPTER_S = 3.0  # saving PEFT files and converting the GGUF LoRA
CANARY_DIALOGUE_S = 0.05  # one teacher-forced dialogue, one pass
CORPUS_S = 1.5  # parsing the Chit-Chat corpus once
FINISH_S = 0.5  # closing the round's row


def plan(cfg, base, n_train: int, n_heldout: int, samples_pairs: bool, kind: str = "dpo") -> dict[str, float]:
    """Estimated seconds per phase for a round with these settings (ordered as they run)."""
    from engine.training.policy import uses_llamacpp

    out: dict[str, float] = {"load": load_estimate(base)}
    token_s = LLAMA_TOKEN_S if uses_llamacpp(getattr(cfg, "sampler", "auto"), base) else HF_TOKEN_S
    if kind == "dpo":
        if samples_pairs:
            n = max(1, n_train) * cfg.k
            out["pairs"] = n * (cfg.sample_max_tokens * token_s + JUDGE_S)
        rows = cfg.batch_size * cfg.grad_accum * (1.25 if getattr(cfg, "anchor", "off") != "off" else 1.0)
        out["training"] = _steps(cfg, n_train) * rows * cfg.max_length * TRAIN_TOKEN_S
    else:  # online RL: the trainer samples its groups itself (transformers)
        rows = cfg.batch_size * cfg.grad_accum
        out["training"] = _steps(cfg, n_train) * rows * (cfg.max_completion_length * HF_TOKEN_S
                                                         + cfg.max_length * TRAIN_TOKEN_S / 2)
    out["adapter"] = ADAPTER_S
    if cfg.verdict:
        out.update(verdict_estimate(cfg, n_heldout, human_chat=True))
    out["finish"] = FINISH_S
    return out


def load_estimate(base) -> float:
    """Loading the base into transformers (a GGUF's first load in a data folder dequantizes it)."""
    seconds = LOAD_S
    if base.kind == "gguf":
        from engine.models.hf_load import dequantized_dir, is_cached

        if not is_cached(dequantized_dir(base.path)):
            seconds += DEQUANTIZE_S
    return seconds


def verdict_estimate(cfg, n_heldout: int, human_chat: bool) -> dict[str, float]:
    """The verdict's phases: replies (llama.cpp), their scores, and the drift canaries."""
    n = max(1, n_heldout) * cfg.verdict_seeds
    out = {"verdict_sampling": 2 * n * cfg.verdict_max_tokens * LLAMA_TOKEN_S + 1.0,
           "verdict_scoring": 2 * n * JUDGE_S}
    if cfg.canary:
        from engine.training import prompts as prompt_sets

        n_own = len(prompt_sets.canary_dialogues())
        limit = getattr(cfg, "canary_dialogues", 0) or 0
        out["canary"] = 2 * (min(n_own, limit) if limit else n_own) * CANARY_DIALOGUE_S
        if human_chat:
            out["canary_human_chat"] = CORPUS_S + 2 * (limit or 60) * CANARY_DIALOGUE_S
    return out


def _steps(cfg, n_rows: int) -> float:
    if cfg.max_steps > 0:
        return float(cfg.max_steps)
    per_epoch = max(1, n_rows) / max(1, cfg.batch_size * cfg.grad_accum)
    return max(1.0, per_epoch * cfg.epochs)


class Phases:
    """Progress in the share each phase owns, and the wall seconds each took."""

    def __init__(self, state, estimate: dict[str, float], units: float = 100.0):
        self.state, self.units = state, units
        total = sum(estimate.values()) or 1.0
        self.offset: dict[str, float] = {}
        self.span: dict[str, float] = {}
        at = 0.0
        for name, seconds in estimate.items():  # each phase starts exactly where the last one ends
            self.offset[name] = at
            self.span[name] = units * seconds / total
            at = self.offset[name] + self.span[name]
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # CPU seconds of the whole process (all threads) per phase
        self._done = 0.0
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()

    def at(self, name: str, fraction: float = 0.0) -> float:
        """Progress units at ``fraction`` (0..1) of phase ``name``; a phase the plan left out
        stays where the bar already is."""
        if name not in self.offset:
            return self._done
        here = self.offset[name] + self.span[name] * min(1.0, max(0.0, fraction))
        self._done = max(self._done, min(self.units, here))
        return self._done

    def progress(self, name: str, fraction: float, message: str) -> None:
        self.state.progress(self.at(name, fraction), self.units, message)

    @contextlib.contextmanager
    def phase(self, name: str, message: str | None = None):
        """Time the block as ``name`` (adding up if it runs twice) and move the bar to its start."""
        if message is not None:
            self.state.progress(self.at(name), self.units, message, force=True)
        t, cpu = time.perf_counter(), time.process_time()
        try:
            yield self
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def timings(self) -> dict:
        """{"phases": {name: seconds}, "cpu_phases": {name: CPU seconds}, "total_s", "cpu_s",
        "other_s", "verdict_s", "verdict_share"}. CPU seconds tell what a phase costs on a
        quiet machine when a shared one stretches its wall time."""
        total = self.elapsed()
        phases = {k: round(v, 2) for k, v in self.seconds.items()}
        verdict = sum(self.seconds.get(k, 0.0) for k in VERDICT_PHASES)
        return {"phases": phases, "cpu_phases": {k: round(v, 2) for k, v in self.cpu.items()},
                "total_s": round(total, 2), "cpu_s": round(time.process_time() - self.cpu0, 2),
                "other_s": round(max(0.0, total - sum(self.seconds.values())), 2),
                "verdict_s": round(verdict, 2),
                "verdict_share": round(verdict / total, 4) if total > 0 else None}
