"""Win rates, intervals and votes needed, against arithmetic done by hand."""

import math

import pytest

from engine.results.pairs import all_pairs, pair_result
from engine.results.stats import bootstrap_mean, votes_needed, wilson


def test_win_rate_mixes_the_five_point_scale_and_keeps_both_bad_apart(V):
    votes = [
        V("A", "B", "certainly_left"),   # A left, certainly A  -> 1
        V("B", "A", "likely_right"),     # A right, likely A    -> 0.75
        V("A", "B", "tie"),              #                      -> 0.5
        V("A", "B", "likely_right"),     # A left, likely B     -> 0.25
        V("B", "A", "certainly_right"),  # A right, certainly A -> 1
        V("A", "B", "both_bad"),         # apart
        V("A", "C", "certainly_left"),   # another pairing: ignored
    ]
    r = pair_result("A", "B", votes)
    # (1 + 0.75 + 0.5 + 0.25 + 1) / 5 = 3.5 / 5 = 0.7
    assert r["n"] == 5 and r["win_rate"] == pytest.approx(0.7)
    assert r["both_bad"] == 1 and r["both_bad_share"] == pytest.approx(1 / 6, abs=1e-4)
    assert r["counts"] == {"certainly_a": 2, "likely_a": 1, "tie": 1, "likely_b": 1, "certainly_b": 0}
    # Wilson with 3.5 successes of 5, z = 1.96: z² = 3.8415, denom = 1 + 3.8415/5 = 1.7683,
    # centre = (0.7 + 0.38415)/1.7683 = 0.6131, half = 1.96·sqrt(0.21/5 + 3.8415/100)/1.7683
    # = 1.96·0.28358/1.7683 = 0.3143  ->  (0.2988, 0.9274)
    assert r["ci"] == pytest.approx([0.2988, 0.9274], abs=2e-4)
    # z = (0.7 - 0.5)/sqrt(0.25/5) = 0.8944 -> two-sided p = 0.371
    assert r["p_value"] == pytest.approx(0.371, abs=1e-3)
    # votes needed at p = 0.7: ((1.96·0.5 + 0.8416·sqrt(0.21)) / 0.2)² = (1.3657/0.2)² = 46.6 -> 47
    assert r["votes_needed"] == 47 and r["more_votes_needed"] == 42
    assert len(r["rating_ids"]) == 5 and len(r["both_bad_rating_ids"]) == 1
    assert set(r["method"]) == {"win_rate", "ci", "votes_needed", "p_value"}
    # the same votes from B's side mirror exactly: 1 - 0.7
    assert pair_result("B", "A", votes)["win_rate"] == pytest.approx(0.3)


def test_wilson_interval_sanity():
    # textbook values: 8 of 10 -> (0.4902, 0.9433); 0 of 10 -> (0, 0.2775)
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    lo, hi = wilson(0, 10)
    assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson(0, 0) is None
    # more votes at the same rate -> narrower, and the rate stays inside
    w10, w100 = wilson(7, 10), wilson(70, 100)
    assert w100[1] - w100[0] < w10[1] - w10[0]
    assert w100[0] < 0.7 < w100[1]


def test_bootstrap_interval_sanity():
    scores = [1, 0.75, 0.5, 0.25, 1] * 20
    lo, hi = bootstrap_mean(scores, seed=1)
    assert lo < 0.7 < hi and hi - lo < 0.2
    assert bootstrap_mean(scores, seed=1) == (lo, hi)  # seeded: reproducible
    assert bootstrap_mean([1, 1, 1]) == (1.0, 1.0)
    assert bootstrap_mean([]) is None


def test_votes_needed_formula():
    # p = 0.6: (1.96·0.5 + 0.8416·sqrt(0.24))/0.1 = (0.98 + 0.4123)/0.1 = 13.92 -> 193.85 -> 194
    assert votes_needed(0.6) == 194
    # symmetric around 0.5
    assert votes_needed(0.4) == 194
    # p = 0.9: (0.98 + 0.8416·0.3)/0.4 = 1.2325/0.4 = 3.081 -> 9.49 -> 10
    assert votes_needed(0.9) == 10
    assert votes_needed(0.5) is None and votes_needed(None) is None
    assert math.isclose(votes_needed(0.75), 29)  # (0.98 + 0.8416·0.4330)/0.25 = 5.378 -> 28.9


def test_pairing_with_zero_votes_is_reported_not_crashed(V):
    votes = [V("A", "B", "both_bad")]
    r = all_pairs(votes, pair=("A", "C"))[0]
    assert r["n"] == 0 and r["win_rate"] is None and r["ci"] is None and r["votes_needed"] is None
    assert "no votes" in r["message"]
    only_bad = all_pairs(votes)[0]
    assert only_bad["n"] == 0 and "both bad" in only_bad["message"]


def test_pairs_are_oriented_adapter_first(V):
    votes = [V("Smol", "Smol + v3", "likely_right")]
    r = all_pairs(votes)[0]
    assert (r["a"], r["b"]) == ("Smol + v3", "Smol") and r["win_rate"] == 0.75
