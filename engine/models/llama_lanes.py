"""The scheduler behind the llama.cpp backend: contexts ("lanes"), each with
its own thread that advances all of its sequences together.

Each pane holds a KV sequence (a slot). A step runs at most one prefill chunk
and then one llama_decode with one token for every decoding sequence. Prompts
reuse the longest cached prefix.

The chat model gives each pane a lane of its own (one slot each, the weights
shared): on CPU a two-token batch costs about two one-token steps (no batched
kernel for the quantised matrix-vector products), while two lanes with one
thread each run side by side. Training's samplers keep one lane with many
slots, where prompts are shared and batching pays.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import threading
import time
from collections import deque

import numpy as np
from llama_cpp import llama_cpp as ll

from engine.errors import AdapterError, EngineError
from engine.models.base import Sampling, StopMatcher

GGML_TYPE_F16 = 1
SHARE_MIN = 64  # copying another pane's KV stream beats prefilling only past this many tokens


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class _CpuWatch:
    """Cores kept busy by other processes, sampled at most twice a second.

    llama.cpp's worker threads spin at barriers: when a training round holds a
    core, two threads decoded 20x slower than one here. Lanes drop to the free
    cores instead of probing (a probe with two threads can take seconds).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._last: tuple[float, float, float] | None = None
        self._others = 0.0
        self._measured = False

    def others(self) -> float:
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < 0.5:
                if self._measured:
                    return self._others
                time.sleep(max(0.0, 0.05 - (now - self._last[0])))  # first reading: a short window
                now = time.monotonic()
            try:
                import psutil

                cpu = psutil.cpu_times()
                busy = sum(cpu) - cpu.idle - getattr(cpu, "iowait", 0.0)
                mine = sum(psutil.Process().cpu_times()[:2])
            except Exception:  # no /proc: assume a quiet machine
                return 0.0
            if self._last is not None:
                wall = now - self._last[0]
                self._others = max(0.0, ((busy - self._last[1]) - (mine - self._last[2])) / wall)
                self._measured = True
            self._last = (now, busy, mine)
            return self._others


_cpu_watch = _CpuWatch()
_CPUS = os.cpu_count() or 1
_busy_lock = threading.Lock()
_busy: set[int] = set()  # lanes (in any model of this process) with work


def _set_busy(lane_id: int, busy: bool) -> None:
    with _busy_lock:
        (_busy.add if busy else _busy.discard)(lane_id)


def threads_for(ceiling: int) -> int:
    """Threads for one decode: the free cores (others' load taken off), shared
    among this process's busy lanes, so base and adapter contexts decoding at
    once do not oversubscribe the cores."""
    free = _CPUS - _cpu_watch.others()
    return max(1, min(ceiling, int(free / max(1, len(_busy)) + 0.5)))


class Slot:
    """One KV sequence and the tokens whose keys/values it currently holds."""

    def __init__(self, seq: int):
        self.seq = seq
        self.cached: list[int] = []
        self.busy = False
        self.last_used = 0.0


class Request:
    """One generate() call as the scheduler sees it."""

    def __init__(self, prompt: list[int], sampling: Sampling, on_token, cancelled):
        self.prompt = prompt
        self.sampling = sampling
        # Called on the lane thread: a hand-off to the caller's thread per token
        # costs a wake-up that, on two busy cores, preempts a decoding thread.
        self.on_token = on_token
        self.cancelled = cancelled
        self.done = threading.Event()
        self.abort = False  # on_token raised: stop, and generate() re-raises
        self.callback_error: BaseException | None = None
        self.slot: Slot | None = None
        self.context = 0  # which of its adapter's contexts serves it
        self.todo: list[int] = []  # prompt tokens still to prefill
        self.next_token: int | None = None  # sampled, not yet in the KV cache
        self.n_past = 0
        self.generated: list[int] = []
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.parts: list[str] = []
        self.stopper = StopMatcher(sampling.stop)
        self.sampler = None
        self.t_first: float | None = None
        self.t_done = 0.0
        self.finish = ""
        self.error: BaseException | None = None
        self.prefill_tokens = 0
        self.reused_tokens = 0
        self.want_logits = False  # stop after the prompt and keep its next-token logits
        self.logits = None


