"""llama.cpp backend through llama-cpp-python's low-level ctypes API.

The weights are mapped once per file and shared by every pane. Each adapter
(None = the base) gets its own contexts, driven by scheduler threads
(llama_lanes): by default one single-sequence context per concurrent pane, so
two panes decode side by side; optionally one context with a KV stream per
sequence, decoded as one batch (training's samplers).
"""

from __future__ import annotations

import ctypes
import os
import re
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
from engine.models.llama_lanes import SHARE_MIN, Lane, Request, _cpu_watch  # noqa: F401

N_BATCH = 512
FALLBACK_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

# ---------------------------------------------------------------- logging
_LOG_WARN, _LOG_ERROR, _LOG_CONT = 3, 4, 5  # ggml_log_level (NONE 0, DEBUG 1, INFO 2)
_log_last_level = [0]
_log_errors: deque[str] = deque(maxlen=8)
_OUT_OF_MEMORY = re.compile(r"cannot allocate memory|out of memory|failed to allocate|bad_alloc", re.I)


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


def _template_error(message: str):
    raise BadRequest(f"The chat template refused these messages: {message}")


def _compile_template(source: str):
    """Render like Hugging Face does, but sandboxed: templates come from files."""
    import json

    from engine.models.template_limits import LimitedSandbox

    env = LimitedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = _template_error
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.add_filter("tojson", lambda v, indent=None: json.dumps(v, ensure_ascii=False, indent=indent))
    return env.from_string(source)


def _adapter_refusal(log: str) -> str:
    """A sentence for why llama.cpp refused an adapter, from its error log."""
    for needle, reason in (("general.type", "is not a LoRA adapter (it may be a model file)"),
                           ("arch mismatch", "was made for a different model architecture"),
                           ("shape", "has tensor shapes that do not match this base model"),
                           ("does not exist in base model", "names tensors this base model does not have"),
                           ("adapter.type", "is not a LoRA adapter")):
        if needle in log:
            return reason
    return "was refused by llama.cpp as a LoRA adapter"


def sampler_chain(s: Sampling, n_vocab: int, draw: bool = True):
    """llama.cpp's sampler chain for ``s``, in the order Sampling documents
    (the HF backend's ``candidates`` applies the same steps in the same
    order). The repetition penalty sees only the reply's tokens: the chain
    accepts each token it samples. ``draw=False`` leaves off the final
    choice (greedy or seeded), for tests that compare the candidates."""
    params = ll.llama_sampler_chain_default_params()
    params.no_perf = True
    chain = ll.llama_sampler_chain_init(params)
    if s.repeat_penalty != 1.0:
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_penalties(
            n_vocab, s.repeat_last_n, s.repeat_penalty, 0.0, 0.0))
    if s.temperature <= 0 or s.top_p <= 0:
        if draw:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
        return chain
    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(s.temperature))
    if s.top_k > 0:
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(s.top_k))
    if s.top_p < 1.0:
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(s.top_p, 1))
    if s.min_p > 0.0:
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_min_p(s.min_p, 1))
    if draw:
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(s.seed & 0xFFFFFFFF))
    return chain


