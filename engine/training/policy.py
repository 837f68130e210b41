"""The policy a round trains: the base model in transformers, a LoRA on top,
and the samplers that read from it (llama.cpp when the base is a GGUF file)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.training.sampling import HFSampler, LlamaSampler, gguf_available


@dataclass
class Base:
    source: str  # what the researcher named ("bundled", a .gguf, a folder)
    kind: str  # "gguf" | "hf"
    path: Path
    gguf: str | None  # the GGUF file llama.cpp and the GGUF LoRA writer use


def resolve(source: str, base_gguf: str = "") -> Base:
    from engine.models.spec import resolve_source

    kind, path = resolve_source(source)
    gguf = str(path) if kind == "gguf" else (base_gguf or None)
    return Base(source, kind, path, gguf)


def auto_threads(n: int) -> int:
    """0 means: every core on a quiet machine, one on a busy one. Measured here:
    with the load average above the core count, two spinning torch or llama.cpp
    threads ran 2-10x slower than one."""
    if n > 0:
        return n
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] > cores
    except OSError:
        busy = False
    return 1 if busy else cores


def set_threads(n: int) -> int:
    import torch

    n = auto_threads(n)
    torch.set_num_threads(n)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return n


def load(base: Base):
    """(model, tokenizer) in fp32, ready to take a LoRA."""
    from engine.models.hf_load import load_base

    model, tok = load_base(base.path, base.kind)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok


def lora_settings(cfg) -> dict:
    """The LoraConfig values of a round (an exported round carries the same)."""
    return dict(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                target_modules=list(cfg.lora_targets), bias="none", task_type="CAUSAL_LM")


def lora_config(cfg):
    from peft import LoraConfig

    return LoraConfig(**lora_settings(cfg))


def with_adapter(model, parent_peft: str | None, cfg):
    """A PeftModel: the parent adapter (trainable) to continue from, or a fresh LoRA."""
    from peft import PeftModel, get_peft_model

    if parent_peft:
        return PeftModel.from_pretrained(model, parent_peft, is_trainable=True)
    return get_peft_model(model, lora_config(cfg))


def uses_llamacpp(choice: str, base: Base) -> bool:
    """Whether ``pick_sampler`` samples on llama.cpp for this choice and base."""
    return choice == "llamacpp" or (choice == "auto" and base.kind == "gguf" and gguf_available())


def pick_sampler(choice: str, base: Base, model, tokenizer, threads: int = 1):
    """llama.cpp for speed when the base is a GGUF file, else transformers.

    One llama.cpp thread with two sequences per decode is the default: on a
    shared 2-core machine more threads spin-wait and run many times slower."""
    if uses_llamacpp(choice, base):
        return LlamaSampler(base.gguf, n_threads=auto_threads(threads))
    return HFSampler(model, tokenizer)


def verdict_sampler(choice: str, base: Base, adapter_gguf: str | None, model, tokenizer, threads: int = 0,
                    log=lambda text: None):
    """(sampler, adapter) for judging a new adapter against the base.

    llama.cpp with the adapter's GGUF LoRA wherever both the base GGUF and the
    LoRA file exist (unless transformers is asked for): the verdict then hears
    the model as chat serves it, and samples many times faster than
    transformers on a CPU. Otherwise transformers with the PEFT adapter
    ("default") loaded on ``model``."""
    if choice != "transformers" and base.gguf and adapter_gguf and gguf_available():
        try:
            return LlamaSampler(base.gguf, n_threads=auto_threads(threads)), adapter_gguf
        except Exception as exc:  # a GGUF llama.cpp cannot read: the verdict still runs
            log(f"llama.cpp cannot sample the verdict ({exc}); using transformers instead")
    return HFSampler(model, tokenizer), "default"


def close(sampler) -> None:
    if hasattr(sampler, "close"):
        sampler.close()
