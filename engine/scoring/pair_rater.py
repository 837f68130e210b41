"""A blind pairwise rater: an OpenAI-compatible chat endpoint asked, for one opening
line and two replies A and B, "which speaker is the human?" on the paper's human-study
scale (Certainly A, Likely A, Tie, Likely B, Certainly B).

It reuses the api judge's HTTP client (:class:`~engine.scoring.judges.api.ApiJudge`):
the key from HAL_API_KEY / OPENAI_API_KEY (or the keyring), held in memory only;
a hard deadline and a size cap on every answer; retries on timeouts, 429 and 5xx;
a malformed answer sent back with the reason for another try; error texts scrubbed
of the key.

The answer is a JSON object ``{"verdict": "<one of the five>"}``. With
``response_format="auto"`` the rater asks for OpenAI structured outputs (a JSON
schema) first; an endpoint that refuses that request (HTTP 400/422, or an error
naming response_format, as llama-cpp-python's server's HTTP 500) gets JSON mode
with the schema as a grammar, then plain JSON mode, then no format at all, and the
first format that worked is kept.
"""

from __future__ import annotations

import json
import re
import threading
import time

from engine.scoring.judges.api import FORMATS, MAX_CONTENT, ApiJudge, _Failure, public_url
from engine.scoring.judges.base import JudgeUnavailable, RatingError

PROMPT_VERSION = 1
SCALE = ("Certainly A", "Likely A", "Tie", "Likely B", "Certainly B")
AUTO_FORMATS = ("json_schema", "json_object+schema", "json_object", "none")
MAX_REPLY_CHARS = 4000
SYSTEM = ("You judge short chat replies: which of two speakers is the human. "
          "You reply with a single JSON object and nothing else.")
_FORMAT_REFUSED = re.compile(r"^HTTP (400|404|415|422)\b")


def _format_refused(reason: str) -> bool:
    """An endpoint's refusal of the answer format: a 400/404/415/422, or any HTTP error
    naming response_format (llama-cpp-python's server answers 500 to a json_schema)."""
    return bool(_FORMAT_REFUSED.match(reason)) or (reason.startswith("HTTP ") and "response_format" in reason)


def normalise(text: str) -> str | None:
    """One of :data:`SCALE` for an answer such as 'likely_b' or ' CERTAINLY  A'; None otherwise."""
    if not isinstance(text, str):
        return None
    key = re.sub(r"[\s_\-]+", " ", text).strip().lower()
    for name in SCALE:
        if key == name.lower():
            return name
    return None


def parse_verdict(content) -> str:
    """Validate an answer: a JSON object whose "verdict" is one of the five names.

    Raises ValueError with a short reason fit to send back to the model."""
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
    if not isinstance(obj, dict) or "verdict" not in obj:
        raise ValueError('the JSON object had no "verdict"')
    found = normalise(obj["verdict"])
    if found is None:
        raise ValueError(f'"verdict" must be one of {", ".join(SCALE)}')
    return found


def _clip(text: str) -> str:
    text = (text or "").strip()
    return text if len(text) <= MAX_REPLY_CHARS else text[:MAX_REPLY_CHARS] + " [...]"


def messages(prompt: str, reply_a: str, reply_b: str) -> list[dict]:
    """The question, the same for both orders but for which reply is called A."""
    options = ", ".join(f'"{s}"' for s in SCALE)
    user = ("Someone opened a chat with the line below, and two speakers, A and B, each answered it. "
            "One of them is a human and the other is an AI. Which speaker is the human?\n\n"
            f"Opening line:\n{_clip(prompt)}\n\nSpeaker A:\n{_clip(reply_a)}\n\nSpeaker B:\n{_clip(reply_b)}\n\n"
            f"Answer with one of: {options} (Tie: you cannot tell). Reply with one JSON object of the form "
            '{"verdict": V}, where V is one of those five answers.')
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


