"""Ids that become file names: one strict pattern, checked wherever an id meets a path.

An id that a user, a file or a wire message supplies (a judge, weights, a
questionnaire, an adapter, a round, a discovery run) is joined to a folder
only after ``check_id``: letters, digits, '_', '-' and '.', starting with a
letter or digit, no '..', at most 64 characters. Nothing else can name a
file outside its folder.
"""

from __future__ import annotations

import re

from engine.errors import BadRequest

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_ID_RE = re.compile(ID_PATTERN + r"\Z")


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and bool(_ID_RE.match(value)) and ".." not in value


def check_id(value: object, what: str = "id") -> str:
    """``value`` when it is a safe id; else BadRequest naming what was wrong."""
    if is_valid_id(value):
        return value  # type: ignore[return-value]
    shown = repr(value)
    shown = shown[:80] + ("…" if len(shown) > 80 else "")
    raise BadRequest(f"bad {what} {shown}: an id is 1-64 letters, digits, '_', '-' or '.', "
                     "starts with a letter or digit and holds no path parts")
