"""The judges that explain: the local model (llama.cpp) and an OpenAI-compatible endpoint.

Both answer free text; the local one can also score the two letters of a
verdict straight from its next-token logits, which a 135M model does far more
reliably than writing "Human: A". Answers are cached by (judge, prompt,
settings) so a rerun, or the studio reopening a run, costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time

import numpy as np

from engine import paths
from engine.discovery.api_client import DEFAULT_KEY_ENV, ChatClient


def auto_threads(n: int = 0) -> int:
    """0: every core on a quiet machine, one on a busy one (two spinning llama.cpp
    threads on a loaded 2-core box ran over ten times slower than one)."""
    if n > 0:
        return n
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] > cores * 0.75
    except OSError:
        busy = False
    return 1 if busy else min(cores, 8)


class AnswerCache:
    def __init__(self, path=None):
        self.path = path or paths.cache_dir() / "discovery_answers.sqlite3"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value TEXT, created REAL)")
        self._db.commit()

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str):
        with self._lock:
            row = self._db.execute("SELECT value FROM answers WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?,?,?)", (key, json.dumps(value), time.time()))
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ExplainJudge:
    """``complete`` answers a chat; ``letter_scores`` (when ``scores_letters``) rates A against B."""

    judge_id = "judge"
    scores_letters = False

    def __init__(self, cache: AnswerCache | None = None):
        self.cache = cache

    def complete(self, messages: list[dict], max_tokens: int, temperature: float, seed: int) -> tuple[str, str]:
        """(text, finish reason: 'stop' or 'length')."""
        key = AnswerCache.key("text", self.judge_id, messages, max_tokens, temperature, seed)
        if self.cache and (hit := self.cache.get(key)) is not None:
            return hit[0], hit[1]
        text, finish = self._complete(messages, max_tokens, temperature, seed)
        if self.cache:
            self.cache.put(key, [text, finish])
        return text, finish

    def letter_scores(self, messages: list[dict]) -> float:
        """logit('A') - logit('B') for the first token of the answer."""
        key = AnswerCache.key("letters", self.judge_id, messages)
        if self.cache and (hit := self.cache.get(key)) is not None:
            return float(hit)
        value = float(self._letter_scores(messages))
        if self.cache:
            self.cache.put(key, value)
        return value

    def _complete(self, messages, max_tokens, temperature, seed) -> tuple[str, str]:
        raise NotImplementedError

    def _letter_scores(self, messages) -> float:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"judge": self.judge_id}

    def close(self) -> None:
        if self.cache:
            self.cache.close()


class LocalJudge(ExplainJudge):
    """A GGUF model (the bundled SmolLM2-135M-Instruct by default) through engine.models."""

    def __init__(self, model: str = "bundled", threads: int = 0, cache: AnswerCache | None = None):
        from engine.models.pool import ModelPool
        from engine.models.spec import ModelSpec

        super().__init__(cache)
        self.threads = auto_threads(threads)
        self._pool = ModelPool({"n_threads": self.threads})
        self.model, self.adapter = self._pool.get(ModelSpec(source=model or "bundled"))
        info = self.model.info()
        self.judge_id = f"llm:{info.get('name') or model}:{info.get('chat_template_digest', '')}"
        self.scores_letters = hasattr(self.model, "next_token_logits") and hasattr(self.model, "tokenize")
        if self.scores_letters:
            self._ids = {c: sorted({self.model.tokenize(c)[-1], self.model.tokenize(" " + c)[-1]}) for c in "AB"}

    def _complete(self, messages, max_tokens, temperature, seed) -> tuple[str, str]:
        from engine.models.base import Sampling

        sampling = Sampling(temperature=temperature, top_p=0.9, max_tokens=max_tokens, seed=seed)
        result = self.model.generate(messages, sampling, self.adapter, lambda _t: None, lambda: False)
        return result.text, result.finish_reason

    def _letter_scores(self, messages) -> float:
        logits = np.asarray(self.model.next_token_logits(messages, self.adapter), dtype=float)
        return float(logits[self._ids["A"]].max() - logits[self._ids["B"]].max())

    def describe(self) -> dict:
        return {"judge": self.judge_id, "kind": "llm", "threads": self.threads, "model": self.model.info().get("name")}

    def close(self) -> None:
        self._pool.close()
        super().close()


class ApiJudge(ExplainJudge):
    def __init__(self, base_url: str, model: str = "", key_env: str = DEFAULT_KEY_ENV, timeout_s: float = 120.0,
                 cache: AnswerCache | None = None):
        super().__init__(cache)
        self.client = ChatClient(base_url, model, key_env, timeout_s)
        self.judge_id = f"api:{self.client.base_url}:{self.client.model}"

    def _complete(self, messages, max_tokens, temperature, seed) -> tuple[str, str]:
        return self.client.complete(messages, max_tokens, temperature, seed)

    def describe(self) -> dict:
        return {"judge": self.judge_id, "kind": "api", "base_url": self.client.base_url, "model": self.client.model,
                "key_env": self.client.key_env}


def make_judge(kind: str, *, model: str = "bundled", threads: int = 0, api_base: str = "", api_model: str = "",
               api_key_env: str = DEFAULT_KEY_ENV, use_cache: bool = True) -> ExplainJudge:
    cache = AnswerCache() if use_cache else None
    try:
        if kind == "llm":
            return LocalJudge(model, threads, cache)
        if kind == "api":
            base = api_base or os.environ.get("HAL_API_BASE", "")
            return ApiJudge(base, api_model, api_key_env, cache=cache)
    except BaseException:
        if cache:
            cache.close()
        raise
    if cache:
        cache.close()
    from engine.errors import BadRequest

    raise BadRequest(f"unknown explaining judge {kind!r}; choose llm or api")
