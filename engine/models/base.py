"""The small interface both backends (llama.cpp, transformers+PEFT) implement."""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol

from engine.errors import BadRequest


# Chat defaults: what a ``generate`` command (and ``hal chat``) gets for every
# setting its sampling leaves out. Chosen by `hal bench loops` so that the
# bundled model's first chat rarely loops (measured table: README, "Chat
# defaults"). The studio's sampling panel mirrors them (studio/sampling_panel.py
# DEFAULTS; a test keeps the two equal).
CHAT_DEFAULTS = {"temperature": 0.7, "top_p": 1.0, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.15,
                 "repeat_last_n": 64, "max_tokens": 256}
MAX_STOPS, MAX_STOP_CHARS = 16, 200

# name, type, lowest, highest (inclusive)
_NUMBERS = (("temperature", float, 0.0, 5.0), ("top_p", float, 0.0, 1.0), ("top_k", int, 0, 1_000_000),
            ("min_p", float, 0.0, 1.0), ("repeat_penalty", float, 0.5, 3.0),
            ("repeat_last_n", int, 1, 4096), ("max_tokens", int, 1, 32768), ("seed", int, 0, 2**31 - 1))


@dataclass
class Sampling:
    """Sampling settings; both panes of a turn get identical ones.

    Both backends apply them in one order: the repetition penalty (on the raw
    logits of tokens among the reply's last ``repeat_last_n`` tokens: a
    positive logit is divided by the penalty, a negative one multiplied, as
    llama.cpp does; the prompt is not penalised), then temperature, top-k
    (0 = off), top-p (1 = off), min-p (0 = off: keep tokens at least min_p
    times as likely as the most likely one), then a seeded draw. Temperature
    0 is greedy. ``stop``: the reply ends before the first of these strings
    that appears, which is not part of the reply (finish_reason "stop").

    ``Sampling(...)`` in code turns on only what it names (the samplers that
    rounds, judges and contrast sets use keep their settings); ``from_dict``
    (a chat message, ``hal chat``) starts from CHAT_DEFAULTS.
    """

    temperature: float = 0.7
    top_p: float = 0.9
    max_tokens: int = 256
    seed: int = 0
    system_prompt: str = ""
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    stop: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Sampling":
        if data is not None and not isinstance(data, dict):
            raise BadRequest("sampling must be an object {temperature, top_p, top_k, min_p, repeat_penalty, "
                             "max_tokens, seed, stop, system_prompt}")
        data = dict(data or {})
        out = cls(**CHAT_DEFAULTS)
        for name, kind, lo, hi in _NUMBERS:
            if name in data and data[name] is not None:
                value = data[name]
                if (isinstance(value, bool) or not isinstance(value, (int, float))
                        or isinstance(value, float) and not math.isfinite(value)):
                    raise BadRequest(f"sampling.{name} must be a finite number")
                if kind is int and int(value) != value:
                    raise BadRequest(f"sampling.{name} must be a whole number")
                if not lo <= value <= hi:
                    raise BadRequest(f"sampling.{name}={value} is outside {lo}..{hi}")
                setattr(out, name, kind(value))
        prompt = data.get("system_prompt") or ""
        if not isinstance(prompt, str):
            raise BadRequest("sampling.system_prompt must be a string")
        out.system_prompt = prompt
        out.stop = check_stops(data.get("stop"))
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def check_stops(stops) -> list[str]:
    """A list of stop strings, validated (None is none)."""
    if stops is None:
        return []
    if not isinstance(stops, list):
        raise BadRequest("sampling.stop must be a list of strings")
    if len(stops) > MAX_STOPS:
        raise BadRequest(f"sampling.stop holds {len(stops)} strings; at most {MAX_STOPS} are allowed")
    out = []
    for item in stops:
        if not isinstance(item, str) or not item:
            raise BadRequest("each sampling.stop entry must be a non-empty string")
        if len(item) > MAX_STOP_CHARS:
            raise BadRequest(f"a sampling.stop string is {len(item)} characters; at most {MAX_STOP_CHARS}")
        if item not in out:
            out.append(item)
    return out


class StopMatcher:
    """Cuts streamed text at the first stop string, holding back any tail that
    could still become one, so no part of a stop string is ever streamed."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The text that is safe to emit now; sets ``stopped`` at a stop string."""
        if not self.stops:
            return piece
        if self.stopped:
            return ""
        buf = self.held + piece
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped, self.held = True, ""
            return buf[:min(hits)]
        keep = 0
        for s in self.stops:  # the longest tail of buf that begins a stop string
            for k in range(min(len(s) - 1, len(buf)), keep, -1):
                if buf.endswith(s[:k]):
                    keep = k
                    break
        self.held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep]

    def flush(self) -> str:
        """At the end of a reply that did not stop: the held-back tail."""
        out, self.held = self.held, ""
        return out


@dataclass
class GenerationResult:
    """What one generation produced and how long it took."""

    text: str
    finish_reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float  # request accepted -> first token
    total_s: float
    extra: dict = field(default_factory=dict)

    @property
    def tok_s(self) -> float:
        """Decode speed: tokens after the first over the time after the first."""
        span = self.total_s - self.ttft_s
        if self.completion_tokens <= 1 or span <= 0:
            return 0.0
        return (self.completion_tokens - 1) / span

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tok_s"] = self.tok_s
        return d


TokenCallback = Callable[[str], None]
CancelCheck = Callable[[], bool]


class LoadedModel(Protocol):
    """A base model held in memory, able to serve itself and its adapters."""

    backend: str

    def info(self) -> dict:
        """name, backend, path, n_ctx, chat_template_digest, adapters loaded."""

    def generate(self, messages: list[dict], sampling: Sampling, adapter: str | None,
                 on_token: TokenCallback, cancelled: CancelCheck) -> GenerationResult:
        """Blocking; may be called from several threads at once (the backend
        batches or serialises). Raises PromptTooLong, AdapterError, Cancelled
        is reported as finish_reason="cancelled" with the partial text."""

    def check_adapter(self, adapter: str) -> None:
        """Load the adapter at this path (once) and raise AdapterError if it
        does not fit this base model."""

    def close(self) -> None:
        """Free native memory."""


def template_digest(template: str | None) -> str:
    """A short, stable digest of a chat template, stored with every reply."""
    return hashlib.sha256((template or "").encode("utf-8")).hexdigest()[:16]


def build_messages(history: list[dict], system_prompt: str) -> list[dict]:
    """Prepend the system prompt (persona) to a pane's history, validated."""
    if not isinstance(history, list) or not history:
        raise BadRequest("messages must be a non-empty list")
    out = []
    if system_prompt:
        out.append({"role": "system", "content": system_prompt})
    for item in history:
        if (not isinstance(item, dict) or item.get("role") not in ("system", "user", "assistant")
                or not isinstance(item.get("content"), str)):
            raise BadRequest("each message needs role (system/user/assistant) and string content")
        out.append({"role": item["role"], "content": item["content"]})
    if out[-1]["role"] != "user":
        raise BadRequest("the last message must be the user's")
    return out
