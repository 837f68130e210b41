"""The unit a judge rates: one speaker of one dialogue.

A Turing game yields two dialogues (sides A and B) that share a ``group`` so
that cross-validation can keep a game's sides together.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

HUMAN = "human"
AI = "ai"

# "W: text", "12. P: text", "3) D: text"; anything else continues the last turn.
_LINE_RE = re.compile(r"^\s*(?:\d{1,4}[.)]?\s*)?(?P<spk>[A-Za-z][A-Za-z0-9_]{0,15}):\s?(?P<text>.*)$")
_JUNK_RE = re.compile(r"^\s*(?:\d{1,4}[.)]?)?\s*$|^\s*</?dialogue>\s*$", re.I)


class Turn(NamedTuple):
    speaker: str
    text: str


@dataclass(frozen=True)
class Dialogue:
    id: str
    turns: tuple[Turn, ...]
    rated_speaker: str
    label: str | None = None  # "human" / "ai" / None
    group: str | None = None
    ratings: dict[int, float] | None = None  # precomputed by an outside judge
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_human(self) -> bool | None:
        return None if self.label is None else self.label == HUMAN

    def speaker_lines(self) -> list[str]:
        return [t.text for t in self.turns if t.speaker == self.rated_speaker]

    def exchanges(self) -> list[tuple[str, str]]:
        """(what the partner said just before, the rated reply) for each rated turn."""
        out, last_other = [], ""
        for t in self.turns:
            if t.speaker == self.rated_speaker:
                out.append((last_other, t.text))
            else:
                last_other = t.text
        return out

    def speaker_text(self) -> str:
        return "\n".join(self.speaker_lines())

    def digest(self) -> str:
        """What a judge sees, hashed: the turns and who is rated (not id or label)."""
        payload = json.dumps([self.rated_speaker, [list(t) for t in self.turns]], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def normalise_label(value: Any) -> str | None:
    """'Human'/'human'/1/True -> 'human'; 'ai', an AI model's name, 0/False -> 'ai'; empty -> None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return HUMAN if value else AI
    if isinstance(value, (int, float)):
        return HUMAN if value == 1 else AI if value == 0 else None
    text = str(value).strip()
    if not text:
        return None
    return HUMAN if text.lower() == HUMAN else AI


def parse_transcript(text: str, speakers: set[str] | None = None) -> list[Turn]:
    """Split a transcript into turns; lines without a known prefix continue the last turn.

    ``speakers`` limits which prefixes count, so "Note: ..." inside a message
    is not taken for a new speaker.
    """
    turns: list[list[str]] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        m = _LINE_RE.match(line)
        if m and (speakers is None or m.group("spk") in speakers):
            turns.append([m.group("spk"), m.group("text").rstrip()])
        elif turns and not _JUNK_RE.match(line):
            turns[-1][1] = (turns[-1][1] + "\n" + line.rstrip()).strip("\n")
    return [Turn(s, t.strip()) for s, t in turns]
