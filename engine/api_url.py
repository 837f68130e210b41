"""The base URL of an OpenAI-compatible endpoint, checked before anything is sent.

A key belongs in ``HAL_API_KEY`` (sent as a Bearer header and never stored).
A URL that carries credentials (``user:password@host`` or a query string such
as ``?key=...``) is refused: it would be sent oddly (Basic auth replacing the
key, the query string breaking the request path) and could be echoed back or
written where the URL is shown. The refusal never repeats the secret.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from engine.errors import BadRequest


def check_api_base(url: str | None, flag: str = "--api-base") -> str:
    """``url`` without a trailing slash, or BadRequest saying what is wrong."""
    if not url or not isinstance(url, str):
        raise BadRequest(f"the api judge needs an http(s) base URL ({flag} or HAL_API_BASE)",
                         detail="for example http://127.0.0.1:8000/v1")
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise BadRequest(f"{flag} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"{flag} must be an http(s) URL with a host, such as http://127.0.0.1:8000/v1")
    shown = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "") + parts.path
    if "@" in parts.netloc or parts.query or parts.fragment or ";" in parts.path:
        raise BadRequest(f"{flag} must not hold credentials (user:password@, a query string or a fragment): "
                         f"use {shown} and put the key in the HAL_API_KEY environment variable")
    return url.strip().rstrip("/")
