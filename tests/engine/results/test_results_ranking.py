"""Bradley-Terry and online Elo on small tables worked out by hand."""

import math

import pytest

from engine.results.ranking import ELO_K, bradley_terry, fit_strengths, online_elo


def three_models(V):
    """Strengths 4 : 2 : 1 fit these counts exactly (fractional wins included):
    A-B: A scores 1 + 0.75 + 0.25 = 2 of 3   (expected 3·4/6 = 2)
    B-C: B wins 2 of 3                        (expected 3·2/3 = 2)
    A-C: A wins 4 of 5                        (expected 5·4/5 = 4)
    Check C: wins 1 + 1 = 2 = 3·1/3 + 5·1/5, so these are the MLE equations' solution."""
    return ([V("A", "B", "certainly_left"), V("A", "B", "likely_left"), V("B", "A", "likely_left"),
             V("B", "C", "certainly_left"), V("C", "B", "certainly_left"), V("B", "C", "certainly_left")]
            + [V("A", "C", "certainly_left") for _ in range(4)] + [V("A", "C", "certainly_right")])


def test_bradley_terry_three_models(V):
    votes = three_models(V) + [V("A", "B", "both_bad")]  # both bad: left out
    bt = bradley_terry(votes, n_boot=300)
    scores = {r["model"]: r["score"] for r in bt["models"]}
    # mean of log10(4, 2, 1) = log10(2); scores = 1000 + 400·(log10 p - log10 2)
    # A: 1000 + 400·0.30103 = 1120.4; B: 1000; C: 879.6
    assert scores == pytest.approx({"A": 1120.4, "B": 1000.0, "C": 879.6}, abs=0.1)
    assert [r["model"] for r in bt["models"]] == ["A", "B", "C"]
    assert [r["rank"] for r in bt["models"]] == [1, 2, 3]
    a = bt["models"][0]
    assert a["n"] == 8 and a["wins"] == pytest.approx(6.0)
    for r in bt["models"]:
        assert r["ci"][0] <= r["score"] <= r["ci"][1]
    assert bt["regularised"] is False and len(bt["rating_ids"]) == 11


def test_bradley_terry_anchor(V):
    bt = bradley_terry(three_models(V), n_boot=50, anchor="C")
    scores = {r["model"]: r["score"] for r in bt["models"]}
    # C pinned to 1000: B = 1000 + 400·log10(2) = 1120.4, A = 1000 + 400·log10(4) = 1240.8
    assert scores == pytest.approx({"A": 1240.8, "B": 1120.4, "C": 1000.0}, abs=0.1)
    assert bt["models"][2]["ci"][0] == pytest.approx(1000.0) == bt["models"][2]["ci"][1]


def test_two_models_strength_ratio_is_the_win_ratio():
    # wins 3 : 1 -> p ratio 3 -> difference 400·log10(3) = 190.85
    lp, reg = fit_strengths([[0, 3], [1, 0]], [[0, 4], [4, 0]])
    assert 400 * (lp[0] - lp[1]) == pytest.approx(190.85, abs=0.01) and not reg


def test_a_model_that_never_wins_is_regularised_and_finite(V):
    bt = bradley_terry([V("A", "B", "certainly_left"), V("A", "B", "certainly_left")], n_boot=20)
    assert bt["regularised"] is True and "never won" in bt["message"]
    # half a virtual tie (0.5 games, 0.25 wins each): A 2.25 vs B 0.25 of 2.5 games
    # -> ratio 9 -> A - B = 400·log10(9) = 381.7
    s = {r["model"]: r["score"] for r in bt["models"]}
    assert s["A"] - s["B"] == pytest.approx(381.7, abs=0.15)
    assert all(math.isfinite(r["ci"][0]) for r in bt["models"])


def test_leaderboard_needs_two_models(V):
    bt = bradley_terry([V("A", "A", "tie")], n_boot=10)
    assert bt["models"] == [] and "two models" in bt["message"]


def test_online_elo_updates_by_hand(V):
    votes = [V("A", "B", "certainly_left"), V("B", "A", "tie"), V("A", "C", "likely_left")]
    elo = online_elo(votes, k=32)
    # 1) A-B, expected 0.5, score 1: A = 1000 + 32·0.5 = 1016, B = 984
    assert elo["trajectory"][0] == {"rating_id": votes[0].rating_id, "A": 1016.0, "B": 984.0}
    # 2) B (984) left vs A (1016), tie: E_B = 1/(1 + 10^(32/400)) = 0.454078,
    #    delta = 32·(0.5 - 0.454078) = 1.4695 -> B = 985.4695, A = 1014.5305
    assert elo["trajectory"][1]["B"] == pytest.approx(985.47, abs=0.01)
    # 3) A (1014.5305) vs C (1000), likely A = 0.75: E_A = 1/(1 + 10^(-14.5305/400)) = 0.520869,
    #    delta = 32·(0.75 - 0.520869) = 7.3322 -> A = 1021.8627, C = 992.6678
    final = {r["model"]: r["score"] for r in elo["models"]}
    assert final == pytest.approx({"A": 1021.9, "B": 985.5, "C": 992.7}, abs=0.05)
    assert ELO_K == 4 and online_elo(votes)["k"] == 4
    assert "K = 32" in elo["method"]
