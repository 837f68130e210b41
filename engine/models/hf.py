"""The transformers + PEFT backend: one base model in fp32, LoRA adapters
switched per call, and a streaming sampling loop of our own.

Torch's thread count is process-wide (``torch.set_num_threads``); this module
never sets it, the engine does once at start-up.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import inspect
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.errors import AdapterError, EngineError, ModelFileError, PromptTooLong
from engine.models import hf_adapters
from engine.models.base import GenerationResult, Sampling, StopMatcher, template_digest
from engine.models.hf_load import dequantized_dir, load_base
from engine.models.spec import check_adapter_path

# Strings that end a turn in common chat templates; used only when the
# tokenizer knows them as special tokens.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
               "<|end_of_text|>", "</s>", "<|eom_id|>")
_REPLACEMENT = "\ufffd"


def context_length(config, tokenizer=None) -> int:
    """How many positions the model can read (prompt plus reply)."""
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", 0)
    return limit if isinstance(limit, int) and 0 < limit < 10**7 else 2048


def candidates(logits, sampling: Sampling, recent: list[int] | None = None):
    """The tokens a draw may pick and their (unnormalised) probabilities, as
    ``(probs, ids)`` (``ids`` None: index = token id), in the order Sampling
    documents; the llama.cpp backend's sampler chain does the same steps:
    the repetition penalty over ``recent`` (the reply's tokens so far), then
    temperature, top-k, top-p (nucleus) and min-p. Not for temperature 0."""
    import torch

    logits = logits.float()
    if sampling.repeat_penalty != 1.0 and recent:
        ids = torch.tensor(sorted(set(recent[-sampling.repeat_last_n:])), dtype=torch.long)
        logits = logits.clone()
        seen = logits[ids]
        logits[ids] = torch.where(seen > 0, seen / sampling.repeat_penalty, seen * sampling.repeat_penalty)
    scaled = logits / sampling.temperature
    order = None  # candidates' token ids when not the whole vocabulary, most likely first
    if 0 < sampling.top_k < scaled.numel():
        scaled, order = torch.topk(scaled, sampling.top_k)
    probs = torch.softmax(scaled, dim=-1)
    if sampling.top_p < 1.0:
        if order is None:
            # The nucleus almost always lies in the top few hundred tokens: look
            # there first and sort the whole vocabulary only when it does not.
            sorted_probs, order = torch.topk(probs, min(256, probs.numel()))
            if float(sorted_probs.sum()) < sampling.top_p:
                sorted_probs, order = torch.sort(probs, descending=True)
        else:
            sorted_probs = probs  # top-k's candidates come sorted
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        probs = torch.where(before < sampling.top_p, sorted_probs, torch.zeros_like(sorted_probs))
    if sampling.min_p > 0.0:
        probs = torch.where(probs >= sampling.min_p * probs.max(), probs, torch.zeros_like(probs))
    return probs, order


def pick_token(logits, sampling: Sampling, generator, recent: list[int] | None = None) -> int:
    """Greedy at temperature 0 (after the repetition penalty), else a draw
    from ``generator`` among ``candidates``."""
    import torch

    if not bool(torch.isfinite(logits).all()):
        raise ModelFileError("The model computed NaN or infinite token scores, so no reply can be sampled; "
                             "its weights are probably damaged (NaN or overflowing values).", kind="model_invalid")
    if sampling.temperature <= 0 or sampling.top_p <= 0:
        if sampling.repeat_penalty != 1.0 and recent:
            penalised = Sampling(temperature=1.0, top_p=1.0, repeat_penalty=sampling.repeat_penalty,
                                 repeat_last_n=sampling.repeat_last_n)
            probs, _ = candidates(logits, penalised, recent)
            return int(torch.argmax(probs))
        return int(torch.argmax(logits))
    probs, order = candidates(logits, sampling, recent)
    choice = torch.multinomial(probs, 1, generator=generator)
    return int(order[choice]) if order is not None else int(choice)


class TextStream:
    """Turns a growing list of token ids into UTF-8-safe text increments.

    Decoding the whole completion each step and emitting only the new suffix
    keeps multi-byte characters split across tokens intact.
    """

    def __init__(self, tokenizer, lock: threading.Lock):
        self.tokenizer = tokenizer
        self.lock = lock
        self.emitted = ""

    def decode(self, ids: list[int]) -> str:
        with self.lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def step(self, ids: list[int], final: bool = False) -> str:
        """The text to emit now; a trailing replacement char waits for more bytes."""
        text = self.decode(ids)
        if not final:
            text = text.rstrip(_REPLACEMENT)
        if not text.startswith(self.emitted) or len(text) == len(self.emitted):
            return ""
        piece, self.emitted = text[len(self.emitted):], text
        return piece


@dataclass
class _Adapter:
    name: str
    path: str
    made_for: str


class HFModel:
    """A transformers base model (with its LoRA adapters) serving chat turns."""

    backend = "transformers"

    def __init__(self, path, source_kind: str = "hf"):
        self.path = Path(path)
        self.source_kind = source_kind
        self._model, self.tokenizer = load_base(self.path, source_kind)
        self._peft = None  # a PeftModel around self._model once an adapter is loaded
        self._adapters: dict[str, _Adapter] = {}  # resolved path -> adapter
        self._lock = threading.Lock()  # generation and adapter switching are model-global
        self._tok_lock = threading.Lock()  # the Rust tokenizer is not safe to share across threads
        self.n_ctx = context_length(self._model.config, self.tokenizer)
        self.n_params = sum(p.numel() for p in self._model.parameters())
        self.stop_ids = self._stop_ids()
        forward = inspect.signature(self._model.forward).parameters
        self._keep_last = {"logits_to_keep": 1} if "logits_to_keep" in forward else {}

    # ----------------------------------------------------------------- info
    def _stop_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (self.tokenizer.eos_token_id, getattr(self._model.generation_config, "eos_token_id", None),
                       getattr(self._model.config, "eos_token_id", None)):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, (list, tuple)):
                ids.update(i for i in source if isinstance(i, int))
        special = set(self.tokenizer.all_special_tokens)
        special.update(t.content for t in getattr(self.tokenizer, "added_tokens_decoder", {}).values()
                       if getattr(t, "special", False))
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[t] for t in END_OF_TURN if t in special and t in vocab)
        return ids

    def info(self) -> dict:
        model = self._model
        out = {
            "name": self.path.name,
            "backend": self.backend,
            "path": str(self.path),
            "n_ctx": self.n_ctx,
            "chat_template_digest": template_digest(self.tokenizer.chat_template),
            "n_params": self.n_params,
            "dtype": str(model.dtype).replace("torch.", "") if model is not None else None,
            "adapters": [a.path for a in self._adapters.values()],
        }
        if self.source_kind == "gguf":
            out["cache_path"] = str(dequantized_dir(self.path))
        return out

    # ------------------------------------------------------------- adapters
    def check_adapter(self, adapter: str) -> None:
        with self._lock:
            self._ensure_adapter(adapter)

    def _ensure_adapter(self, adapter: str) -> str:
        """The PEFT name of a loaded adapter, loading it first if needed (lock held)."""
        if self._model is None:
            raise EngineError("This model has been closed.")
        kind, path = check_adapter_path(adapter)
        key = str(path.resolve())
        if key in self._adapters:
            return self._adapters[key].name
        if kind != "peft":
            raise AdapterError("A GGUF LoRA file can only be served by the llama.cpp backend.")
        cfg = hf_adapters.check_fit(path, self._model)
        entry = _Adapter(hf_adapters.adapter_name(path), key, str(cfg.get("base_model_name_or_path") or ""))
        try:
            self._attach(entry)
        except Exception as exc:
            self._rebuild_adapters()
            raise AdapterError(f"{path.name} could not be loaded onto this base model: {exc}",
                               detail=type(exc).__name__) from None
        self._adapters[key] = entry
        return entry.name

    def _attach(self, entry: _Adapter) -> None:
        from peft import PeftModel

        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self._model, entry.path, adapter_name=entry.name,
                                                   is_trainable=False)
        else:
            self._peft.load_adapter(entry.path, adapter_name=entry.name, is_trainable=False)
        self._peft.eval()

    def _rebuild_adapters(self) -> None:
        """After a failed load: strip every adapter layer, then re-attach the
        adapters that were fine, so nothing half-built stays in the model."""
        kept = list(self._adapters.values())
        while True:
            hf_adapters.strip_adapter_layers(self._model)
            self._peft, self._adapters = None, {}
            for entry in kept:
                try:
                    self._attach(entry)
                except Exception as exc:  # its folder changed on disk since it was loaded
                    print(f"[hf] dropped adapter {entry.path}: {exc}", file=sys.stderr)
                    kept.remove(entry)
                    break
                self._adapters[entry.path] = entry
            else:
                return

    @contextlib.contextmanager
    def _using(self, adapter: str | None):
        """Route forward passes through ``adapter``, or through the bare base
        (lock held; entered outside inference mode so adapter weights load as
        ordinary tensors)."""
        if adapter:
            name = self._ensure_adapter(adapter)
            self._peft.set_adapter(name, inference_mode=True)
            yield
        elif self._peft is not None:
            with self._peft.disable_adapter():
                yield
        else:
            yield

    # ------------------------------------------------------------ prompting
    def encode(self, prompt) -> list[int]:
        """Token ids for chat messages (template plus generation prompt) or raw
        text (taken as is: it must carry its own special tokens)."""
        if isinstance(prompt, str):
            text = prompt
        else:
            if not self.tokenizer.chat_template:
                raise EngineError("This model has no chat template, so it cannot hold a conversation.",
                                  kind="model_invalid")
            from engine.models import plain_text
            from engine.models.template_limits import chat_prompt

            if plain_text.holds_special(prompt, self.special_texts()):
                # message text is plain text: only the template's markup may be special tokens
                ids: list[int] = []
                for text, is_content in plain_text.marked_segments(
                        lambda msgs: chat_prompt(self.tokenizer, msgs), prompt):
                    ids += self._tokenize(text, special=not is_content)
                return ids
            text = chat_prompt(self.tokenizer, prompt)
        return self._tokenize(text)

    def special_texts(self) -> list[str]:
        """The text of every special (control) token of the tokenizer."""
        found = set(self.tokenizer.all_special_tokens)
        found.update(t.content for t in getattr(self.tokenizer, "added_tokens_decoder", {}).values()
                     if getattr(t, "special", False))
        return sorted(t for t in found if t)

    def _tokenize(self, text: str, special: bool = True) -> list[int]:
        """Token ids of ``text``; with ``special`` False, special-token text is split into
        ordinary tokens instead of becoming the special token."""
        with self._tok_lock:
            return list(self.tokenizer(text, add_special_tokens=False,
                                       split_special_tokens=not special)["input_ids"])

    def _check_length(self, n_prompt: int) -> None:
        if n_prompt + 1 > self.n_ctx:
            raise PromptTooLong(
                f"The conversation is {n_prompt} tokens long, but this model reads at most "
                f"{self.n_ctx} tokens including its reply. Start a new conversation or shorten it.",
                detail=f"prompt_tokens={n_prompt} n_ctx={self.n_ctx}")

    def _acquire(self, cancelled) -> bool:
        """Wait for the model, giving up if the caller cancels meanwhile."""
        while not self._lock.acquire(timeout=0.05):
            if cancelled():
                return False
        return True

    # ----------------------------------------------------------- generation
    def generate(self, messages, sampling: Sampling, adapter, on_token, cancelled) -> GenerationResult:
        """Stream one reply; calls from several threads take turns on this model.

        The end-of-turn token is not part of the text nor counted in
        completion_tokens; ttft_s runs from this call (queueing included).
        """
        import torch

        started = time.perf_counter()
        ids = self.encode(messages)
        self._check_length(len(ids))
        extra = {"adapter": adapter, "seed": sampling.seed}
        if not self._acquire(cancelled):
            return GenerationResult("", "cancelled", len(ids), 0, 0.0, time.perf_counter() - started, extra)
        try:
            if self._model is None:
                raise EngineError("This model has been closed.")
            generator = torch.Generator().manual_seed(sampling.seed)
            budget = min(sampling.max_tokens, self.n_ctx - len(ids))
            stream = TextStream(self.tokenizer, self._tok_lock)
            stopper = StopMatcher(sampling.stop)
            parts: list[str] = []

            def emit(text: str) -> None:
                if text:
                    parts.append(text)
                    on_token(text)

            out_ids: list[int] = []
            finish, ttft = "length", 0.0
            with self._using(adapter), torch.inference_mode():
                cache = None
                step_input = torch.tensor([ids], dtype=torch.long)
                for _ in range(budget):
                    if cancelled():
                        finish = "cancelled"
                        break
                    out = self._model(input_ids=step_input, past_key_values=cache, use_cache=True,
                                      **self._keep_last)
                    cache = out.past_key_values
                    token = pick_token(out.logits[0, -1], sampling, generator, out_ids)
                    if not out_ids and not ttft:
                        ttft = time.perf_counter() - started
                    if token in self.stop_ids:
                        finish = "stop"
                        break
                    out_ids.append(token)
                    emit(stopper.feed(stream.step(out_ids)))
                    if stopper.stopped:  # a stop string: the reply ends before it
                        finish = "stop"
                        break
                    step_input = torch.tensor([[token]], dtype=torch.long)
                if not stopper.stopped:
                    emit(stopper.feed(stream.step(out_ids, final=True)))
                    emit(stopper.flush())
        finally:
            self._lock.release()
        text = "".join(parts) if sampling.stop else stream.decode(out_ids)
        return GenerationResult(text, finish, len(ids), len(out_ids), ttft,
                                time.perf_counter() - started, extra)

    # -------------------------------------------------------------- scoring
    def next_token_logprobs(self, prompt, candidates: list[str], adapter: str | None = None) -> dict[str, float]:
        """Log-probability of each candidate string following ``prompt`` (chat
        messages or raw text), e.g. a judge's "1".."5"."""
        return self.suffix_logprobs(prompt, [""], candidates, adapter)[0]

    def suffix_logprobs(self, prefix, suffixes: list[str], candidates: list[str],
                        adapter: str | None = None) -> list[dict[str, float]]:
        """For each suffix, log P(candidate | prefix + suffix), computing the
        shared prefix once and scoring each suffix from a copy of its KV cache.

        Suffix and candidate text is tokenized on its own, so cut at a space
        or newline where the tokenizer would not merge across the cut. A
        candidate of several tokens gets the sum of their log-probabilities.
        """
        import torch

        prefix_ids = self.encode(prefix)
        suffix_ids = [self._tokenize(s) if s else [] for s in suffixes]
        cand_ids = [self._tokenize(c) for c in candidates]
        if not prefix_ids or any(not c for c in cand_ids):
            raise EngineError("The prefix and every candidate must hold at least one token.", kind="bad_request")
        longest = max(len(s) for s in suffix_ids) + max(len(c) for c in cand_ids)
        self._check_length(len(prefix_ids) + longest - 1)
        results = []
        with self._lock, self._using(adapter), torch.inference_mode():
            if self._model is None:
                raise EngineError("This model has been closed.")
            out = self._model(input_ids=torch.tensor([prefix_ids]), use_cache=True, **self._keep_last)
            base_cache, base_logits = out.past_key_values, out.logits[0, -1]
            for ids in suffix_ids:
                cache, logits = base_cache, base_logits
                if ids:
                    cache = copy.deepcopy(base_cache)
                    out = self._model(input_ids=torch.tensor([ids]), past_key_values=cache, use_cache=True,
                                      **self._keep_last)
                    cache, logits = out.past_key_values, out.logits[0, -1]
                first = torch.log_softmax(logits.float(), dim=-1)
                scores = {}
                for text, toks in zip(candidates, cand_ids):
                    total = float(first[toks[0]])
                    if len(toks) > 1:
                        out = self._model(input_ids=torch.tensor([toks[:-1]]),
                                          past_key_values=copy.deepcopy(cache), use_cache=True)
                        rest = torch.log_softmax(out.logits[0].float(), dim=-1)
                        total += float(sum(rest[i, t] for i, t in enumerate(toks[1:])))
                    scores[text] = total
                results.append(scores)
        return results

    # ---------------------------------------------------------------- close
    def close(self) -> None:
        with self._lock:
            self._peft = None
            self._model = None
            self._adapters = {}
        gc.collect()
