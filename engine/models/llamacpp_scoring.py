"""Next-token log-probabilities of many prompts that share a long prefix, on llama.cpp.

A judge asks a model about one dialogue once per trait: the prompts differ only
in a short tail. Here the shared prefix is decoded once into sequence 0; then
either every tail is decoded after it in sequence 0 and removed again
(``llama_memory_seq_rm``), or, with ``forks``, several tails are decoded at once,
each in its own sequence forked from the prefix (``llama_memory_seq_cp``).
Only the logits at each tail's last token are read.

Forks use one KV stream per sequence: on this llama.cpp build a unified cache
shifts the logits of every sequence but the first in a multi-sequence batch
(by up to 0.7 nats on SmolLM2), while separate streams match a lone decode
exactly. This module borrows a ``LlamaCppModel``'s weights and tokenizer but
owns its context, so scoring never queues behind a chat generation.
"""

from __future__ import annotations

import os
import threading

import numpy as np
from llama_cpp import llama_cpp as ll

from engine.errors import EngineError, PromptTooLong

GGML_TYPE_F16 = 1


def default_threads() -> int:
    """The physical cores other processes leave idle (by the 1-minute load), 1 to 8.

    llama.cpp's threads wait for each other at every layer, so a thread whose
    core is busy elsewhere stalls the rest: on a 2-core machine under a load of
    6, one thread scored 2.7x faster than two.
    """
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except Exception:
        physical = None
    cores = max(1, min(physical or os.cpu_count() or 1, len(os.sched_getaffinity(0)), 8))
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


def model_pointer(model):
    """The native model handle of a LlamaCppModel (its attribute was renamed once)."""
    ptr = getattr(model, "model_ptr", None) or getattr(model, "_model", None)
    if not ptr:
        raise EngineError("The model has been unloaded.")
    return ptr


def common_prefix_len(seqs: list[list[int]]) -> int:
    """Length of the token prefix every sequence starts with."""
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs)
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs):
            return i
    return n


