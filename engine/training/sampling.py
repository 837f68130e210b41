"""Sampling replies from the policy (base + current adapter) for pairs and verdicts.

Two samplers behind one call, ``generate(prompts, seeds, adapter) -> texts``:
llama.cpp for speed (the adapter as GGUF LoRA) and a batched transformers one
that works on any model in memory, tiny test models included.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from engine.models.template_limits import chat_prompt

Cancelled = Callable[[], bool]


@dataclass
class SampleSettings:
    temperature: float = 0.9
    top_p: float = 0.95
    max_tokens: int = 64
    top_k: int = 0  # 0 = off; these three as in engine.models.base.Sampling (the chat samplers)
    min_p: float = 0.0
    repeat_penalty: float = 1.0


class Sampler(Protocol):
    name: str

    def generate(self, prompts: list[list[dict]], seeds: list[int], adapter: str | None,
                 settings: SampleSettings, cancelled: Cancelled = lambda: False,
                 on_done: Callable[[int], None] = lambda n: None) -> list[str]:
        """One reply per (prompt, seed); ``adapter`` None means the base."""


class HFSampler:
    """Batched sampling from a transformers model; ``adapter`` is a PEFT adapter
    name already loaded on a PeftModel ("default" for the one being trained)."""

    name = "transformers"

    def __init__(self, model, tokenizer, batch_size: int = 8):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    def _context(self, adapter: str | None):
        import contextlib

        peft = hasattr(self.model, "disable_adapter")
        if peft and adapter is None:
            return self.model.disable_adapter()
        if peft and adapter:
            self.model.set_adapter(adapter)
        return contextlib.nullcontext()

    def generate(self, prompts, seeds, adapter, settings, cancelled=lambda: False, on_done=lambda n: None):
        import torch

        tok = self.tokenizer
        side, tok.padding_side = tok.padding_side, "left"
        was_training = self.model.training
        self.model.eval()
        texts: list[str] = []
        try:
            order = list(range(len(prompts)))
            for start in range(0, len(order), self.batch_size):
                if cancelled():
                    break
                idx = order[start:start + self.batch_size]
                rendered = [chat_prompt(tok, prompts[i]) for i in idx]
                enc = tok(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
                torch.manual_seed(int(seeds[idx[0]]))  # a batch shares one seed stream
                with torch.inference_mode(), self._context(adapter):
                    out = self.model.generate(
                        **enc, do_sample=settings.temperature > 0, temperature=settings.temperature or None,
                        top_p=settings.top_p, max_new_tokens=settings.max_tokens,
                        **({"top_k": settings.top_k} if settings.top_k else {}),
                        **({"min_p": settings.min_p} if settings.min_p else {}),
                        **({"repetition_penalty": settings.repeat_penalty} if settings.repeat_penalty != 1.0 else {}),
                        pad_token_id=tok.pad_token_id)
                new = out[:, enc["input_ids"].shape[1]:]
                texts.extend(t.strip() for t in tok.batch_decode(new, skip_special_tokens=True))
                on_done(len(texts))
        finally:
            tok.padding_side = side
            if was_training:
                self.model.train()
        return texts


class LlamaSampler:
    """llama.cpp sampling (two sequences at a time); adapters are GGUF LoRA files."""

    name = "llamacpp"

    def __init__(self, gguf_path: str | Path, n_threads: int | None = None, parallel: int = 2):
        from engine.models.llamacpp import LlamaCppModel

        self.parallel = parallel
        self.model = LlamaCppModel(gguf_path, n_ctx_per_seq=1024, max_seqs=parallel, n_threads=n_threads,
                                   lane_per_seq=False)
        self._lock = threading.Lock()

    def generate(self, prompts, seeds, adapter, settings, cancelled=lambda: False, on_done=lambda n: None):
        from engine.models.base import Sampling

        done = [0]

        def one(i: int) -> str:
            if cancelled():
                return ""
            s = Sampling(temperature=settings.temperature, top_p=settings.top_p,
                         max_tokens=settings.max_tokens, seed=int(seeds[i]) & 0x7FFFFFFF,
                         top_k=settings.top_k, min_p=settings.min_p, repeat_penalty=settings.repeat_penalty)
            result = self.model.generate(prompts[i], s, adapter, lambda t: None, cancelled)
            with self._lock:
                done[0] += 1
                on_done(done[0])
            return result.text.strip()

        with ThreadPoolExecutor(self.parallel) as pool:
            return list(pool.map(one, range(len(prompts))))

    def close(self) -> None:
        self.model.close()


def gguf_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("engine.models.llamacpp") is not None
