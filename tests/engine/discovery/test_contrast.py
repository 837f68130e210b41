"""The contrast path on tables whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from engine.discovery.contrast import ContrastConfig, contrast_report, group_features, rank_features, weighted_auc
from engine.errors import BadRequest
from engine.scoring.importers import load_jsonl

from .helpers import write_games


def test_weighted_auc_matches_sklearn_and_explicit_resampling():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 6, 80).astype(float)  # many ties
    y = (rng.random(80) < 0.5).astype(float)
    assert weighted_auc(x, y, np.ones((1, 80)))[0] == pytest.approx(roc_auc_score(y, x))
    idx = rng.integers(0, 80, 80)  # one bootstrap resample, as counts
    counts = np.bincount(idx, minlength=80).astype(float)[None, :]
    assert weighted_auc(x, y, counts)[0] == pytest.approx(roc_auc_score(y[idx], x[idx]))


def _table(n_games=60, seed=0):
    """Per game a human (y=1) and an AI row. Columns:
    sep: humans higher, overlapping a little; rev: humans lower; dup: 3*sep + 1 (a duplicate);
    noise: unrelated; const: always 2."""
    rng = np.random.default_rng(seed)
    y = np.tile([1.0, 0.0], n_games)
    groups = np.repeat(np.arange(n_games), 2)
    sep = y * 2.0 + rng.normal(0, 1, len(y))
    rev = -y * 3.0 + rng.normal(0, 1, len(y))
    noise = rng.normal(0, 1, len(y))
    X = np.column_stack([sep, rev, 3 * sep + 1, noise, np.full(len(y), 2.0)])
    return ["sep", "rev", "dup", "noise", "const"], X, y, groups


def test_auc_interval_direction_and_effect_sizes():
    names, X, y, groups = _table()
    ranked, skipped = rank_features(names, X, y, groups, ContrastConfig(n_boot=400, seed=3))
    by = {r["name"]: r for r in ranked}
    assert skipped == [{"name": "const", "reason": "no variation (always 2)"}]
    # a shift of 3 SD separates almost perfectly; 2 SD gives AUC = Phi(2/sqrt 2) ~ 0.92
    assert by["rev"]["direction"] == "lower in humans" and by["rev"]["auc"] > 0.95
    assert by["sep"]["direction"] == "higher in humans" and 0.82 < by["sep"]["auc"] < 0.98
    assert by["dup"]["auc"] == by["sep"]["auc"]  # a monotone transform has the same AUC
    for r in ranked:
        assert r["ci"][0] <= r["auc"] <= r["ci"][1]
        assert r["cliffs_delta"] == pytest.approx(2 * r["auc_raw"] - 1, abs=1e-3)
        assert np.sign(r["cohens_d"]) == np.sign(r["cliffs_delta"])
    assert by["noise"]["ci"][0] < 0.5 + 0.02 and by["noise"]["auc"] < 0.65  # the interval reaches chance
    assert by["sep"]["ci"][0] > 0.75
    assert by["sep"]["paired_win"] > 0.8 and by["sep"]["n_pairs"] == 60
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4] and ranked[0]["name"] == "rev"


def test_near_duplicates_are_grouped():
    names, X, y, groups = _table()
    groups_found = group_features(names[:4], X[:, :4], threshold=0.7)
    assert sorted(map(sorted, groups_found)) == [["dup", "sep"], ["noise"], ["rev"]]


def test_report_on_dialogues_names_groups_and_strata(tmp_path):
    path = write_games(tmp_path / "a.jsonl", 12, seed=1, ai_model="bot-1")
    more = write_games(tmp_path / "b.jsonl", 12, seed=2, ai_model="bot-2")
    dialogues = load_jsonl(path).dialogues + [d for d in load_jsonl(more).dialogues]
    dialogues = [d if d.meta["ai_model"] == "bot-1" else type(d)(**{**d.__dict__, "group": "b" + d.group})
                 for d in dialogues]
    report = contrast_report(dialogues, ContrastConfig(n_boot=200, by="ai_model"))
    top = {c["name"]: c for c in report["candidates"]}
    assert top["words_per_msg"]["auc"] == 1.0 and top["words_per_msg"]["direction"] == "lower in humans"
    assert top["words_per_msg"]["statement"] == "Keeps each message short."
    assert top["period_end_frac"]["direction"] == "lower in humans"
    lead = next(g for g in report["groups"] if "words_per_msg" in g["members"])
    assert {"chars_per_msg", "words_per_msg"} <= set(lead["members"])  # one theme, shown together
    assert set(report["strata"]) == {"bot-1", "bot-2"} and report["strata"]["bot-1"]["n_games"] == 12


def test_too_few_dialogues_is_a_clear_message(tmp_path):
    dialogues = load_jsonl(write_games(tmp_path / "few.jsonl", 3)).dialogues
    with pytest.raises(BadRequest, match="too few dialogues to contrast: need at least 5 human and 5 AI"):
        contrast_report(dialogues, ContrastConfig(n_boot=50))
