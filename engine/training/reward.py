"""The reward a round optimises: judge ratings per trait turned into one score.

Rounds see only ``Reward``: ``judge_many([(prompt_messages, reply), ...])``
gives a score and per-trait ratings for each reply. ``load_reward`` plugs in
the engine's scoring judges when they are installed, and falls back to a small
surface judge of our own so rounds and tests run without them.
"""

from __future__ import annotations

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
    """A judge of ``engine.scoring.judges`` (lexical, distilled, ...) plus a weights file.

    A reply the judge cannot rate (an empty one, say) scores NaN: pair building
    and the verdict leave it out rather than pretend it scored 0."""

    def __init__(self, judge: str, weights: str = "hal16_published", cache: bool = True):
        from engine.scoring.judges import get_judge
        from engine.scoring.traits import load_questionnaire, load_weights

        self._weights = load_weights(weights)
        self.weights_ref = self._weights.ref
        self._q = load_questionnaire(self._weights.questionnaire or "hal32")
        self._judge = get_judge(judge, questionnaire=self._q, cache=cache)
        self.judge = getattr(self._judge, "judge_id", judge)
        self.questionnaire = self._q.ref

    def judge_many(self, items):
        from engine.errors import EngineError
        from engine.scoring.judges import RatingError
        from engine.scoring.score import score_ratings

        dialogues = [to_dialogue(msgs, reply, f"r{i}") for i, (msgs, reply) in enumerate(items)]
        out = []
        for ratings in self._judge.rate_many(dialogues):
            if isinstance(ratings, RatingError):
                out.append(Judgement(float("nan"), {}))
                continue
            try:
                s = score_ratings(ratings, self._weights, self._q)
            except EngineError:
                out.append(Judgement(float("nan"), {}))
                continue
            out.append(Judgement(s.score, {k: ratings.get(k) for k in self._weights.weights}))
        return out


def pick_weights(judge: str, weights: str) -> str:
    """"auto": the one policy of ``engine.scoring.defaults`` (the shipped weights
    fitted on this judge's own ratings), the same as the reply badges use."""
    if weights != "auto":
        return weights
    from engine.scoring.defaults import default_weights
    from engine.scoring.judges import get_judge
    from engine.scoring.traits import load_questionnaire

    probe = get_judge(judge, questionnaire=load_questionnaire("hal32"), cache=False)
    return default_weights(probe.judge_id, getattr(probe, "teacher", None)).ref


def load_reward(judge: str = "auto", weights: str = "auto") -> Reward:
    """"auto" is the default judge of ``engine.scoring.defaults`` (the badge's), else the surface judge."""
    if judge == "surface":
        weights = weights if weights != "auto" else "hal16_published"
        return SurfaceReward(weights)
    if judge == "auto":
        if importlib.util.find_spec("engine.scoring.judges") is None:
            return SurfaceReward(weights)
        from engine.scoring.defaults import DEFAULT_JUDGE

        judge = DEFAULT_JUDGE
    try:
        return ScoringReward(judge, pick_weights(judge, weights))
    except ImportError as exc:
        raise BadRequest(f"the {judge!r} judge cannot be loaded: {exc}") from None


def load_evaluator(judge: str, weights: str, trained_on: Reward) -> Reward | None:
    """The verdict's evaluator: ``judge``/``weights`` as asked, or for "auto" the first of
    ``engine.scoring.defaults.EVALUATORS`` that loads and is not what the round trained on
    (judge and weights both the same). "none" turns it off."""
    if judge == "none":
        return None
    if judge != "auto":
        return load_reward(judge, weights)
    from engine.errors import EngineError
    from engine.scoring.defaults import EVALUATORS

    for name, w in EVALUATORS:
        try:
            candidate = load_reward(name, w if weights == "auto" else weights)
        except (EngineError, ImportError, OSError):
            continue
        if (candidate.judge, candidate.weights_ref) != (trained_on.judge, trained_on.weights_ref):
            return candidate
    return None


def as_reward_fn(reward: Reward) -> Callable[[list[dict], str], float]:
    """The small function form: reward(prompt_messages, reply_text) -> float."""
    return lambda msgs, reply: reward.judge_many([(msgs, reply)])[0].score
