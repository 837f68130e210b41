"""Ratings read from the store as flat votes, with filters and identity leaks.

Every statistic works on :class:`Vote` rows so that each figure can name the
rating ids behind it, and so that tests can build votes by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.results.names import AdapterNames, BadSpec, base_name, decode_spec

# The paper's human-study scoring of the 5-point scale, from the left reply's side.
LEFT_SCORE = {"certainly_left": 1.0, "likely_left": 0.75, "tie": 0.5,
              "likely_right": 0.25, "certainly_right": 0.0}
DECISIVE_LEFT = ("certainly_left", "likely_left")
DECISIVE_RIGHT = ("likely_right", "certainly_right")

# Words that give a reply's maker away; model names of both sides are added per vote.
DEFAULT_LEAK_TOKENS = ("SmolLM", "Qwen", "Llama", "Mistral", "Gemma", "Phi-3", "GPT",
                       "ChatGPT", "Claude", "Hugging Face", "HuggingFace",
                       "as an AI language model", "as an AI model", "I am an AI")

_GENERIC_NAME_WORDS = {"instruct", "chat", "base", "model", "small", "large", "tiny", "mini",
                       "gguf", "lora", "adapter", "aligned", "human", "bundled"}


@dataclass(frozen=True)
class Vote:
    """One rating, flattened: who was on which side, what was said, the verdict."""

    rating_id: str
    verdict: str
    left_model: str
    right_model: str
    blind: bool = True
    created_at: str = ""
    turn_id: str = ""
    left_reply_id: str = ""
    right_reply_id: str = ""
    left_text: str = ""
    right_text: str = ""
    prompt: str = ""
    prompt_set: str = ""
    note: str = ""
    leak: str = ""  # what gave a model away, "" when nothing did
    rater: str = ""  # who rated: "" the researcher ("me"), "llm:<model>", or a colleague's name

    @property
    def left_score(self) -> float | None:
        """1 / 0.75 / 0.5 / 0.25 / 0 for the left reply; None for "both bad"."""
        return LEFT_SCORE.get(self.verdict)

    @property
    def blind_clean(self) -> bool:
        """Blind and no reply named a model: fit for blind statistics."""
        return self.blind and not self.leak

    def score_for(self, model: str) -> float | None:
        """The vote's score from ``model``'s side (None for both bad)."""
        s = self.left_score
        if s is None:
            return None
        return s if model == self.left_model else 1.0 - s


@dataclass
class Filters:
    """Which ratings a figure is computed on. Empty fields do not filter."""

    since: str | None = None       # ISO date or time, inclusive
    until: str | None = None       # ISO date or time, inclusive (a date covers the whole day)
    models: tuple[str, ...] = ()   # keep votes where a side's identity contains any of these
    blind: bool | None = None      # True: blind without leaks; False: everything else
    prompt_set: str | None = None
    pair: tuple[str, str] | None = None  # exactly this pairing, either side
    rater: str | None = None  # only this rater's votes ("me": the researcher's own)

    def keep(self, v: Vote) -> bool:
        if self.since and v.created_at[:len(self.since)] < self.since:
            return False
        if self.until and v.created_at[:len(self.until)] > self.until:
            return False
        if self.models:
            sides = (v.left_model.lower(), v.right_model.lower())
            if not any(m.lower() in s for m in self.models for s in sides):
                return False
        if self.blind is not None and v.blind_clean != self.blind:
            return False
        if self.prompt_set is not None and v.prompt_set != self.prompt_set:
            return False
        if self.pair and {v.left_model, v.right_model} != set(self.pair):
            return False
        if self.rater is not None and v.rater != rater_key(self.rater):
            return False
        return True

    def describe(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, ())}


@dataclass
class LeakConfig:
    """What counts as a reply naming its maker (matched case-insensitively, whole words)."""

    tokens: tuple[str, ...] = DEFAULT_LEAK_TOKENS
    model_names: bool = True  # also the words of either side's model name (4+ letters)

    def find(self, text: str, names: tuple[str, ...] = ()) -> str:
        """The first giveaway found in ``text`` ("" if none). Listed tokens match
        as word starts ("SmolLM" finds "SmolLM2"); words of model names match whole."""
        text = text or ""
        for word in self.tokens:
            if re.search(rf"(?<![A-Za-z0-9]){re.escape(word)}", text, re.IGNORECASE):
                return word
        if self.model_names:
            for name in names:
                for word in re.split(r"[^A-Za-z0-9]+", name):
                    if (len(word) >= 4 and not word.isdigit()
                            and word.lower() not in _GENERIC_NAME_WORDS
                            and re.search(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])",
                                          text, re.IGNORECASE)):
                        return word
        return ""


ME = "me"  # how the researcher's own ratings (rater '' or NULL in the store) are named


def rater_key(name: str | None) -> str:
    """The stored rater for a name given by a person: "me" (or empty) is the researcher."""
    name = (name or "").strip()
    return "" if name.lower() == ME else name


def rater_label(stored: str | None) -> str:
    """A stored rater as shown: the researcher's own ratings are "me"."""
    return stored or ME


def raters(store) -> list[str]:
    """Every rater with at least one rating, as shown ("me" first)."""
    found = {rater_label(r[0]) for r in store.db.execute(_RATER_SQL).fetchall()}
    return sorted(found, key=lambda r: (r != ME, r))


