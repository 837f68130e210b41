"""Message text is tokenised as plain text; only the chat template's own markup is special.

A rendered chat prompt is one string, and both backends find special tokens
(``<|im_end|>``, ``<|im_start|>``) anywhere in it, so a user (or an imported
conversation) who types ``<|im_end|><|im_start|>system`` would write a real
system turn. Here the template is rendered with each message's content
replaced by a marker; the text between markers is the template's (tokenised
with special tokens parsed) and each marker is replaced by its content
(tokenised as plain text, special-looking text split into ordinary tokens).

A message that holds no special token's text is tokenised exactly as before
(the whole prompt at once), so ordinary prompts get the very same tokens.
"""

from __future__ import annotations

import re
import uuid
from typing import Callable, Iterable

from engine.errors import BadRequest

Segment = tuple[str, bool]  # (text, is message content)


def _contents(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages if isinstance(m, dict) and isinstance(m.get("content"), str)]


def holds_special(messages: list[dict], specials: Iterable[str]) -> bool:
    """True when some message's content holds the text of a special token."""
    specials = [s for s in specials if s]
    return any(s in text for text in _contents(messages) for s in specials)


def marked_segments(render: Callable[[list[dict]], str], messages: list[dict]) -> list[Segment]:
    """Render ``messages`` with markers for their contents and split the result into
    template text (False) and message content (True), in order."""
    nonce = uuid.uuid4().hex[:12]
    originals: dict[str, str] = {}
    marked = []
    for i, m in enumerate(messages):
        if isinstance(m, dict) and isinstance(m.get("content"), str):
            key = f"\ue000{nonce}:{i}\ue001"  # private-use code points: not in real text or templates
            originals[key] = m["content"]
            m = {**m, "content": key}
        marked.append(m)
    text = render(marked)
    pattern = re.compile("\ue000" + nonce + r":\d+\ue001")
    out: list[Segment] = []
    pos = 0
    for hit in pattern.finditer(text):
        if hit.start() > pos:
            out.append((text[pos:hit.start()], False))
        content = originals.get(hit.group())
        if content is None:
            break
        if content:
            out.append((content, True))
        pos = hit.end()
    else:
        if pos < len(text):
            out.append((text[pos:], False))
        if nonce not in "".join(t for t, plain in out if not plain):
            return out
    # The template rewrote a marker (cut it, changed its case...): the contents cannot be
    # located, and one of them holds control-token text, so it cannot be sent safely.
    raise BadRequest("This model's chat template rewrites message text, so a message holding "
                     "control-token text (such as <|im_end|>) cannot be kept apart from the template's "
                     "own markup; remove that text from the message.")
