"""The judge registry: judges are looked up by name, and new ones plug in here.

A factory takes keyword options (``questionnaire``, ``cache``, judge-specific
ones such as ``model``) and returns a ``Judge``. Modules are imported only when
their judge is asked for, so listing judges stays cheap.
"""

from __future__ import annotations

from typing import Callable

from engine.scoring.dialogue import Dialogue
from engine.scoring.judges.base import Judge, JudgeUnavailable, Ratings, RatingCache, RatingError

__all__ = ["Judge", "JudgeUnavailable", "Ratings", "RatingCache", "RatingError", "available_judges",
           "get_judge", "register_judge", "PrecomputedJudge"]

_FACTORIES: dict[str, Callable[..., Judge]] = {}


def register_judge(name: str, factory: Callable[..., Judge]) -> None:
    """Add or replace a judge; later issues plug ``llm`` and ``api`` in this way."""
    _FACTORIES[name] = factory


def available_judges() -> list[str]:
    return sorted(_FACTORIES)


def get_judge(name: str, **opts) -> Judge:
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise JudgeUnavailable(f"unknown judge {name!r}", detail="known: " + ", ".join(available_judges())) from None
    return factory(**opts)


class PrecomputedJudge(Judge):
    """Hands back ratings that came with the file (e.g. the GPT-5 columns)."""

    name = "precomputed"
    cacheable = False

    def __init__(self, questionnaire=None, cache=None, source: str = "file"):
        super().__init__(questionnaire, cache=False)
        self.source = source

    @property
    def judge_id(self) -> str:
        return f"precomputed:{self.source}"

    def _rate_batch(self, dialogues: list[Dialogue]) -> list[Ratings | RatingError]:
        return [dict(d.ratings) if d.ratings else RatingError("the file holds no ratings for this item", item=d.id)
                for d in dialogues]


def _lexical(**opts) -> Judge:
    from engine.scoring.judges.lexical import LexicalJudge

    opts.pop("model", None)
    return LexicalJudge(**opts)


def _distilled(**opts) -> Judge:
    from engine.scoring.judges.distilled import DistilledJudge

    return DistilledJudge(**opts)


def _llm(**opts) -> Judge:
    """A local model's next-token probabilities over 1..5 (llama.cpp or transformers)."""
    from engine.scoring.judges.llm import LLMJudge

    return LLMJudge(**opts)


def _api(**opts) -> Judge:
    """An OpenAI-compatible chat endpoint asked for a JSON object of ratings."""
    from engine.scoring.judges.api import ApiJudge

    return ApiJudge(**opts)


def _measured(**opts) -> Judge:
    """Discovered traits with a measure (engine.discovery), the rest by the lexical rules."""
    from engine.discovery.measured import MeasuredJudge

    opts.pop("model", None)
    return MeasuredJudge(**opts)


def _precomputed(**opts) -> Judge:
    opts.pop("model", None)
    return PrecomputedJudge(**opts)


register_judge("lexical", _lexical)
register_judge("distilled", _distilled)
register_judge("precomputed", _precomputed)
register_judge("measured", _measured)
register_judge("llm", _llm)
register_judge("api", _api)
