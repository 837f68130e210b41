"""The wire between the studio and the engine: newline-delimited JSON envelopes.

Every message is one line: ``{"v": 1, "id", "type", "parent", "content"}``.
Events caused by a command carry that command's id as ``parent``. This module
is pure (no I/O) so both processes and the tests share one definition.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 8 * 1024 * 1024  # a longer line is refused, never parsed
# A JSON escape of a UTF-16 surrogate: legal JSON, but alone it is not text (it cannot be
# written out as UTF-8), so a line holding one is checked as a whole before it is accepted.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")

# Types the engine emits as events for a command.
EVENT_TYPES = frozenset(
    {"hello_reply", "token", "progress", "metric", "log", "result", "error", "state"}
)


class ProtocolError(ValueError):
    """A line that is not a valid envelope; ``kind`` names what was wrong."""

    def __init__(self, kind: str, message: str, msg_id: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.msg_id = msg_id


@dataclass
class Message:
    type: str
    content: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    parent: str | None = None
    v: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        """One line of UTF-8 JSON ending in a newline (no raw newlines inside)."""
        payload = {"v": self.v, "id": self.id, "type": self.type,
                   "parent": self.parent, "content": self.content}
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: send '?' for it rather than no answer
            return text.encode("utf-8", "replace")


def _is_text(value: Any) -> bool:
    """True when every string in ``value`` (keys too) can be written as UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError, ValueError, TypeError):
        return False
    return True


def decode(line: bytes | str) -> Message:
    """Parse one line into a Message, or raise ProtocolError saying why."""
    if isinstance(line, bytes):
        if len(line) > MAX_LINE_BYTES:
            raise ProtocolError("too_large", f"line of {len(line)} bytes exceeds {MAX_LINE_BYTES}")
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("bad_encoding", f"line is not UTF-8: {exc}") from None
    elif len(line) > MAX_LINE_BYTES:
        raise ProtocolError("too_large", f"line of {len(line)} characters exceeds {MAX_LINE_BYTES}")
    line = line.strip()
    if not line:
        raise ProtocolError("empty", "empty line")
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_envelope", "a message must be a JSON object")
    msg_id = obj.get("id")
    msg_id = msg_id if isinstance(msg_id, str) and _is_text(msg_id) else None
    if _SURROGATE_ESCAPE.search(line) and not _is_text(obj):
        raise ProtocolError("bad_encoding", "the message holds a lone UTF-16 surrogate (\\ud800-\\udfff), "
                            "which is not text", msg_id)
    for key, kind in (("id", str), ("type", str)):
        if not isinstance(obj.get(key), kind) or not obj.get(key):
            raise ProtocolError("bad_envelope", f"field {key!r} must be a non-empty string", msg_id)
    v = obj.get("v", PROTOCOL_VERSION)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProtocolError("bad_envelope", "field 'v' must be an integer", msg_id)
    if v != PROTOCOL_VERSION:
        raise ProtocolError("bad_version", f"protocol version {v} is not {PROTOCOL_VERSION}", msg_id)
    parent = obj.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise ProtocolError("bad_envelope", "field 'parent' must be a string or null", msg_id)
    content = obj.get("content", {})
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise ProtocolError("bad_envelope", "field 'content' must be an object", msg_id)
    return Message(type=obj["type"], content=content, id=obj["id"], parent=parent, v=v)


MAX_ERROR_MESSAGE = 2000  # characters; a message may quote a hostile value
MAX_ERROR_DETAIL = 20000


def _cut(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more characters]"


def error_content(kind: str, message: str, detail: str = "") -> dict[str, str]:
    """The content of an ``error`` event: errors cross the wire as data. A
    message that quotes a huge argument is cut short, never sent whole."""
    return {"kind": kind, "message": _cut(message, MAX_ERROR_MESSAGE), "detail": _cut(detail, MAX_ERROR_DETAIL)}
