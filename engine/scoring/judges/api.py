"""The api judge: any OpenAI-compatible chat endpoint asked for a JSON object of
ratings, {trait_id: 1..5}, for one speaker of a dialogue.

The endpoint's answer is untrusted data: its size is capped, it is parsed as
JSON only (never evaluated), every asked trait must be there with a number in
1..5, and a malformed answer is sent back with the reason for another try. An
item that still fails comes back as a RatingError with that reason, never as
a silent rating.

The key comes from HAL_API_KEY or OPENAI_API_KEY, or the OS keyring (service
``hal-studio``, user = the endpoint's host) when the ``keyring`` package is
installed. It lives only in memory: not in the judge id, the cache, errors or
``describe()``.

HTTP goes through ``httpx2`` (the httpx the openai client itself runs on),
not the openai client: we need a hard total deadline and a size cap on each
answer, our own retry loop that feeds the validation error back, and error
texts we can scrub of the key; the SDK's retries and typed parsing would sit
in the way of all four.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx2

from engine.scoring.dialogue import Dialogue
from engine.scoring.judges.base import Judge, JudgeUnavailable, Ratings, RatingError

PROMPT_VERSION = 1
KEY_ENVS = ("HAL_API_KEY", "OPENAI_API_KEY")
KEYRING_SERVICE = "hal-studio"
MAX_BODY = 1 << 20  # bytes of one HTTP answer
MAX_CONTENT = 64 * 1024  # characters of the model's message we are willing to parse
FORMATS = ("json_object", "json_schema", "json_object+schema", "none")
RATED, PARTNER = "Speaker", "Partner"
SYSTEM = ("You rate how one person in a chat comes across, statement by statement, on a 1 to 5 scale. "
          "You reply with a single JSON object and nothing else.")


class _Failure(Exception):
    """One request went wrong; ``retry`` says whether trying again may help."""

    def __init__(self, reason: str, retry: bool = True, wait: float = 0.0):
        super().__init__(reason)
        self.reason, self.retry, self.wait = reason, retry, wait


def resolve_key(base_url: str) -> str | None:
    """The API key from the environment, else the OS keyring if it is installed."""
    for name in KEY_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    try:
        import keyring  # optional
    except ImportError:
        return None
    try:
        return keyring.get_password(KEYRING_SERVICE, urlsplit(base_url).hostname or "") or None
    except Exception:  # a keyring with no backend raises its own errors
        return None


def public_url(base_url: str) -> str:
    """The endpoint without user info, query or fragment (where keys sometimes hide)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path.rstrip('/')}"


def parse_ratings(content: str, asked: list[int]) -> dict[int, float]:
    """Validate a model's answer: a JSON object holding a 1..5 number for every asked id.

    Raises ValueError with a short reason fit to send back to the model.
    """
    if not isinstance(content, str) or not content.strip():
        raise ValueError("the reply was empty")
    if len(content) > MAX_CONTENT:
        raise ValueError(f"the reply was {len(content)} characters long")
    text = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", content.strip())
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("the reply held no JSON object")
    try:
        obj = json.loads(text[start:end + 1])
    except ValueError as exc:
        raise ValueError(f"the JSON did not parse ({exc.msg} at character {exc.pos})") from None
    if not isinstance(obj, dict):
        raise ValueError("the reply was not a JSON object")
    values: dict[int, object] = {}
    for key, value in obj.items():
        k = str(key).strip()
        if k.isdigit():
            values[int(k)] = value
    missing = [t for t in asked if t not in values]
    if missing:
        raise ValueError(f"ratings missing for statements {', '.join(map(str, missing[:12]))}")
    out: dict[int, float] = {}
    bad = []
    for t in asked:
        v = values[t]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 1 <= v <= 5:
            bad.append(t)
        else:
            out[t] = float(v)
    if bad:
        raise ValueError(f"statements {', '.join(map(str, bad[:12]))} need a number from 1 to 5")
    return out


def transcript(dialogue: Dialogue, max_chars: int = 12000) -> str:
    """'Speaker:' / 'Partner:' lines, oldest dropped first to stay under ``max_chars``."""
    lines = [f"{RATED if t.speaker == dialogue.rated_speaker else PARTNER}: {' '.join(t.text.split())}"
             for t in dialogue.turns if t.text.strip()]
    kept, used = [], 0
    for line in reversed(lines):
        if kept and used + len(line) + 1 > max_chars:
            break
        kept.append(line[:max_chars])
        used += len(line) + 1
    kept.reverse()
    if len(kept) < len(lines):
        kept.insert(0, "(earlier lines left out)")
    return "\n".join(kept)


