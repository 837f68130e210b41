"""llama.cpp backend through llama-cpp-python's low-level ctypes API.

The weights are mapped once per file. Each adapter (None = the base) gets one
context whose unified KV cache holds a sequence per concurrent pane, and one
scheduler thread that advances every active pane with a single llama_decode
per step, so two panes cost little more than one.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import queue
import sys
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path

import numpy as np
from llama_cpp import llama_cpp as ll

from engine.errors import AdapterError, BadRequest, EngineError, ModelFileError, PromptTooLong
from engine.models.base import GenerationResult, Sampling, template_digest

GGML_TYPE_F16 = 1
N_BATCH = 512
SHARE_MIN = 64  # copying another pane's KV stream beats prefilling only past this many tokens
FALLBACK_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

# ---------------------------------------------------------------- logging
_LOG_WARN, _LOG_ERROR, _LOG_CONT = 3, 4, 5  # ggml_log_level (NONE 0, DEBUG 1, INFO 2)
_log_last_level = [0]
_log_errors: deque[str] = deque(maxlen=8)


@ll.llama_log_callback
def _log_to_stderr(level: int, text: bytes, _user) -> None:
    """stdout is the engine's protocol channel: native logs go to stderr, and
    below WARN only when HAL_LLAMA_VERBOSE is set."""
    if level == _LOG_CONT:  # continuation of the previous line
        level = _log_last_level[0]
    _log_last_level[0] = level
    message = (text or b"").decode("utf-8", "replace")
    if level == _LOG_ERROR:
        _log_errors.append(message.strip())
    if level >= _LOG_WARN or os.environ.get("HAL_LLAMA_VERBOSE"):
        try:
            sys.stderr.write(message)
        except Exception:  # a closed stderr must never take the decoder down
            pass


_backend_lock = threading.Lock()
_backend_ready = False


def _ensure_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            ll.llama_log_set(_log_to_stderr, None)
            ll.llama_backend_init()
            _backend_ready = True


def _default_threads() -> int:
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except Exception:
        physical = None
    return max(1, min(physical or os.cpu_count() or 1, len(os.sched_getaffinity(0)), 8))


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _template_error(message: str):
    raise BadRequest(f"The chat template refused these messages: {message}")


def _compile_template(source: str):
    """Render like Hugging Face does, but sandboxed: templates come from files."""
    import json

    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = _template_error
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = lambda v, indent=None: json.dumps(v, ensure_ascii=False, indent=indent)
    return env.from_string(source)


# ---------------------------------------------------------------- scheduling
class _CoreShare:
    """Splits the CPU threads between contexts that decode at the same time,
    so base and adapter lanes do not oversubscribe the cores."""

    def __init__(self, total: int):
        self.total = total
        self._busy: set[int] = set()
        self._lock = threading.Lock()

    def enter(self, lane_id: int) -> None:
        with self._lock:
            self._busy.add(lane_id)

    def leave(self, lane_id: int) -> None:
        with self._lock:
            self._busy.discard(lane_id)

    def share(self) -> int:
        return max(1, self.total // max(1, len(self._busy)))


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


class _Slot:
    """One KV sequence and the tokens whose keys/values it currently holds."""

    def __init__(self, seq: int):
        self.seq = seq
        self.cached: list[int] = []
        self.busy = False
        self.last_used = 0.0


class _Request:
    """One generate() call as the scheduler sees it."""

    def __init__(self, prompt: list[int], sampling: Sampling, cancelled, t0: float):
        self.prompt = prompt
        self.sampling = sampling
        self.cancelled = cancelled
        self.t0 = t0
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.abort = False  # set by the caller when its on_token failed
        self.slot: _Slot | None = None
        self.todo: list[int] = []  # prompt tokens still to prefill
        self.next_token: int | None = None  # sampled, not yet in the KV cache
        self.n_past = 0
        self.generated: list[int] = []
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.parts: list[str] = []
        self.sampler = None
        self.t_first: float | None = None
        self.t_done = 0.0
        self.finish = ""
        self.error: BaseException | None = None
        self.prefill_tokens = 0
        self.reused_tokens = 0
        self.want_logits = False  # stop after the prompt and keep its next-token logits
        self.logits = None


_DONE = object()


class _Lane:
    """A context for one adapter (or the base) and the thread that drives it."""

    def __init__(self, owner: "LlamaCppModel", adapter_key: str | None, adapter_ptr):
        self.owner = owner
        self.key = adapter_key
        params = ll.llama_context_default_params()
        params.n_ctx = owner.n_ctx_per_seq * owner.max_seqs
        params.n_batch = params.n_ubatch = owner.n_batch
        params.n_seq_max = owner.max_seqs
        params.n_threads = params.n_threads_batch = owner.n_threads
        params.kv_unified = owner.kv_unified
        params.type_k = params.type_v = GGML_TYPE_F16
        params.flash_attn_type = owner.flash_attn_type
        params.no_perf = True
        self.ctx = ll.llama_init_from_model(owner._model, params)
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
        self.slots = [_Slot(i) for i in range(owner.max_seqs)]
        self.cond = threading.Condition()
        self.waiting: deque[_Request] = deque()
        self.running: list[_Request] = []
        self.closing = False
        self.threads_now = owner.n_threads
        self.last_active = time.monotonic()
        self.thread = threading.Thread(target=self._loop, name=f"llama-lane-{adapter_key or 'base'}",
                                       daemon=True)
        self.thread.start()

    # -- called from generate() threads
    def submit(self, req: _Request) -> None:
        with self.cond:
            if self.closing:
                raise EngineError("The model is being unloaded.")
            self.waiting.append(req)
            self.last_active = time.monotonic()
            self.cond.notify()

    def idle(self) -> bool:
        with self.cond:
            return not self.waiting and not self.running

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify()
        self.thread.join()
        ll.llama_batch_free(self.batch)
        ll.llama_free(self.ctx)

    # -- the scheduler thread
    def _loop(self) -> None:
        cores = self.owner._cores
        while True:
            with self.cond:
                while not self.closing and not self.waiting and not self.running:
                    cores.leave(id(self))
                    self.cond.wait()
                if self.closing:
                    break
                for req in [r for r in self.waiting if self._wants_stop(r)]:
                    self.waiting.remove(req)
                    self._finish(req, "cancelled")
                incoming = []
                while self.waiting and len(self.running) + len(incoming) < len(self.slots):
                    incoming.append(self.waiting.popleft())
            cores.enter(id(self))
            for req in incoming:
                self._start(req)
            try:
                if self.running:
                    self._step()
            except Exception as exc:  # keep the thread alive; fail only what was in flight
                for req in list(self.running):
                    self._drop_slot(req)
                    self._finish(req, "error", exc)
        cores.leave(id(self))
        with self.cond:
            stranded = list(self.waiting) + list(self.running)
            self.waiting.clear()
        for req in stranded:
            self._finish(req, "error", EngineError("The model was unloaded during generation."))

    @staticmethod
    def _wants_stop(req: _Request) -> bool:
        if req.abort:
            return True
        try:
            return bool(req.cancelled())
        except Exception:
            return True

    def _start(self, req: _Request) -> None:
        """Give the request a free slot and keep as much cached prefix as fits."""
        try:
            req.sampler = self.owner._make_sampler(req.sampling)
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
        cores = self.owner._cores
        free = max(1, int(cores.total - _cpu_watch.others() + 0.5))
        threads = min(cores.share(), free)
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

    def _decode(self, work: list[tuple[_Request, list[int], bool]]) -> bool:
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

    def _output(self, req: _Request, index: int) -> None:
        if req.want_logits:
            row = ll.llama_get_logits_ith(self.ctx, index)
            req.logits = np.ctypeslib.as_array(row, shape=(self.owner.n_vocab,)).copy()
            self._finish(req, "stop")
        else:
            self._accept(req, ll.llama_sampler_sample(req.sampler, self.ctx, index))

    def _accept(self, req: _Request, token: int) -> None:
        owner = self.owner
        if req.t_first is None:
            req.t_first = time.perf_counter()
        if ll.llama_vocab_is_eog(owner._vocab, token):
            self._finish(req, "stop")
            return
        req.generated.append(token)
        text = req.decoder.decode(owner._piece(token))
        if text:
            req.parts.append(text)
            req.inbox.put(text)
        if len(req.generated) >= req.sampling.max_tokens or req.n_past >= owner.n_ctx_per_seq:
            self._finish(req, "length")
        else:
            req.next_token = token

    def _drop_slot(self, req: _Request) -> None:
        if req.slot is not None:
            ll.llama_memory_seq_rm(self.mem, req.slot.seq, -1, -1)
            req.slot.cached = []

    def _finish(self, req: _Request, reason: str, error: BaseException | None = None) -> None:
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
        req.inbox.put(_DONE)


# ---------------------------------------------------------------- the model
class LlamaCppModel:
    """A GGUF base model served by llama.cpp, with its GGUF LoRA adapters."""

    backend = "llamacpp"

    def __init__(self, path, n_ctx_per_seq: int = 4096, max_seqs: int = 2, n_threads: int | None = None,
                 *, n_batch: int = N_BATCH, flash_attn: bool | None = False, kv_unified: bool = False,
                 reuse_generated: bool = False, max_contexts: int = 3):
        _ensure_backend()
        self.path = Path(path)
        self.max_seqs = max(1, int(max_seqs))
        self.n_threads = int(n_threads or _default_threads())
        self.n_batch = max(int(n_batch), self.max_seqs, 8)  # llama.cpp aborts when n_batch < n_seq_max
        self.max_contexts = max(1, int(max_contexts))
        # Off by default: on CPU, flash attention's results depend on how tokens are
        # batched, so cached, chunked and batched runs would drift from single ones.
        self.flash_attn_type = {None: -1, True: 1, False: 0}[flash_attn]  # auto / enabled / disabled
        # One KV stream per sequence, all allocated up front: a second pane costs no
        # memory, and each sequence keeps the cell layout (hence the numerics) it
        # would have alone. A unified cache interleaves cells and shifts results.
        self.kv_unified = bool(kv_unified)
        # Reused prefixes stop where the last prompt ended: generated tokens were
        # computed one at a time, which rounds differently from a prefill, so
        # reusing them would make turn 2 depend on the cache. True trades that
        # exactness for a shorter prefill.
        self.reuse_generated = bool(reuse_generated)
        self._cores = _CoreShare(self.n_threads)
        _cpu_watch.others()  # start the load baseline while the weights map in
        params = ll.llama_model_default_params()
        params.n_gpu_layers = 0
        params.use_mmap = True
        self._model = ll.llama_model_load_from_file(str(self.path).encode(), params)
        if not self._model:
            detail = _log_errors[-1] if _log_errors else ""
            raise ModelFileError(f"llama.cpp could not load {self.path.name}.", detail)
        self._vocab = ll.llama_model_get_vocab(self._model)
        self.n_vocab = ll.llama_vocab_n_tokens(self._vocab)
        n_train = ll.llama_model_n_ctx_train(self._model)
        self.n_ctx_per_seq = int(min(n_ctx_per_seq, n_train) if n_train > 0 else n_ctx_per_seq)
        self._pieces: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._adapters: dict[str, object] = {}
        self._lanes: dict[str | None, _Lane] = {}
        self._closed = False
        self.name = self._meta("general.name") or self.path.stem
        template = self._meta("tokenizer.chat_template")
        self.template_source = "gguf" if template else "fallback"
        self.chat_template = template or FALLBACK_TEMPLATE
        self._template = _compile_template(self.chat_template)
        self.bos_text = self._special_text(ll.llama_vocab_bos(self._vocab))
        self.eos_text = self._special_text(ll.llama_vocab_eos(self._vocab))
        self._add_bos = bool(ll.llama_vocab_get_add_bos(self._vocab))

    # -- metadata and text
    def _meta(self, key: str) -> str | None:
        size = 256
        while True:
            buf = ctypes.create_string_buffer(size)
            n = ll.llama_model_meta_val_str(self._model, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", "replace")
            size = n + 1

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        buf = ctypes.create_string_buffer(128)
        n = ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
        return buf.raw[:max(n, 0)].decode("utf-8", "replace")

    def _piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens render as nothing), cached."""
        piece = self._pieces.get(token)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            piece = self._pieces[token] = buf.raw[:n]
        return piece

    def render(self, messages: list[dict]) -> str:
        """The prompt text the chat template makes of ``messages``."""
        from jinja2 import TemplateError

        try:
            return self._template.render(messages=messages, add_generation_prompt=True,
                                         bos_token=self.bos_text, eos_token=self.eos_text)
        except BadRequest:
            raise
        except TemplateError as exc:
            raise BadRequest(f"The chat template failed: {exc}") from None

    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text`` with special tokens parsed; BOS added only when the
        model wants it and the template has not already written it."""
        data = text.encode("utf-8")
        add = self._add_bos and not (self.bos_text and text.startswith(self.bos_text))
        size = len(data) + 8
        buf = (ll.llama_token * size)()
        n = ll.llama_tokenize(self._vocab, data, len(data), buf, size, add, True)
        if n < 0:
            size = -n
            buf = (ll.llama_token * size)()
            n = ll.llama_tokenize(self._vocab, data, len(data), buf, size, add, True)
        return list(buf[:n])

    def _make_sampler(self, s: Sampling):
        params = ll.llama_sampler_chain_default_params()
        params.no_perf = True
        chain = ll.llama_sampler_chain_init(params)
        if s.temperature <= 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
        else:
            if s.top_p < 1.0:
                ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(s.top_p, 1))
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(s.temperature))
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(s.seed & 0xFFFFFFFF))
        return chain

    # -- adapters and contexts
    def _adapter_file(self, adapter: str) -> str:
        path = Path(os.path.expanduser(adapter))
        if not path.exists():
            raise AdapterError(f"Adapter not found: {path}", kind="adapter_missing")
        if path.is_dir():
            twins = sorted(path.glob("*.gguf"))
            if not twins:
                raise AdapterError(f"{path} holds no GGUF LoRA file; the llama.cpp backend needs one.")
            path = twins[0]
        with open(path, "rb") as fh:
            if fh.read(4) != b"GGUF":
                raise AdapterError(f"{path.name} is not a GGUF file, so it cannot be a GGUF LoRA adapter.")
        return os.path.realpath(path)

    def check_adapter(self, adapter: str) -> None:
        """Load the adapter once; llama.cpp checks names and shapes against the base."""
        key = self._adapter_file(adapter)
        with self._lock:
            if key in self._adapters:
                return
            _log_errors.clear()
            ptr = ll.llama_adapter_lora_init(self._model, key.encode())
            if not ptr:
                why = " ".join(_log_errors) or "see the engine log"
                raise AdapterError(
                    f"{Path(key).name} is not a LoRA adapter for {self.name}: llama.cpp refused it.", why)
            self._adapters[key] = ptr

    def _lane(self, adapter: str | None) -> _Lane:
        key = None
        if adapter:
            self.check_adapter(adapter)
            key = self._adapter_file(adapter)
        with self._lock:
            if self._closed:
                raise EngineError("The model has been unloaded.")
            lane = self._lanes.get(key)
            if lane is None:
                if len(self._lanes) >= self.max_contexts:  # free the longest-idle context
                    idle = [l for k, l in self._lanes.items() if k is not None and l.idle()]
                    if idle:
                        victim = min(idle, key=lambda l: l.last_active)
                        del self._lanes[victim.key]
                        victim.close()
                lane = self._lanes[key] = _Lane(self, key, self._adapters.get(key) if key else None)
            return lane

    # -- the LoadedModel interface
    def info(self) -> dict:
        with self._lock:
            adapters = sorted(self._adapters)
        return {"name": self.name, "backend": self.backend, "path": str(self.path),
                "n_ctx": self.n_ctx_per_seq, "max_seqs": self.max_seqs, "n_threads": self.n_threads,
                "chat_template_digest": template_digest(self.chat_template),
                "chat_template_source": self.template_source,
                "n_params": int(ll.llama_model_n_params(self._model)),
                "file_bytes": self.path.stat().st_size, "adapters": adapters}

    def _prompt(self, messages: list[dict]) -> list[int]:
        if self._closed:  # the vocabulary lives in freed native memory
            raise EngineError("The model has been unloaded.")
        tokens = self.tokenize(self.render(messages))
        if len(tokens) + 1 > self.n_ctx_per_seq:
            raise PromptTooLong(
                f"The prompt is {len(tokens)} tokens; with room for one reply token it needs "
                f"{len(tokens) + 1}, but the context holds {self.n_ctx_per_seq} per conversation.")
        return tokens

    def next_token_logits(self, messages: list[dict], adapter: str | None = None) -> np.ndarray:
        """Raw logits for the token after the prompt (checks adapters against PEFT)."""
        req = _Request(self._prompt(messages), Sampling(temperature=0), lambda: False, time.perf_counter())
        req.want_logits = True
        self._lane(adapter).submit(req)
        while req.inbox.get() is not _DONE:
            pass
        if req.error is not None:
            raise req.error
        return req.logits

    def generate(self, messages, sampling, adapter, on_token, cancelled) -> GenerationResult:
        t0 = time.perf_counter()
        tokens = self._prompt(messages)
        req = _Request(tokens, sampling, cancelled, t0)
        self._lane(adapter).submit(req)
        callback_error = None
        while True:
            item = req.inbox.get()
            if item is _DONE:
                break
            if callback_error is None:
                try:
                    on_token(item)
                except BaseException as exc:  # stop this generation, report after it ends
                    callback_error, req.abort = exc, True
        if callback_error is not None:
            raise callback_error
        if req.error is not None:
            if isinstance(req.error, EngineError):
                raise req.error
            raise EngineError(f"Generation failed: {req.error}") from req.error
        end = req.t_done
        return GenerationResult(
            text="".join(req.parts), finish_reason=req.finish, prompt_tokens=len(tokens),
            completion_tokens=len(req.generated),
            ttft_s=(req.t_first or end) - t0, total_s=end - t0,
            extra={"prefill_tokens": req.prefill_tokens, "reused_tokens": req.reused_tokens,
                   "seq": req.slot.seq if req.slot else None, "adapter": adapter,
                   "chat_template_digest": template_digest(self.chat_template)})

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            lanes, self._lanes = list(self._lanes.values()), {}
            adapters, self._adapters = list(self._adapters.values()), {}
        for lane in lanes:
            lane.close()
        for ptr in adapters:
            ll.llama_adapter_lora_free(ptr)
        ll.llama_model_free(self._model)
        self._model = None