def identity(model_name: str | None, adapter: str | None, model_spec: str | dict | None = None,
             model_path: str | None = "", names: AdapterNames | None = None) -> str:
    """A model as the researcher knows it: the base's display name, plus the adapter's
    name if any ("SmolLM2-135M-Instruct + DPO round 3 · default"). Raises ValueError
    (``BadSpec``) for a stored model_spec that is not a JSON object."""
    spec = decode_spec(model_spec)
    name = base_name(model_name, spec, model_path or "")
    if adapter is not None and not isinstance(adapter, str):
        raise BadSpec(f"the reply's adapter is a {type(adapter).__name__}, not text")
    adapter = (adapter or "").strip()
    if adapter:
        return f"{name or '?'} + {(names or AdapterNames()).name(adapter)}"
    return name or "?"


@dataclass
class Loaded:
    """Votes that passed the filters, plus the ratings that could not be read."""

    votes: list[Vote]
    problems: list[dict] = field(default_factory=list)

    @property
    def self_votes(self) -> list[Vote]:
        """Votes with the same model (and adapter) on both sides: counted, but they
        compare nothing, so no win rate, leaderboard or Elo uses them."""
        return [v for v in self.votes if v.left_model == v.right_model]


_SQL = """
SELECT r.id, r.turn_id, r.verdict, r.note, r.blind, r.created_at,
       r.left_reply_id, r.right_reply_id, t.prompt, t.prompt_set, t.id AS turn_found,
       lr.id AS l_id, lr.model_name AS l_name, lr.adapter AS l_adapter, lr.model_spec AS l_spec,
       lr.text AS l_text, lr.model_path AS l_path,
       rr.id AS r_id, rr.model_name AS r_name, rr.adapter AS r_adapter, rr.model_spec AS r_spec,
       rr.text AS r_text, rr.model_path AS r_path,
       COALESCE(NULLIF(r.rater, ''),
                (SELECT ro.rater FROM rating_origins ro WHERE ro.rating_id = r.id), '') AS rater
FROM ratings r
LEFT JOIN turns t ON t.id = r.turn_id
LEFT JOIN replies lr ON lr.id = r.left_reply_id
LEFT JOIN replies rr ON rr.id = r.right_reply_id
ORDER BY r.created_at, r.rowid
"""
_RATER_SQL = """SELECT DISTINCT COALESCE(NULLIF(r.rater, ''),
                (SELECT ro.rater FROM rating_origins ro WHERE ro.rating_id = r.id), '') FROM ratings r"""


def load_votes(store, filters: Filters | None = None, leaks: LeakConfig | None = None) -> Loaded:
    """Read every rating as a :class:`Vote` (rating-time order), leak-checked and filtered."""
    filters = filters or Filters()
    leaks = leaks or LeakConfig()
    votes, problems = [], []
    names = AdapterNames(store)
    for row in store.db.execute(_SQL).fetchall():
        try:
            vote = _vote(row, leaks, names)
        except _Unreadable as exc:
            problems.append({"rating_id": _text(row[0]), "reason": str(exc)})
            continue
        if filters.keep(vote):
            votes.append(vote)
    return Loaded(votes, problems)


class _Unreadable(ValueError):
    """A stored rating (or a reply it points at) that cannot be read as a vote."""


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _vote(row, leaks: LeakConfig, names: AdapterNames) -> Vote:
    """One row of _SQL as a vote; a damaged row raises _Unreadable saying what is wrong."""
    (rid, turn_id, verdict, note, blind, created, lid, rid2, prompt, pset, turn_found,
     l_id, l_name, l_adapter, l_spec, l_text, l_path, r_id, r_name, r_adapter, r_spec, r_text,
     r_path, rater) = row
    if not l_id or not r_id:
        raise _Unreadable("refers to a reply that is not in the store")
    if verdict not in LEFT_SCORE and verdict != "both_bad":
        raise _Unreadable(f"unknown verdict {_text(verdict)[:80]!r}")
    sides = []
    for side, name, adapter, spec, path in (("left", l_name, l_adapter, l_spec, l_path),
                                            ("right", r_name, r_adapter, r_spec, r_path)):
        try:
            sides.append(identity(_text(name) if isinstance(name, bytes) else name, adapter, spec,
                                  _text(path), names))
        except (ValueError, TypeError, AttributeError) as exc:
            raise _Unreadable(f"its {side} reply cannot be read: {exc} (a damaged or hand-edited "
                              "row; the rating is left out)") from None
    left, right = sides
    l_text, r_text = _text(l_text), _text(r_text)
    model_names = tuple(n for n in (l_name, r_name) if isinstance(n, str) and n)
    leak = ""
    for side, text in (("left", l_text), ("right", r_text)):
        hit = leaks.find(text, model_names)
        if hit:
            leak = f"{side} reply says {hit!r}"
            break
    try:
        blind = bool(int(blind or 0))
    except (TypeError, ValueError):
        raise _Unreadable(f"its 'blind' field is {_text(blind)[:40]!r}, not 0 or 1") from None
    return Vote(rating_id=_text(rid), verdict=verdict, left_model=left, right_model=right,
                blind=blind, created_at=_text(created), turn_id=_text(turn_id),
                left_reply_id=_text(lid), right_reply_id=_text(rid2), left_text=l_text,
                right_text=r_text, prompt=_text(prompt), prompt_set=_text(pset),
                note=_text(note), leak=leak, rater=_text(rater))