class ApiJudge(Judge):
    """Ratings from an OpenAI-compatible endpoint (``base_url`` ends in /v1 or similar).

    ``response_format``: json_object (OpenAI's JSON mode), json_schema (OpenAI
    structured outputs), json_object+schema (JSON mode with a schema, as
    llama-cpp-python's server and some hosts take it) or none.
    """

    name = "api"

    def __init__(self, questionnaire=None, cache=True, model: str | None = None, base_url: str | None = None,
                 timeout: float = 60.0, retries: int = 2, traits_per_request: int | None = None,
                 response_format: str = "json_object", concurrency: int = 2, temperature: float = 0.0,
                 max_tokens: int | None = None, max_chars: int = 12000):
        super().__init__(questionnaire, cache)
        base_url = base_url or os.environ.get("HAL_API_BASE")
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise JudgeUnavailable("the api judge needs an http(s) base URL (--api-base or HAL_API_BASE)",
                                   detail="for example http://127.0.0.1:8000/v1")
        from engine.api_url import check_api_base

        base_url = check_api_base(base_url)  # no credentials in the URL: the key goes in HAL_API_KEY
        if response_format not in FORMATS:
            raise JudgeUnavailable(f"unknown response_format {response_format!r}",
                                   detail="one of " + ", ".join(FORMATS))
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.traits_per_request = traits_per_request
        self.response_format = response_format
        self.concurrency = max(1, int(concurrency))
        self.temperature = float(temperature)
        self.max_tokens = max_tokens
        self.max_chars = int(max_chars)
        self.__key = resolve_key(self.base_url)
        self._client = httpx2.Client(timeout=httpx2.Timeout(self.timeout), follow_redirects=False)
        self.model = model or self._first_model()
        q = repr([(t.id, t.statement) for t in self.questionnaire.traits])
        self._qdigest = hashlib.sha256(q.encode()).hexdigest()[:8]
        self.stats = {"requests": 0, "retries": 0, "failed_items": 0}

    def __repr__(self) -> str:
        return f"ApiJudge({public_url(self.base_url)!r}, model={self.model!r})"

    @property
    def judge_id(self) -> str:
        """Endpoint (without credentials), model, prompt and answer format; never the key."""
        return (f"api@{PROMPT_VERSION}:{public_url(self.base_url)}:{self.model}:{self.response_format}"
                f":q{self._qdigest}")

    def describe(self) -> dict:
        return {**super().describe(), "endpoint": public_url(self.base_url), "model": self.model,
                "key": "set" if self.__key else "none"}

    # ------------------------------------------------------------------ http
    def _scrub(self, text: str, limit: int = 240) -> str:
        """Printable, short, and without the key, before any text goes into an error."""
        text = str(text)
        if self.__key:
            text = text.replace(self.__key, "***")
        text = "".join(c if c.isprintable() else " " for c in text)
        return text[:limit] + ("..." if len(text) > limit else "")

    def _call(self, method: str, path: str, payload: dict | None = None) -> dict:
        """One HTTP exchange with a hard total deadline and a size cap; JSON back."""
        headers = {"Accept": "application/json"}
        if self.__key:
            headers["Authorization"] = f"Bearer {self.__key}"
        deadline = time.monotonic() + self.timeout
        try:
            with self._client.stream(method, self.base_url + path, json=payload, headers=headers) as r:
                body = bytearray()
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise _Failure(f"the answer was larger than {MAX_BODY} bytes", retry=False)
                    if time.monotonic() > deadline:
                        raise _Failure(f"no complete answer within {self.timeout:g} s")
                status = r.status_code
                retry_after = r.headers.get("retry-after", "")
        except httpx2.TimeoutException:
            raise _Failure(f"timed out after {self.timeout:g} s") from None
        except httpx2.HTTPError as exc:
            raise _Failure(f"cannot reach the endpoint: {self._scrub(exc)}") from None
        text = body.decode("utf-8", "replace")
        if status in (401, 403):
            raise _Failure(f"the endpoint refused the key (HTTP {status})", retry=False)
        if status == 429 or status >= 500:
            wait = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else 1.0
            raise _Failure(f"HTTP {status}: {self._scrub(text)}", wait=min(wait, 10.0))
        if status >= 400:
            raise _Failure(f"HTTP {status}: {self._scrub(text)}", retry=False)
        try:
            data = json.loads(text)
        except ValueError:
            raise _Failure(f"the endpoint did not answer JSON: {self._scrub(text, 80)!r}") from None
        if not isinstance(data, dict):
            raise _Failure("the endpoint's answer was not a JSON object")
        return data

    def _first_model(self) -> str:
        """Single-model servers (llama.cpp, vLLM) name their model under /models."""
        try:
            listed = self._call("GET", "/models").get("data")
            name = listed[0]["id"] if isinstance(listed, list) and listed and isinstance(listed[0], dict) else None
        except _Failure as exc:
            raise JudgeUnavailable(f"no model named and {public_url(self.base_url)}/models failed",
                                   detail=exc.reason) from None
        if not isinstance(name, str) or not name:
            raise JudgeUnavailable("no model named and the endpoint lists none")
        return name[:200]

    # ---------------------------------------------------------------- prompt
    def _schema(self, ids: list[int]) -> dict:
        return {"type": "object", "additionalProperties": False, "required": [str(t) for t in ids],
                "properties": {str(t): {"type": "integer", "enum": [1, 2, 3, 4, 5]} for t in ids}}

    def _payload(self, messages: list[dict], ids: list[int]) -> dict:
        body = {"model": self.model, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens or 24 + 8 * len(ids)}
        if self.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif self.response_format == "json_object+schema":
            body["response_format"] = {"type": "json_object", "schema": self._schema(ids)}
        elif self.response_format == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "ratings", "strict": True, "schema": self._schema(ids)}}
        return body

    def messages(self, dialogue: Dialogue, ids: list[int]) -> list[dict]:
        statements = "\n".join(f"{t}: {self.questionnaire.trait(t).statement}" for t in ids)
        example = ", ".join(f'"{t}": {n}' for t, n in zip(ids[:2], (2, 4)))
        user = (f"A chat between {PARTNER} and {RATED}:\n\n{transcript(dialogue, self.max_chars)}\n\n"
                f"How true is each statement below of {RATED}, judging only from how {RATED} writes above? "
                "1 = not at all, 2 = a little, 3 = partly, 4 = mostly, 5 = completely.\n\n"
                f"{statements}\n\nReply with one JSON object whose keys are the statement numbers (as strings) "
                f"and whose values are whole numbers from 1 to 5, for example {{{example}}}.")
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

    # ---------------------------------------------------------------- rating
    def _ask(self, dialogue: Dialogue, ids: list[int]) -> dict[int, float]:
        """Ratings for ``ids``: malformed answers go back to the model with the reason."""
        base = self.messages(dialogue, ids)
        messages, last = base, ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retries"] += 1
            self.stats["requests"] += 1
            try:
                data = self._call("POST", "/chat/completions", self._payload(messages, ids))
                try:
                    content = data["choices"][0]["message"]["content"]
                except (KeyError, IndexError, TypeError):
                    raise _Failure("the answer held no choices[0].message.content") from None
            except _Failure as exc:
                last = exc.reason
                if not exc.retry:
                    break
                time.sleep(exc.wait)
                continue
            try:
                return parse_ratings(content, ids)
            except ValueError as exc:
                last = f"malformed answer: {exc}"
                shown = content[:2000] if isinstance(content, str) else json.dumps(content)[:2000]
                messages = base + [
                    {"role": "assistant", "content": shown},
                    {"role": "user", "content": f"That reply could not be used: {exc}. Reply again with only the "
                                                "JSON object, one whole number from 1 to 5 for every statement."}]
        tries = attempt + 1
        raise RatingError(self._scrub(f"{last} (after {tries} {'try' if tries == 1 else 'tries'})", 400),
                          item=dialogue.id)

    def _rate_one(self, dialogue: Dialogue) -> Ratings | RatingError:
        ids = self.questionnaire.trait_ids
        step = self.traits_per_request or len(ids)
        out: Ratings = {}
        try:
            for at in range(0, len(ids), step):
                out.update(self._ask(dialogue, ids[at:at + step]))
        except RatingError as exc:
            self.stats["failed_items"] += 1
            return exc
        return out

    def _rate_batch(self, dialogues: list[Dialogue]) -> list[Ratings | RatingError]:
        if self.concurrency == 1 or len(dialogues) == 1:
            return [self._rate_one(d) for d in dialogues]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._rate_one, dialogues))

    def close(self) -> None:
        self._client.close()
