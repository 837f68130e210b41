"""A small client for OpenAI-compatible chat endpoints (OpenAI, vLLM, llama.cpp's server...).

Standard library only, so discovery needs no SDK. The key is read from an
environment variable at call time and never written anywhere: runs record the
variable's name, not its value.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

from engine.errors import EngineError

DEFAULT_KEY_ENV = "HAL_API_KEY"


class ApiError(EngineError):
    kind = "api_error"


class ChatClient:
    """POST {base_url}/chat/completions with retries on rate limits and server errors."""

    def __init__(self, base_url: str, model: str = "", key_env: str = DEFAULT_KEY_ENV, timeout_s: float = 120.0,
                 retries: int = 2):
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ApiError(f"the api judge needs an http(s) base URL, not {base_url!r}",
                           "for example http://127.0.0.1:8000/v1", kind="bad_request")
        from engine.api_url import check_api_base

        self.base_url = check_api_base(base_url)  # no credentials in the URL: the key goes in HAL_API_KEY
        self.key_env = key_env or DEFAULT_KEY_ENV
        self.timeout_s = timeout_s
        self.retries = retries
        self.model = model or self._first_model()

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.key_env) or (os.environ.get("OPENAI_API_KEY") if self.key_env == DEFAULT_KEY_ENV
                                               else None)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _request(self, path: str, payload: dict | None = None) -> dict:
        url = f"{self.base_url}{path}"
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        last = ""
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(url, data=data, headers=self._headers(),
                                         method="GET" if payload is None else "POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                body = exc.read().decode("utf-8", "replace")[:300]
                last = f"HTTP {exc.code}: {body}"
                if exc.code in (401, 403):
                    raise ApiError(f"the endpoint refused the key (HTTP {exc.code})",
                                   f"set the key in the environment variable {self.key_env}") from None
                if exc.code not in (408, 429, 500, 502, 503, 504):
                    raise ApiError(f"the endpoint answered HTTP {exc.code}", body) from None
            except urllib.error.URLError as exc:
                last = str(exc.reason)
                if attempt == self.retries:
                    raise ApiError(f"cannot reach {self.base_url}: {exc.reason}") from None
            except (TimeoutError, ValueError) as exc:
                last = str(exc)
            if attempt < self.retries:
                time.sleep(min(8.0, 1.0 * 2 ** attempt))
        raise ApiError(f"the endpoint failed after {self.retries + 1} tries", last)

    def _first_model(self) -> str:
        """Servers that host one model (llama.cpp, vLLM) name it under /models."""
        try:
            listed = self._request("/models").get("data") or []
        except ApiError:
            listed = []
        return str(listed[0].get("id")) if listed and isinstance(listed[0], dict) else "default"

    def complete(self, messages: list[dict], max_tokens: int, temperature: float,
                 seed: int | None = None) -> tuple[str, str]:
        """(text, finish reason)."""
        payload = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        if seed is not None:
            payload["seed"] = seed
        body = self._request("/chat/completions", payload)
        try:
            choice = body["choices"][0]
            return str(choice["message"].get("content") or ""), str(choice.get("finish_reason") or "stop")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ApiError("the endpoint's answer has no choices[0].message", json.dumps(body)[:300]) from None