class PairRater(ApiJudge):
    """Asks an endpoint which of two replies a human wrote; see the module docstring.

    ``ask(prompt, a, b)`` returns one of :data:`SCALE` or raises RatingError."""

    def __init__(self, base_url: str | None = None, model: str | None = None, timeout: float = 120.0,
                 retries: int = 2, response_format: str = "auto", concurrency: int = 2,
                 temperature: float = 0.0, max_tokens: int = 32):
        if response_format != "auto" and response_format not in FORMATS:
            raise JudgeUnavailable(f"unknown response format {response_format!r}",
                                   detail="auto or one of " + ", ".join(FORMATS))
        super().__init__(questionnaire="hal16", cache=False, model=model, base_url=base_url, timeout=timeout,
                         retries=retries, response_format="none", concurrency=concurrency,
                         temperature=temperature, max_tokens=max_tokens)
        self._formats = list(AUTO_FORMATS) if response_format == "auto" else [response_format]
        self._format_lock = threading.Lock()
        self.stats.update({"format_fallbacks": 0})

    @property
    def rater(self) -> str:
        """The rater's name in the store: ``llm:<model>``."""
        return f"llm:{self.model}"

    @property
    def format(self) -> str:
        return self._formats[0]

    def describe(self) -> dict:
        return {"rater": self.rater, "endpoint": public_url(self.base_url), "model": self.model,
                "response_format": self.format, "prompt_version": PROMPT_VERSION,
                "key": "set" if self._key_is_set() else "none"}

    def _key_is_set(self) -> bool:
        return super().describe().get("key") == "set"

    def _schema(self, ids=None) -> dict:
        return {"type": "object", "additionalProperties": False, "required": ["verdict"],
                "properties": {"verdict": {"type": "string", "enum": list(SCALE)}}}

    def _body(self, msgs: list[dict], fmt: str) -> dict:
        body = {"model": self.model, "messages": msgs, "temperature": self.temperature,
                "max_tokens": self.max_tokens}
        if fmt == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif fmt == "json_object+schema":
            body["response_format"] = {"type": "json_object", "schema": self._schema()}
        elif fmt == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "verdict", "strict": True, "schema": self._schema()}}
        return body

    def _post(self, msgs: list[dict]) -> str:
        """One answer's content; a request refused for its answer format moves to the next format."""
        while True:
            fmt = self.format
            try:
                data = self._call("POST", "/chat/completions", self._body(msgs, fmt))
            except _Failure as exc:
                with self._format_lock:
                    if _format_refused(exc.reason) and len(self._formats) > 1 and self._formats[0] == fmt:
                        self._formats.pop(0)
                        self.stats["format_fallbacks"] += 1
                        continue
                    if _format_refused(exc.reason) and self._formats[0] != fmt:
                        continue  # another thread moved on already
                raise
            try:
                return data["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                raise _Failure("the answer held no choices[0].message.content") from None

    def ask(self, prompt: str, reply_a: str, reply_b: str, item: str = "") -> tuple[str, str]:
        """(verdict, the raw content it came from); malformed answers go back with the reason."""
        base = messages(prompt, reply_a, reply_b)
        msgs, last, attempt = base, "", 0
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retries"] += 1
            self.stats["requests"] += 1
            try:
                content = self._post(msgs)
            except _Failure as exc:
                last = exc.reason
                if not exc.retry:
                    break
                time.sleep(exc.wait)
                continue
            try:
                return parse_verdict(content), content[:500]
            except ValueError as exc:
                last = f"malformed answer: {exc}"
                shown = content[:2000] if isinstance(content, str) else json.dumps(content)[:2000]
                msgs = base + [
                    {"role": "assistant", "content": shown},
                    {"role": "user", "content": f"That reply could not be used: {exc}. Reply again with only "
                                                'the JSON object {"verdict": V}, V one of '
                                                + ", ".join(SCALE) + "."}]
        tries = attempt + 1
        self.stats["failed_items"] += 1
        raise RatingError(self._scrub(f"{last} (after {tries} {'try' if tries == 1 else 'tries'})", 400),
                          item=item)