class PrefixScorer:
    """A scoring context on a loaded model: ``logprobs(prompts, candidates)``.

    ``n_ctx`` is the room for one prompt. ``forks=0`` decodes tails one after
    another in sequence 0 (least memory); ``forks=k`` decodes up to k tails per
    llama_decode, each in its own KV stream of ``n_ctx`` cells. Flash attention
    stays off so that results do not depend on how tokens were batched.
    """

    def __init__(self, model, n_ctx: int = 2048, n_batch: int = 512, forks: int = 0,
                 n_threads: int | None = None):
        self.model = model
        self.forks = max(0, int(forks))
        self.n_batch = int(n_batch)
        self.n_ctx = int(n_ctx)
        n_seq = self.forks + 1
        threads = int(n_threads or default_threads())
        params = ll.llama_context_default_params()
        params.n_ctx = self.n_ctx * n_seq
        params.n_batch = params.n_ubatch = max(self.n_batch, n_seq)
        params.n_seq_max = n_seq
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = False
        params.type_k = params.type_v = GGML_TYPE_F16
        params.flash_attn_type = 0
        params.no_perf = True
        self._ctx = ll.llama_init_from_model(model_pointer(model), params)
        if not self._ctx:
            raise EngineError(f"llama.cpp could not create a scoring context (n_ctx={params.n_ctx}).",
                              kind="model_invalid")
        self._mem = ll.llama_get_memory(self._ctx)
        self._batch = ll.llama_batch_init(self.n_batch, 0, 1)
        self._lock = threading.Lock()
        self.n_vocab = model.n_vocab
        self.stats = {"prefix_tokens": 0, "tail_tokens": 0, "decodes": 0}

    # ------------------------------------------------------------- decoding
    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, sequence, want logits) entries."""
        b = self._batch
        for i, (tok, pos, seq, want) in enumerate(entries):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = 1 if want else 0
        b.n_tokens = len(entries)
        rc = ll.llama_decode(self._ctx, b)
        self.stats["decodes"] += 1
        if rc != 0:
            raise EngineError(f"llama_decode failed with code {rc}"
                              + (" (no room left in the KV cache)" if rc == 1 else ""))

    def _fill(self, tokens: list[int], seq: int, start: int = 0) -> int | None:
        """Decode ``tokens`` into ``seq`` from position ``start`` in chunks; the
        batch index of the last token's logits, or None for no tokens."""
        last_index = None
        for at in range(0, len(tokens), self.n_batch):
            chunk = tokens[at:at + self.n_batch]
            final = at + len(chunk) == len(tokens)
            self._decode([(t, start + at + j, seq, final and j == len(chunk) - 1) for j, t in enumerate(chunk)])
            if final:
                last_index = len(chunk) - 1
        return last_index

    def _row(self, index: int, candidates: list[int]) -> np.ndarray:
        """log-softmax over the whole vocabulary at one output, for the candidates."""
        ptr = ll.llama_get_logits_ith(self._ctx, index)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)
        top = logits.max()
        lse = top + np.log(np.exp(logits - top).sum())
        return logits[candidates] - lse

    def _check(self, prompts: list[list[int]], candidates: list[int]) -> None:
        if not prompts or any(not p for p in prompts):
            raise EngineError("every prompt needs at least one token", kind="bad_request")
        longest = max(len(p) for p in prompts)
        if longest > self.n_ctx:
            raise PromptTooLong(f"The scoring prompt is {longest} tokens; the scoring context holds {self.n_ctx}.")
        bad = [c for c in candidates if not 0 <= c < self.n_vocab]
        if bad:
            raise EngineError(f"candidate tokens {bad} are outside the vocabulary", kind="bad_request")

    # ------------------------------------------------------------------ api
    def logprobs(self, prompts: list[list[int]], candidates: list[int], shared: bool = True) -> np.ndarray:
        """log P(candidate | prompt) for each prompt: an array (prompts, candidates).

        With ``shared`` the common token prefix is decoded once; without, every
        prompt is decoded on its own from an empty cache (the reference that
        the shared path must match).
        """
        cands = list(candidates)
        self._check(prompts, cands)
        out = np.empty((len(prompts), len(cands)))
        with self._lock:
            if self._ctx is None:
                raise EngineError("The scoring context has been closed.")
            try:
                ll.llama_memory_clear(self._mem, True)
                if not shared or len(prompts) == 1:
                    for i, p in enumerate(prompts):
                        ll.llama_memory_clear(self._mem, True)
                        out[i] = self._row(self._fill(p, 0), cands)
                        self.stats["prefix_tokens"] += len(p)
                    return out
                n = min(common_prefix_len(prompts), min(len(p) for p in prompts) - 1)
                self._fill(prompts[0][:n], 0)
                self.stats["prefix_tokens"] += n
                self.stats["tail_tokens"] += sum(len(p) - n for p in prompts)
                if self.forks == 0:
                    for i, p in enumerate(prompts):
                        out[i] = self._row(self._fill(p[n:], 0, start=n), cands)
                        ll.llama_memory_seq_rm(self._mem, 0, n, -1)
                    return out
                for group in self._groups([len(p) - n for p in prompts]):
                    entries, rows = [], []
                    for k, i in enumerate(group, start=1):
                        ll.llama_memory_seq_cp(self._mem, 0, k, -1, -1)  # whole stream, on the next decode
                        tail = prompts[i][n:]
                        entries += [(t, n + j, k, j == len(tail) - 1) for j, t in enumerate(tail)]
                        rows.append((i, len(entries) - 1))
                    self._decode(entries)
                    for i, index in rows:
                        out[i] = self._row(index, cands)
                    for k in range(1, len(group) + 1):
                        ll.llama_memory_seq_rm(self._mem, k, -1, -1)
                return out
            finally:
                ll.llama_memory_clear(self._mem, True)

    def _groups(self, tail_lens: list[int]) -> list[list[int]]:
        """Indices packed so that each group fits one decode (forks and batch size)."""
        groups, cur, used = [], [], 0
        for i, n in enumerate(tail_lens):
            if n > self.n_batch:
                raise PromptTooLong(f"a prompt tail of {n} tokens exceeds the scoring batch of {self.n_batch}")
            if cur and (len(cur) == self.forks or used + n > self.n_batch):
                groups.append(cur)
                cur, used = [], 0
            cur.append(i)
            used += n
        if cur:
            groups.append(cur)
        return groups

    def close(self) -> None:
        with self._lock:
            if self._ctx is not None:
                ll.llama_batch_free(self._batch)
                ll.llama_free(self._ctx)
                self._ctx = None
