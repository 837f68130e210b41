"""Machinery every trainer-based round shares: TrainingArguments for a CPU box,
running a TRL trainer with cancel/resume/disk-full handling, and finishing a
round (adapter written atomically, verdict, the row updated)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from engine.training.callbacks import JobCallback, drop_partial_checkpoints, last_checkpoint
from engine.training.config import opt


@dataclass
class TrainSettings:
    """Optimiser and schedule fields shared by the trainer rounds."""

    learning_rate: float = opt(5e-5, "optimiser learning rate", 1e-8, 1e-1)
    epochs: float = opt(1.0, "passes over the pairs (ignored when max_steps > 0)", 0.01, 100)
    max_steps: int = opt(0, "optimiser steps (0 = set by epochs)", 0, 1_000_000)
    batch_size: int = opt(4, "pairs per step", 1, 512)
    grad_accum: int = opt(1, "gradient accumulation steps", 1, 512)
    max_length: int = opt(256, "longest tokenised prompt + reply kept", 16, 32768)
    warmup_ratio: float = opt(0.0, "share of steps with a rising learning rate", 0.0, 0.99)
    save_steps: int = opt(10, "checkpoint every this many steps (and on cancel)", 1, 1_000_000)
    seed: int = opt(0, "seed for sampling, shuffling and LoRA initialisation", 0, 2**31 - 1)
    threads: int = opt(0, "CPU threads for torch (0 = all cores, or one when the machine is busy)", 0, 256)


def training_kwargs(cfg, **extra) -> dict:
    """The trainer settings a round uses, as plain JSON values (no output folder, no
    device): what ``training_args`` builds from, and what an exported round carries."""
    kwargs = dict(
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs, max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
        warmup_steps=float(cfg.warmup_ratio), logging_steps=1, save_strategy="steps",
        save_steps=cfg.save_steps, save_total_limit=2, report_to="none", seed=cfg.seed,
        bf16=False, fp16=False, activation_checkpointing=False, disable_tqdm=True,
        dataloader_num_workers=0, remove_unused_columns=False)
    kwargs.update(extra)
    return kwargs


def training_args(cls, cfg, output_dir: str, **extra):
    """A TRL config for CPU: fp32, no gradient checkpointing, quiet, log every step."""
    import torch

    return cls(output_dir=output_dir, use_cpu=not torch.cuda.is_available(), **training_kwargs(cfg, **extra))


def train(trainer, record, callback: JobCallback, resume: bool) -> dict:
    """Run ``trainer`` (resuming from the last good checkpoint when asked).

    Returns {"steps", "seconds", "cancelled", "resumed_from"}; a full disk or a
    crash propagates after partial checkpoints are removed."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for noisy in (PrinterCallback, ProgressCallback):  # they print to stdout; we stream instead
        trainer.remove_callback(noisy)
    folder = record.checkpoint_dir
    drop_partial_checkpoints(folder)
    start_from = last_checkpoint(folder) if resume else None
    t0 = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=start_from)
    except BaseException:
        drop_partial_checkpoints(folder)
        raise
    return {"steps": int(trainer.state.global_step), "seconds": round(time.perf_counter() - t0, 2),
            "cancelled": callback.cancelled, "resumed_from": start_from}


def summary_metrics(callback: JobCallback, extra: dict | None = None) -> dict:
    """Last logged values and the run's totals (what the round row keeps)."""
    out = {k: round(v, 6) for k, v in callback.last_logs.items() if k not in ("epoch",)}
    for h in callback.history:
        if "train_runtime" in h:
            out["train_runtime"] = h["train_runtime"]
            out["train_steps_per_second"] = h.get("train_steps_per_second")
    out["history"] = callback.history[-200:]
    out.update(extra or {})
    return out


def _only_default(peft_model):
    """Save only the trained adapter (TRL adds a frozen 'ref' copy when continuing)."""
    class _Saver:
        def save_pretrained(self, path):
            peft_model.save_pretrained(path, selected_adapters=["default"])
    return _Saver()


