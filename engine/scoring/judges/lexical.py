"""The lexical judge: traits rated from measurable surface features, no model.

Each visible trait has one hand-written rule: a feature (or a small blend of
features) mapped linearly onto 1..5 between two anchor values chosen by us.
Traits whose meaning does not show on the surface (insider references, quirks,
consistency of a persona, local places...) are returned as None, not guessed.
Bump ``RULES_VERSION`` whenever a rule changes, so cached ratings are not reused.
"""

from __future__ import annotations

import numpy as np

from engine.scoring.dialogue import Dialogue
from engine.scoring.features import INDEX, feature_matrix
from engine.scoring.judges.base import Judge, Ratings, RatingError, rows_to_ratings

RULES_VERSION = 1


def _col(F: np.ndarray, name: str) -> np.ndarray:
    return F[:, INDEX[name]]


def _ramp(x: np.ndarray, at1: float, at5: float) -> np.ndarray:
    """1 at ``at1``, 5 at ``at5``, linear between, clipped; NaN stays NaN."""
    return 1.0 + 4.0 * np.clip((x - at1) / (at5 - at1), 0.0, 1.0)


def _filled(x: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), fallback, x)


def rules(F: np.ndarray) -> dict[int, np.ndarray]:
    """Trait id -> ratings for each row of a feature matrix (NaN = cannot tell)."""
    c = lambda name: _col(F, name)  # noqa: E731
    lower_start = c("lower_start_frac")
    lower_i = _filled(c("lower_i_frac"), lower_start)
    formality = (30 * c("formal_rate") + 0.5 * np.minimum(c("list_lines"), 2) + 10 * c("semicolon_colon_rate")
                 + 5 * np.maximum(c("long_word_rate") - 0.03, 0) + 0.3 * c("long_msg_frac"))
    roughness = (0.35 * c("no_end_punct_frac") + 0.2 * _filled(lower_start, 0) + 0.15 * _filled(lower_i, 0)
                 + 6 * c("missing_apos_rate") + 10 * c("misspell_rate") + 5 * c("odd_spacing_rate"))
    short_goodbye = c("farewell_last") * (c("last_msg_words") <= 8)
    return {
        1: _ramp(c("words_per_msg"), 30, 4),
        2: _ramp(c("slang_rate"), 0, 0.15),
        3: _ramp(0.6 * lower_start + 0.4 * lower_i, 0, 1),
        4: _ramp(roughness, 0.1, 0.9),
        5: _ramp(c("emoji_per_msg") + c("elong_per_msg"), 0, 0.4),
        6: _ramp(formality, 0.8, 0),
        7: _ramp(c("contraction_rate") + c("discourse_rate"), 0, 0.15),
        8: _ramp(c("laugh_per_msg") + 0.5 * c("emoji_per_msg"), 0, 0.4),
        9: _ramp(c("opinion_per_msg"), 0, 0.5),
        12: _ramp(c("emotion_per_msg"), 0, 0.5),
        14: _ramp(c("self_repair_per_msg"), 0, 0.3),
        15: _ramp(c("hedge_per_msg"), 0, 0.6),
        16: _ramp(c("dont_know_per_msg"), 0, 0.3),
        17: _ramp(c("partner_overlap"), 0, 0.35),
        20: _ramp(0.5 * c("question_msg_frac") + c("question_back_per_msg"), 0, 0.6),
        21: _ramp(c("support_per_msg"), 0, 0.4),
        22: _ramp(short_goodbye, 0, 1),
        25: _ramp(c("meta_ai_per_msg"), 0.3, 0),
        26: _ramp(c("recent_per_msg"), 0, 0.4),
        27: _ramp(c("digit_rate") + c("proper_noun_rate"), 0, 0.08),
        28: _ramp(c("first_person_rate") + 0.1 * c("emotion_per_msg"), 0.02, 0.14),
        29: _ramp(c("self_fact_per_msg") + 2 * c("my_rate"), 0, 0.4),
        30: _ramp(c("plans_per_msg"), 0, 0.4),
        32: _ramp(c("routine_per_msg"), 0, 0.3),
    }


VISIBLE_TRAITS = sorted(rules(np.zeros((1, len(INDEX)))))


class LexicalJudge(Judge):
    name = "lexical"
    clean_output = True

    @property
    def judge_id(self) -> str:
        return f"lexical@{RULES_VERSION}"

    def rate_matrix(self, dialogues: list[Dialogue]) -> tuple[list[int], np.ndarray]:
        """All ratings as an (n, traits) array with NaN for unseen traits; no cache."""
        table = rules(feature_matrix(dialogues))
        ids = self.questionnaire.trait_ids
        out = np.full((len(dialogues), len(ids)), np.nan)
        for j, tid in enumerate(ids):
            if tid in table:
                out[:, j] = table[tid]
        return ids, np.round(out, 3)

    def _rate_batch(self, dialogues: list[Dialogue]) -> list[Ratings | RatingError]:
        ids, R = self.rate_matrix(dialogues)
        return rows_to_ratings(ids, R)
