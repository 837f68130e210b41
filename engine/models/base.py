"""The small interface both backends (llama.cpp, transformers+PEFT) implement."""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol

from engine.errors import BadRequest


@dataclass
class Sampling:
    """Sampling settings; both panes of a turn get identical ones."""

    temperature: float = 0.7
    top_p: float = 0.9
    max_tokens: int = 256
    seed: int = 0
    system_prompt: str = ""

    @classmethod
    def from_dict(cls, data: dict | None) -> "Sampling":
        if data is not None and not isinstance(data, dict):
            raise BadRequest("sampling must be an object {temperature, top_p, max_tokens, seed, system_prompt}")
        data = dict(data or {})
        out = cls()
        for name, kind, lo, hi in (("temperature", float, 0.0, 5.0), ("top_p", float, 0.0, 1.0),
                                   ("max_tokens", int, 1, 32768), ("seed", int, 0, 2**31 - 1)):
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
        return out

    def to_dict(self) -> dict:
        return asdict(self)


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