def finish_policy_round(cfg, state, store, record, base, peft_model, tok, heldout, reward, outcome,
                        metrics, phases, kind, parent) -> dict:
    """Write the adapter (atomically, PEFT + GGUF LoRA), judge it, close the round row.

    The verdict samples on llama.cpp with the new GGUF LoRA wherever the base
    GGUF and the LoRA file exist (see ``policy.verdict_sampler``); each part is
    timed in ``phases`` and owns its share of the progress bar."""
    from engine.training import policy
    from engine.training import prompts as prompt_sets
    from engine.training.rounds import write_adapter
    from engine.training.verdict import canary_perplexity, chat_settings, run_verdict

    with phases.phase("adapter", "writing the adapter"):
        adapter_row = write_adapter(store, _only_default(peft_model), record.id, base.source, base.gguf,
                                    {**record.lineage, "round_kind": kind,
                                     "parent_adapter": parent and parent["id"]})
    record.set(adapter_id=adapter_row["id"])
    verdict = None
    limit = getattr(cfg, "canary_dialogues", 0) or None
    if cfg.verdict:
        phases.progress("verdict_sampling", 0.0, "verdict: loading the sampler")
        with phases.phase("verdict_sampling"):
            vs, new = policy.verdict_sampler(cfg.sampler, base, adapter_row["gguf_path"], peft_model, tok,
                                             cfg.sample_threads, state.log)

        def canary(on: bool) -> float:
            dialogues = prompt_sets.canary_dialogues()[:limit]
            return canary_perplexity(peft_model, tok, dialogues, on, progress=lambda d, t: phases.progress(
                "canary", (d + (t if on else 0)) / (2 * t),
                f"verdict: drift canary, {'new adapter' if on else 'base'} {d}/{t}"))

        try:
            from engine.training.reward import load_evaluator

            evaluator = load_evaluator(getattr(cfg, "evaluator_judge", "auto"),
                                       getattr(cfg, "evaluator_weights", "auto"), reward)
            verdict = run_verdict(
                heldout, vs, reward, None, new, cfg.verdict_seeds, 1234 + cfg.seed,
                chat_settings(cfg.verdict_max_tokens), canary if cfg.canary else None, state.cancelled,
                lambda d, t: phases.progress("verdict_sampling", d / t, f"verdict: replies {d}/{t}"),
                phase=lambda name: phases.phase(name, _VERDICT_MESSAGES.get(name)), evaluator=evaluator)
        finally:
            policy.close(vs)
        if verdict.get("cancelled"):
            verdict = None
        elif cfg.canary:  # a second canary: real human chat (Chit-Chat), held out from any anchor
            from engine.training.anchor import heldout_dialogues
            from engine.training.verdict import canary_figures

            with phases.phase("canary_human_chat", "verdict: drift canary on real human chat"):
                try:
                    human = heldout_dialogues(limit or 60)
                except Exception as exc:  # the corpus package missing: say so, keep the verdict
                    verdict["canary_human_chat"] = {"error": str(exc)}
                else:
                    def step(on):
                        return lambda d, t: phases.progress(
                            "canary_human_chat", (d + (t if on else 0)) / (2 * t),
                            f"verdict: human-chat canary, {'new adapter' if on else 'base'} {d}/{t}")

                    verdict["canary_human_chat"] = {
                        **canary_figures(canary_perplexity(peft_model, tok, human, False, progress=step(False)),
                                         canary_perplexity(peft_model, tok, human, True, progress=step(True))),
                        "n_dialogues": len(human), "source": "chitchat held-out chats"}
        if verdict is not None and cfg.canary:
            verdict["canary"]["n_dialogues"] = len(prompt_sets.canary_dialogues()[:limit])
    with phases.phase("finish", "saving the round"):
        timings = phases.timings()
        seconds = timings["total_s"]
        metrics["round_seconds"] = seconds
        metrics["timings"] = timings
        record.finish("done", None, metrics=metrics, verdict=verdict)
    state.progress(phases.units, phases.units, "done", force=True)
    return {"round_id": record.id, "adapter": adapter_row["id"], "adapter_path": adapter_row["peft_path"],
            "gguf_path": adapter_row["gguf_path"], "seconds": seconds, "steps": outcome["steps"],
            "timings": timings["phases"], "verdict_share": timings["verdict_share"],
            "timings_cpu": timings["cpu_phases"],
            "metrics": {k: v for k, v in metrics.items() if k != "history"}, "verdict": verdict}


_VERDICT_MESSAGES = {"verdict_sampling": "verdict: replies from the base and the new adapter",
                     "verdict_scoring": "verdict: scoring the replies",
                     "canary": "verdict: drift canary"}