class LlamaCppModel:
    """A GGUF base model served by llama.cpp, with its GGUF LoRA adapters."""

    backend = "llamacpp"

    def __init__(self, path, n_ctx_per_seq: int = 4096, max_seqs: int = 2, n_threads: int | None = None,
                 *, n_batch: int = N_BATCH, flash_attn: bool | None = False, kv_unified: bool = False,
                 reuse_generated: bool = False, max_contexts: int = 3, lane_per_seq: bool = True):
        _ensure_backend()
        self.path = Path(path)
        self.max_seqs = max(1, int(max_seqs))
        self.n_threads = int(n_threads or _default_threads())
        self.n_batch = max(int(n_batch), self.max_seqs, 8)  # llama.cpp aborts when n_batch < n_seq_max
        self.max_contexts = max(1, int(max_contexts))
        # One context per sequence (the panes run side by side, one thread each)
        # or one context holding all sequences (decoded as one batch); see llama_lanes.
        self.lane_per_seq = bool(lane_per_seq)
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
        _cpu_watch.others()  # start the load baseline while the weights map in
        params = ll.llama_model_default_params()
        params.n_gpu_layers = 0
        params.use_mmap = True
        _log_errors.clear()
        self.model_ptr = ll.llama_model_load_from_file(str(self.path).encode(), params)
        if not self.model_ptr:
            why = " ".join(_log_errors)
            if _OUT_OF_MEMORY.search(why):
                raise EngineError(f"Not enough memory to load {self.path.name}: llama.cpp could not map or "
                                  "allocate its weights. Unload the other pane's model, close other "
                                  "programs, or pick a smaller model.", why, kind="out_of_memory")
            raise ModelFileError(f"llama.cpp could not load {self.path.name}.", why)
        self.vocab_ptr = ll.llama_model_get_vocab(self.model_ptr)
        self.n_params = int(ll.llama_model_n_params(self.model_ptr))
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab_ptr)
        n_train = ll.llama_model_n_ctx_train(self.model_ptr)
        self.n_ctx_per_seq = int(min(n_ctx_per_seq, n_train) if n_train > 0 else n_ctx_per_seq)
        self._pieces: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._adapters: dict[str, object] = {}
        self._lanes: dict[str | None, list[Lane]] = {}
        self._closed = False
        self.name = self._meta("general.name") or self.path.stem
        template = self._meta("tokenizer.chat_template")
        self.template_source = "gguf" if template else "fallback"
        self.chat_template = template or FALLBACK_TEMPLATE
        self._template = _compile_template(self.chat_template)
        self.bos_text = self._special_text(ll.llama_vocab_bos(self.vocab_ptr))
        self.eos_text = self._special_text(ll.llama_vocab_eos(self.vocab_ptr))
        self._add_bos = bool(ll.llama_vocab_get_add_bos(self.vocab_ptr))
        self._special_texts: list[str] | None = None

    # -- metadata and text
    def _meta(self, key: str) -> str | None:
        size = 256
        while True:
            buf = ctypes.create_string_buffer(size)
            n = ll.llama_model_meta_val_str(self.model_ptr, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", "replace")
            size = n + 1

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        buf = ctypes.create_string_buffer(128)
        n = ll.llama_token_to_piece(self.vocab_ptr, token, buf, len(buf), 0, True)
        return buf.raw[:max(n, 0)].decode("utf-8", "replace")

    def piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens render as nothing), cached."""
        piece = self._pieces.get(token)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = ll.llama_token_to_piece(self.vocab_ptr, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = ll.llama_token_to_piece(self.vocab_ptr, token, buf, len(buf), 0, False)
            piece = self._pieces[token] = buf.raw[:n]
        return piece

    def render(self, messages: list[dict]) -> str:
        """The prompt text the chat template makes of ``messages``."""
        from jinja2 import TemplateError

        from engine.models import template_limits

        try:
            return template_limits.render(self._template, messages=messages, add_generation_prompt=True,
                                          bos_token=self.bos_text, eos_token=self.eos_text)
        except BadRequest:
            raise
        except (TemplateError, OverflowError, RecursionError) as exc:  # sandbox limits, runaway macros
            raise BadRequest(f"The chat template failed: {exc}") from None

    def tokenize(self, text: str, special: bool = True, first: bool = True) -> list[int]:
        """Tokens of ``text``, with special tokens parsed unless ``special`` is False
        (then ``<|im_end|>`` typed as text is ordinary tokens); BOS added only to the
        ``first`` piece, when the model wants it and the template has not written it."""
        data = text.encode("utf-8")
        add = first and self._add_bos and not (self.bos_text and text.startswith(self.bos_text))
        size = len(data) + 8
        buf = (ll.llama_token * size)()
        n = ll.llama_tokenize(self.vocab_ptr, data, len(data), buf, size, add, special)
        if n < 0:
            size = -n
            buf = (ll.llama_token * size)()
            n = ll.llama_tokenize(self.vocab_ptr, data, len(data), buf, size, add, special)
        return list(buf[:n])

    def special_texts(self) -> list[str]:
        """The text of every control token (what special parsing would turn into one)."""
        if self._special_texts is None:
            wanted = ll.LLAMA_TOKEN_ATTR_CONTROL | ll.LLAMA_TOKEN_ATTR_UNKNOWN
            found = set()
            for token in range(self.n_vocab):
                if ll.llama_vocab_get_attr(self.vocab_ptr, token) & wanted:
                    text = ll.llama_vocab_get_text(self.vocab_ptr, token)
                    if text:
                        found.add(text.decode("utf-8", "replace"))
            self._special_texts = sorted(found)
        return self._special_texts

    def encode_messages(self, messages: list[dict]) -> list[int]:
        """Prompt tokens for chat messages: the template's markup may hold special
        tokens, the messages' own text never does (``engine.models.plain_text``)."""
        from engine.models import plain_text

        if not plain_text.holds_special(messages, self.special_texts()):
            return self.tokenize(self.render(messages))  # the same tokens as always
        tokens: list[int] = []
        for text, is_content in plain_text.marked_segments(self.render, messages):
            tokens += self.tokenize(text, special=not is_content, first=not tokens)
        return tokens

    def make_sampler(self, s: Sampling):
        return sampler_chain(s, self.n_vocab)

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
        from engine.models.spec import require_regular

        require_regular(path, "GGUF LoRA adapter", AdapterError)
        with open(path, "rb") as fh:
            if fh.read(4) != b"GGUF":
                raise AdapterError(f"{path.name} is not a GGUF file, so it cannot be a GGUF LoRA adapter.")
        return os.path.realpath(path)

    def check_adapter(self, adapter: str) -> None:
        """Load the adapter once; llama.cpp checks names and shapes against the base."""
        key = self._adapter_file(adapter)
        with self._lock:
            if self._closed:
                raise EngineError("The model has been unloaded.")
            if key in self._adapters:
                return
            _log_errors.clear()
            ptr = ll.llama_adapter_lora_init(self.model_ptr, key.encode())
            if not ptr:
                why = " ".join(_log_errors) or "see the engine log"
                raise AdapterError(f"{Path(key).name} {_adapter_refusal(why)}, so it cannot be used "
                                   f"with {self.name}.", why)
            self._adapters[key] = ptr

    def _submit(self, adapter: str | None, req: Request) -> None:
        """Queue ``req`` on the adapter's context, creating it on first use; under
        the lock, so an idle context is never freed while work is handed to it."""
        key = None
        if adapter:
            self.check_adapter(adapter)
            key = self._adapter_file(adapter)
        with self._lock:
            if self._closed:
                raise EngineError("The model has been unloaded.")
            lanes = self._lanes.get(key)
            if lanes is None:
                if len(self._lanes) >= self.max_contexts:  # free the longest-idle adapter's contexts
                    idle = [(k, group) for k, group in self._lanes.items()
                            if k is not None and all(lane.idle() for lane in group)]
                    if idle:
                        victim, group = min(idle, key=lambda kg: max(lane.last_active for lane in kg[1]))
                        del self._lanes[victim]
                        for lane in group:
                            lane.close()
                ptr = self._adapters.get(key) if key else None
                # All of a key's contexts are made together: the memory a pair of panes
                # needs is reserved when the first one loads, and never grows mid-chat.
                if self.lane_per_seq:
                    lanes = [Lane(self, key, ptr, 1) for _ in range(self.max_seqs)]
                else:
                    lanes = [Lane(self, key, ptr)]
                self._lanes[key] = lanes
            lane = max(lanes, key=lambda lane: lane.fit(req.prompt)) if len(lanes) > 1 else lanes[0]
            req.context = lanes.index(lane)
            lane.submit(req)

    # -- the LoadedModel interface
    def info(self) -> dict:
        with self._lock:
            adapters = sorted(self._adapters)
        return {"name": self.name, "backend": self.backend, "path": str(self.path),
                "n_ctx": self.n_ctx_per_seq, "max_seqs": self.max_seqs, "n_threads": self.n_threads,
                "chat_template_digest": template_digest(self.chat_template),
                "chat_template_source": self.template_source,
                "n_params": self.n_params,
                "file_bytes": self.path.stat().st_size, "adapters": adapters}

    def _prompt(self, messages: list[dict]) -> list[int]:
        if self._closed:  # the vocabulary lives in freed native memory
            raise EngineError("The model has been unloaded.")
        tokens = self.encode_messages(messages)
        if len(tokens) + 1 > self.n_ctx_per_seq:
            raise PromptTooLong(
                f"The prompt is {len(tokens)} tokens; with room for one reply token it needs "
                f"{len(tokens) + 1}, but the context holds {self.n_ctx_per_seq} per conversation.")
        return tokens

    def next_token_logits(self, messages: list[dict], adapter: str | None = None) -> np.ndarray:
        """Raw logits for the token after the prompt (checks adapters against PEFT)."""
        req = Request(self._prompt(messages), Sampling(temperature=0), lambda text: None, lambda: False)
        req.want_logits = True
        self._submit(adapter, req)
        req.done.wait()
        if req.error is not None:
            raise req.error
        return req.logits

    def generate(self, messages, sampling, adapter, on_token, cancelled) -> GenerationResult:
        t0 = time.perf_counter()
        tokens = self._prompt(messages)
        req = Request(tokens, sampling, on_token, cancelled)
        self._submit(adapter, req)
        req.done.wait()
        if req.callback_error is not None:
            raise req.callback_error
        if req.error is not None:
            if isinstance(req.error, EngineError):
                raise req.error
            raise EngineError(f"Generation failed: {req.error}") from req.error
        end = req.t_done
        if req.finish != "stop":  # cut short (length, cancel): the held-back tail is reply text
            req.parts.append(req.stopper.flush())
        return GenerationResult(
            text="".join(req.parts), finish_reason=req.finish, prompt_tokens=len(tokens),
            completion_tokens=len(req.generated),
            ttft_s=(req.t_first or end) - t0, total_s=end - t0,
            extra={"prefill_tokens": req.prefill_tokens, "reused_tokens": req.reused_tokens,
                   "seq": req.slot.seq if req.slot else None, "context": req.context,
                   "adapter": adapter,
                   "chat_template_digest": template_digest(self.chat_template)})

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            lanes = [lane for group in self._lanes.values() for lane in group]
            self._lanes = {}
            adapters, self._adapters = list(self._adapters.values()), {}
        for lane in lanes:
            lane.close()
        for ptr in adapters:
            ll.llama_adapter_lora_free(ptr)
        ll.llama_model_free(self.model_ptr)
        self.model_ptr = None
