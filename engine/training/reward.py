"""The reward a round optimises: judge ratings per trait turned into one score.

Rounds see only ``Reward``: ``judge_many([(prompt_messages, reply), ...])``
gives a score and per-trait ratings for each reply. ``load_reward`` plugs in
the engine's scoring judges when they are installed, and falls back to a small
surface judge of our own so rounds and tests run without them.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass, field
from typing import Callable, Protocol

from engine.errors import BadRequest


@dataclass
class Judgement:
    score: float
    traits: dict[int, float | None] = field(default_factory=dict)


class Reward(Protocol):
    judge: str
    weights_ref: str
    questionnaire: str

    def judge_many(self, items: list[tuple[list[dict], str]]) -> list[Judgement]:
        """Score each (prompt messages, reply text)."""


def to_dialogue(prompt_messages: list[dict], reply: str, did: str = "reply"):
    """The scoring package's unit: the user is "I", the rated model "W"."""
    from engine.scoring.dialogue import Dialogue, Turn

    turns = [Turn("I" if m["role"] == "user" else "W", m["content"])
             for m in prompt_messages if m["role"] in ("user", "assistant")]
    turns.append(Turn("W", reply))
    return Dialogue(id=did, turns=tuple(turns), rated_speaker="W")


# -- a small surface judge (the stand-in until engine.scoring's judges exist) --
_EMOJI = re.compile(r"[\U0001F300-\U0001FAFF\u2600-\u27BF]|[:;]-?[)(DPp]|(\w)\1{2,}")
_SLANG = re.compile(r"\b(lol|lmao|tbh|idk|u|ur|rn|omg|ya|yeah|nah|gonna|wanna|kinda|haha\w*)\b", re.I)
_FORMAT = re.compile(r"^\s*([-*•]|\d+[.)]|#+)\s", re.M)
_AI_TALK = re.compile(r"\b(as an ai|language model|i'?m an ai|assistant|i don'?t have (personal|feelings))",
                      re.I)


def surface_ratings(reply: str) -> dict[int, float | None]:
    """Ratings 1..5 for traits visible on the surface (ids of the 32-trait list)."""
    words = len(reply.split())
    letters = [c for c in reply if c.isalpha()]
    lower = sum(c.islower() for c in letters) / len(letters) if letters else 0.5
    clamp = lambda x: float(min(5.0, max(1.0, x)))  # noqa: E731
    return {
        1: clamp(5.0 - (words - 8) / 10.0),  # brief
        2: clamp(1.0 + 2.0 * len(_SLANG.findall(reply))),  # slang
        3: clamp(1.0 + 4.0 * (lower - 0.85) / 0.15) if letters else 3.0,  # lowercase texting
        5: clamp(1.0 + 2.0 * len(_EMOJI.findall(reply))),  # emoji / elongation
        6: clamp(5.0 - 2.0 * len(_FORMAT.findall(reply))),  # no formal formatting
        20: 4.0 if "?" in reply else 2.0,  # asks something back
        25: 1.0 if _AI_TALK.search(reply) else 4.0,  # no AI meta-talk
    }


class SurfaceReward:
    """Surface ratings scored by a weights file (traits it cannot see count neutral)."""

    judge = "surface"

    def __init__(self, weights: str = "hal16_published"):
        from engine.scoring.traits import load_weights

        self._weights = load_weights(weights)
        self.weights_ref = self._weights.ref
        self.questionnaire = self._weights.questionnaire

    def judge_many(self, items):
        from engine.scoring.score import score_ratings

        out = []
        for _, reply in items:
            ratings = surface_ratings(reply) if reply.strip() else {k: 1.0 for k in (1, 6, 25)}
            s = score_ratings(ratings, self._weights)
            out.append(Judgement(s.score, {k: ratings.get(k) for k in self._weights.weights}))
        return out


class ScoringReward:
    """Any judge of ``engine.scoring`` that rates dialogues, plus a weights file."""

    def __init__(self, judge: str, weights: str = "hal16_published"):
        from engine.scoring.traits import load_weights

        self.judge = judge
        self._weights = load_weights(weights)
        self.weights_ref = self._weights.ref
        self._rater = _scoring_rater(judge)
        self.questionnaire = getattr(self._rater, "questionnaire_ref", self._weights.questionnaire)

    def judge_many(self, items):
        from engine.scoring.score import score_ratings

        dialogues = [to_dialogue(msgs, reply, f"r{i}") for i, (msgs, reply) in enumerate(items)]
        rated = self._rater(dialogues)
        out = []
        for ratings in rated:
            s = score_ratings(ratings, self._weights)
            out.append(Judgement(s.score, {k: ratings.get(k) for k in self._weights.weights}))
        return out


def _scoring_rater(judge: str) -> Callable:
    """A function dialogues -> [ratings], from whichever judge API engine.scoring offers."""
    if importlib.util.find_spec("engine.scoring.judges") is None:
        raise BadRequest(f"the {judge!r} judge is not installed in this engine; use 'surface'")
    judges = importlib.import_module("engine.scoring.judges")
    make = getattr(judges, "get_judge", None) or getattr(judges, "load_judge", None)
    if make is None:
        raise BadRequest("engine.scoring.judges offers no get_judge()")
    instance = make(judge)
    rate_many = getattr(instance, "rate_many", None)
    if rate_many is not None:
        return lambda ds: [dict(r) if isinstance(r, dict) else dict(r.ratings) for r in rate_many(ds)]
    return lambda ds: [dict(instance.rate(d)) for d in ds]


def load_reward(judge: str = "auto", weights: str = "hal16_published") -> Reward:
    """"auto" picks the engine's lexical judge when present, else the surface judge."""
    if judge == "surface":
        return SurfaceReward(weights)
    if judge == "auto":
        try:
            return ScoringReward("lexical", weights)
        except (BadRequest, ImportError, AttributeError):
            return SurfaceReward(weights)
    return ScoringReward(judge, weights)


def as_reward_fn(reward: Reward) -> Callable[[list[dict], str], float]:
    """The small function form: reward(prompt_messages, reply_text) -> float."""
    return lambda msgs, reply: reward.judge_many([(msgs, reply)])[0].score
