"""The verdict's checks beyond the training judge's Δ: an evaluator, a
length-controlled Δ, looping, and a headline that names what failed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.training.verdict import bootstrap_ci
from engine.training.verdict_checks import headline, length_controlled, paired_delta


def test_a_gain_that_is_only_length_vanishes_once_length_is_taken_out():
    rng = np.random.default_rng(0)
    base_words = rng.integers(25, 45, size=40)
    new_words = rng.integers(4, 12, size=40)  # the round made replies short
    style = lambda w: -1.5 * math.log1p(w) + 3.0  # noqa: E731  (a judge that likes short replies)
    base = [style(w) + rng.normal(0, 0.05) for w in base_words]
    new = [style(w) + rng.normal(0, 0.05) for w in new_words]
    raw = paired_delta(base, new, bootstrap_ci)
    lc = length_controlled(base, new, base_words, new_words, bootstrap_ci)
    assert raw["delta"] > 1.0 and raw["delta_ci"][0] > 0
    assert abs(lc["delta"]) < 0.1 and lc["slope_per_log_word"] == pytest.approx(-1.5, abs=0.1)


def test_a_gain_at_equal_length_survives_length_control():
    rng = np.random.default_rng(1)
    words = rng.integers(5, 40, size=40)
    base = [-0.5 * math.log1p(w) + rng.normal(0, 0.1) for w in words]
    new = [b + 0.8 for b in base]
    lc = length_controlled(base, new, words, words, bootstrap_ci)
    assert lc["delta"] == pytest.approx(0.8, abs=0.01) and lc["delta_ci"][0] > 0.7


def test_unscored_replies_are_left_out_and_too_few_give_no_figure():
    lc = length_controlled([1.0, float("nan"), 2.0], [2.0, 1.0, None], [3, 4, 5], [3, 4, 5], bootstrap_ci)
    assert lc["n"] == 1 and lc["delta"] is None


LOOPS_OK = {"base": {"looping": 3, "n": 40}, "aligned": {"looping": 1, "n": 40}, "rose": False}


def test_headline_says_more_human_only_when_every_check_holds():
    good_ev = {"delta": 0.9, "delta_ci": [0.4, 1.3]}
    good_lc = {"delta": 0.5}
    assert headline(good_ev, good_lc, LOOPS_OK)["sounds_more_human"]
    bad = headline({"delta": 0.2, "delta_ci": [-0.1, 0.5]}, {"delta": -0.3},
                   {**LOOPS_OK, "aligned": {"looping": 9, "n": 40}, "rose": True})
    assert not bad["sounds_more_human"] and len(bad["failed"]) == 3
    assert "evaluator" in bad["text"] and "looping rose (3 -> 9 of 40" in bad["text"]
    assert "length-controlled" in bad["text"]
    assert headline(None, None, None)["failed"] == ["no evaluator score", "looping was not measured",
                                                   "no length-controlled Δ"]