class Lane:
    """A context for one adapter (or the base) and the thread that drives it."""

    def __init__(self, owner, adapter_key: str | None, adapter_ptr, n_seqs: int | None = None):
        self.owner = owner
        self.key = adapter_key
        n_seqs = max(1, int(n_seqs or owner.max_seqs))
        params = ll.llama_context_default_params()
        params.n_ctx = owner.n_ctx_per_seq * n_seqs
        params.n_batch = params.n_ubatch = owner.n_batch
        params.n_seq_max = n_seqs
        params.n_threads = params.n_threads_batch = owner.n_threads
        params.kv_unified = owner.kv_unified
        params.type_k = params.type_v = GGML_TYPE_F16
        params.flash_attn_type = owner.flash_attn_type
        params.no_perf = True
        self.ctx = ll.llama_init_from_model(owner.model_ptr, params)
        if not self.ctx:
            raise EngineError("llama.cpp could not create a context for this model "
                              f"(n_ctx={params.n_ctx}); see the engine log.", kind="model_invalid")
        if adapter_ptr:
            adapters = (ll.llama_adapter_lora_p_ctypes * 1)(adapter_ptr)
            scales = (ctypes.c_float * 1)(1.0)
            if ll.llama_set_adapters_lora(self.ctx, adapters, 1, scales) != 0:
                ll.llama_free(self.ctx)
                raise AdapterError(f"llama.cpp refused to apply the adapter {adapter_key}.")
        self.mem = ll.llama_get_memory(self.ctx)
        self.batch = ll.llama_batch_init(owner.n_batch, 0, 1)
        self.slots = [Slot(i) for i in range(n_seqs)]
        self.cond = threading.Condition()
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.closing = False
        self.threads_now = owner.n_threads
        self.last_active = time.monotonic()
        self.thread = threading.Thread(target=self._loop, name=f"llama-lane-{adapter_key or 'base'}",
                                       daemon=True)
        self.thread.start()

    # -- called from generate() threads
    def submit(self, req: Request) -> None:
        with self.cond:
            if self.closing:
                raise EngineError("The model is being unloaded.")
            self.waiting.append(req)
            self.last_active = time.monotonic()
            self.cond.notify()

    def idle(self) -> bool:
        with self.cond:
            return not self.waiting and not self.running

    def fit(self, prompt: list[int]) -> tuple[int, int, float]:
        """How well this lane suits a new prompt, larger is better: the fewest
        requests ahead of it, then the longest cached prefix, then the least
        recently used."""
        with self.cond:
            load = len(self.waiting) + len(self.running)
            prefix = max((_common_prefix(s.cached, prompt) for s in self.slots), default=0)
            return (-load, prefix, -self.last_active)

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify()
        self.thread.join()
        ll.llama_batch_free(self.batch)
        ll.llama_free(self.ctx)

    # -- the scheduler thread
    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.closing and not self.waiting and not self.running:
                    _set_busy(id(self), False)
                    self.cond.wait()
                if self.closing:
                    break
                for req in [r for r in self.waiting if self._wants_stop(r)]:
                    self.waiting.remove(req)
                    self._finish(req, "cancelled")
                incoming = []
                while self.waiting and len(self.running) + len(incoming) < len(self.slots):
                    incoming.append(self.waiting.popleft())
            _set_busy(id(self), True)
            for req in incoming:
                self._start(req)
            try:
                if self.running:
                    self._step()
            except Exception as exc:  # keep the thread alive; fail only what was in flight
                for req in list(self.running):
                    self._drop_slot(req)
                    self._finish(req, "error", exc)
        _set_busy(id(self), False)
        with self.cond:
            stranded = list(self.waiting) + list(self.running)
            self.waiting.clear()
        for req in stranded:
            self._finish(req, "error", EngineError("The model was unloaded during generation."))

    @staticmethod
    def _wants_stop(req: Request) -> bool:
        if req.abort:
            return True
        try:
            return bool(req.cancelled())
        except Exception:
            return True

    def _start(self, req: Request) -> None:
        """Give the request a free slot and keep as much cached prefix as fits."""
        try:
            req.sampler = self.owner.make_sampler(req.sampling)
            free = [s for s in self.slots if not s.busy]
            # Always prefill at least two tokens (see _step), one when the prompt is a single token.
            limit = max(len(req.prompt) - 2, 0)
            slot = max(free, key=lambda s: (min(_common_prefix(s.cached, req.prompt), limit),
                                            -s.last_used))
            keep = min(_common_prefix(slot.cached, req.prompt), limit)
            donor, shared = None, keep
            for other in self.slots:
                if other is not slot:
                    n = min(_common_prefix(other.cached, req.prompt), limit)
                    if n > shared:
                        donor, shared = other, n
            if donor is not None and (self.owner.kv_unified or shared - keep >= SHARE_MIN):
                if self.owner.kv_unified:  # same cells, tagged with both sequences
                    ll.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
                    ll.llama_memory_seq_cp(self.mem, donor.seq, slot.seq, 0, shared)
                else:  # streams copy whole (on the next decode), then trim
                    ll.llama_memory_seq_cp(self.mem, donor.seq, slot.seq, -1, -1)
                    ll.llama_memory_seq_rm(self.mem, slot.seq, shared, -1)
                slot.cached = donor.cached[:shared]
                keep = shared
            elif not ll.llama_memory_seq_rm(self.mem, slot.seq, keep, -1):
                ll.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
                keep = 0
            del slot.cached[keep:]
            slot.busy = True
            req.slot = slot
            req.n_past = keep
            req.todo = req.prompt[keep:]
            req.prefill_tokens = len(req.todo)
            req.reused_tokens = keep
            self.running.append(req)
        except Exception as exc:
            self._finish(req, "error", exc)

    def _step(self) -> None:
        """At most one prefill chunk, then one token for every decoding sequence.

        Each llama_decode carries one kind of work: a prefill chunk of a single
        sequence (never a 1-token tail), or one token per sequence. Mixed batches
        get split by llama.cpp into uneven ubatches, and 1-token ubatches take
        other kernels whose rounding differs, so a pane's text would depend on
        what the other pane was doing.
        """
        threads = threads_for(self.owner.n_threads)
        if threads != self.threads_now:
            ll.llama_set_n_threads(self.ctx, threads, threads)
            self.threads_now = threads
        filling = next((r for r in self.running if r.todo), None)
        if filling is not None:
            chunk = filling.todo[:self.owner.n_batch]
            if len(filling.todo) - len(chunk) == 1:
                chunk = chunk[:-1]
            last = len(chunk) == len(filling.todo)
            if self._decode([(filling, chunk, last)]):
                filling.slot.cached.extend(chunk)
                filling.n_past += len(chunk)
                del filling.todo[:len(chunk)]
                if last:
                    self._output(filling, len(chunk) - 1)
        stepping = [(r, [r.next_token], True) for r in self.running if r.next_token is not None]
        if stepping and self._decode(stepping):
            for i, (req, tokens, _) in enumerate(stepping):
                if self.owner.reuse_generated:
                    req.slot.cached.extend(tokens)
                req.n_past += 1
                req.next_token = None
                self._output(req, i)
        for req in list(self.running):
            if self._wants_stop(req):
                self._finish(req, "cancelled")

    def _decode(self, work: list[tuple[Request, list[int], bool]]) -> bool:
        """One llama_decode of (request, tokens, logits for the last?) entries."""
        b = self.batch
        n = 0
        for req, tokens, want in work:
            seq, pos = req.slot.seq, req.n_past
            for j, tok in enumerate(tokens):
                b.token[n] = tok
                b.pos[n] = pos + j
                b.n_seq_id[n] = 1
                b.seq_id[n][0] = seq
                b.logits[n] = 0
                n += 1
            b.logits[n - 1] = 1 if want else 0
        b.n_tokens = n
        rc = ll.llama_decode(self.ctx, b)
        if rc == 0:
            return True
        error = EngineError(f"llama_decode failed with code {rc}"
                            + (" (no room left in the KV cache)" if rc == 1 else ""))
        for req, _, _ in work:
            self._drop_slot(req)
            self._finish(req, "error", error)
        return False

    def _output(self, req: Request, index: int) -> None:
        if req.want_logits:
            row = ll.llama_get_logits_ith(self.ctx, index)
            req.logits = np.ctypeslib.as_array(row, shape=(self.owner.n_vocab,)).copy()
            self._finish(req, "stop")
        else:
            self._accept(req, ll.llama_sampler_sample(req.sampler, self.ctx, index))

    def _accept(self, req: Request, token: int) -> None:
        owner = self.owner
        if req.t_first is None:
            req.t_first = time.perf_counter()
        if ll.llama_vocab_is_eog(owner.vocab_ptr, token):
            self._emit(req, req.stopper.flush())
            self._finish(req, "stop")
            return
        req.generated.append(token)
        self._emit(req, req.stopper.feed(req.decoder.decode(owner.piece(token))))
        if req.stopper.stopped:  # a stop string: the reply ends before it
            self._finish(req, "stop")
        elif len(req.generated) >= req.sampling.max_tokens or req.n_past >= owner.n_ctx_per_seq:
            self._emit(req, req.stopper.flush())
            self._finish(req, "length")
        else:
            req.next_token = token

    @staticmethod
    def _emit(req: Request, text: str) -> None:
        if text:
            req.parts.append(text)
            if req.callback_error is None:
                try:
                    req.on_token(text)
                except BaseException as exc:  # this request stops; the others go on
                    req.callback_error, req.abort = exc, True

    def _drop_slot(self, req: Request) -> None:
        if req.slot is not None:
            ll.llama_memory_seq_rm(self.mem, req.slot.seq, -1, -1)
            req.slot.cached = []

    def _finish(self, req: Request, reason: str, error: BaseException | None = None) -> None:
        if req in self.running:
            self.running.remove(req)
        if req.slot is not None:
            req.slot.busy = False
            req.slot.last_used = time.monotonic()
        if req.sampler:
            ll.llama_sampler_free(req.sampler)
            req.sampler = None
        req.finish, req.error = reason, error
        req.t_done = time.perf_counter()
        self.last_active = time.monotonic()
        req.done.set()
