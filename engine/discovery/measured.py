"""The ``measured`` judge: rates discovered traits that carry a measure, and the rest lexically.

A trait accepted from a contrast feature keeps, in its questionnaire's
provenance, the feature and two anchors taken from the discovery data (the
AI-like end rates 1, the human-like end 5). Traits of the 32-trait list are
rated by the lexical judge's rules; anything else (a theme the judge's
explanations produced, with no measure) is None: it needs the llm or api judge.
"""

from __future__ import annotations

import numpy as np

from engine.discovery.candidates import feature_columns
from engine.scoring.dialogue import Dialogue
from engine.scoring.features import feature_matrix
from engine.scoring.judges.base import Judge, Ratings, RatingError, rows_to_ratings
from engine.scoring.judges.lexical import RULES_VERSION, rules

MEASURE_VERSION = 1


def measures(questionnaire) -> dict[int, dict]:
    """{trait id: {feature, at1, at5}} for the traits of this questionnaire that have one."""
    found = {}
    for key, info in (questionnaire.provenance.get("traits") or {}).items():
        m = info.get("measure") if isinstance(info, dict) else None
        if m and int(key) in questionnaire.trait_ids:
            found[int(key)] = m
    return found


def ramp(x: np.ndarray, at1: float, at5: float) -> np.ndarray:
    """1 at ``at1``, 5 at ``at5``, linear between, clipped; NaN stays NaN."""
    if at5 == at1:
        return np.where(np.isnan(x), np.nan, 3.0)
    return 1.0 + 4.0 * np.clip((x - at1) / (at5 - at1), 0.0, 1.0)


class MeasuredJudge(Judge):
    name = "measured"
    clean_output = True
    cacheable = False  # cheap to recompute, and an unsaved questionnaire's measures have no version to key on

    def __init__(self, questionnaire=None, cache=None):
        super().__init__(questionnaire, cache=False)

    @property
    def judge_id(self) -> str:
        return f"measured@{MEASURE_VERSION}.{RULES_VERSION}"

    def rate_matrix(self, dialogues: list[Dialogue]) -> tuple[list[int], np.ndarray]:
        ids = self.questionnaire.trait_ids
        out = np.full((len(dialogues), len(ids)), np.nan)
        found = measures(self.questionnaire)
        lexical = rules(feature_matrix(dialogues)) if any(t not in found for t in ids) else {}
        features = sorted({m["feature"] for m in found.values()})
        F = feature_columns(dialogues, features) if features else None
        for j, tid in enumerate(ids):
            if tid in found:
                m = found[tid]
                out[:, j] = ramp(F[:, features.index(m["feature"])], float(m["at1"]), float(m["at5"]))
            elif tid in lexical:
                out[:, j] = lexical[tid]
        return ids, np.round(out, 3)

    def _rate_batch(self, dialogues: list[Dialogue]) -> list[Ratings | RatingError]:
        ids, R = self.rate_matrix(dialogues)
        return rows_to_ratings(ids, R)
