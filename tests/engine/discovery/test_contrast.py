"""The contrast path on tables whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from engine.discovery.candidates import candidate_matrix
from engine.discovery.contrast import ContrastConfig, contrast_report, group_features, rank_features, weighted_auc
from engine.errors import BadRequest
from engine.scoring.dialogue import Dialogue, Turn
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


def _side(lines, label, game, system, asks=None):
    asks = asks or ["so what do you do?"] * len(lines)
    turns = []
    for q, w in zip(asks, lines):
        turns += [Turn("I", q), Turn("W", w)]
    return Dialogue(id=f"{game}-{label}", turns=tuple(turns), rated_speaker="W", label=label, group=game,
                    meta={"ai_model": system})


def test_new_candidates_measure_what_they_say():
    d = _side(["yes", "I walked the dog this morning and then went to work", "ok.", "Went home early today"],
              "human", "g", "s", asks=["are you a bot?", "what did you do today?", "cool", "and then?"])
    names, X = candidate_matrix([d])
    v = dict(zip(names, X[0]))
    counts = np.array([1, 11, 1, 4])
    assert v["msg_len_cv"] == pytest.approx(counts.std() / counts.mean())
    assert v["one_word_frac"] == 0.5
    assert v["end_punct_mix"] == 0.25  # one message of four ends with a full stop
    assert v["start_case_mix"] == 0.5  # two start lower-case, two with a capital
    assert v["question_for_question"] == 0.0  # three questions asked, none answered with one
    assert v["probe_reply_words"] == 1.0  # "are you a bot?" -> "yes"
    flat = _side(["Hello there.", "Hello there.", "Hello there."], "ai", "g", "s")
    v = dict(zip(names, candidate_matrix([flat])[1][0]))
    assert v["msg_len_cv"] == 0 and v["end_punct_mix"] == 0 and v["start_case_mix"] == 0
    assert np.isnan(v["probe_reply_words"])  # never asked, so it does not apply


CASUAL = ["lol ya", "tbh idk", "ngl kinda tired lmao", "omg same lol", "nah fr", "ikr lol"]
PLAIN = ["I went to the shop and bought some bread", "it was raining again", "my sister called me",
         "we watched a film", "work was long today", "the bus was late"]
TIDY = ["That sounds delightful. Reading quietly in the evening is pleasant.",
        "Certainly. Long walks are rather refreshing.", "A fine question. The week was calm."]


def _mixed_games(n_games=24, seed=0):
    """Humans use some slang; the 'tidy' AI none, the 'overdo' AI nothing but slang.
    Only the humans talk about themselves (I, my), against both systems."""
    rng = np.random.default_rng(seed)
    out = []
    for g in range(n_games):
        system = "tidy" if g % 2 == 0 else "overdo"
        human = [str(rng.choice(CASUAL))] + [str(x) for x in rng.choice(PLAIN, 4, replace=False)]
        pool = TIDY if system == "tidy" else CASUAL
        ai = [str(x) for x in rng.choice(pool, 5)]
        out += [_side(human, "human", f"g{g}", system), _side(ai, "ai", f"g{g}", system)]
    return out


def test_opposite_systems_are_flagged_and_the_two_sided_ranking_finds_the_middle():
    report = contrast_report(_mixed_games(), ContrastConfig(n_boot=200, seed=1))
    assert report["systems_key"] == "ai_model" and report["systems"] == {"overdo": 12, "tidy": 12}
    slang = next(c for c in report["candidates"] if c["name"] == "slang_rate")
    per = slang["systems"]
    assert per["tidy"]["direction"] == "higher in humans" and per["tidy"]["auc"] == 1.0
    assert per["overdo"]["direction"] == "lower in humans" and per["overdo"]["auc"] == 1.0
    assert slang["direction_flips"] and len(slang["against_direction"]) == 1
    assert slang["worst_system"]["auc"] == 0.0  # against one system it is exactly backwards
    # each system counts by its games: the stratified AUC lands where the pooled one does
    assert slang["stratified_auc"] == pytest.approx(0.5, abs=0.01) and slang["auc"] < 0.65
    near = next(c for c in report["two_sided"] if c["name"] == "slang_rate")
    assert near["direction"] == "nearer the typical human level" and near["auc"] > 0.9
    assert {p["direction"] for p in near["systems"].values()} == {"humans nearer"}
    assert near["gain_over_one_sided"] > 0.3 and "everyday human level" in near["statement"]
    s = report["summary"]
    assert s["n_direction_flips"] >= 1 and s["n_at_mark"] == sum(c["auc"] >= 0.7 for c in report["candidates"])
    assert "slang_rate" in s["two_sided_top"]


def test_consistent_features_are_not_flagged_and_systems_can_be_off():
    games = _mixed_games()
    report = contrast_report(games, ContrastConfig(n_boot=200, seed=1))
    first = next(c for c in report["candidates"] if c["name"] == "first_person_rate")
    assert first["direction"] == "higher in humans" and not first["direction_flips"]
    assert first["worst_system"]["auc"] > 0.8 and first["against_direction"] == []
    plain = contrast_report(games, ContrastConfig(n_boot=100, systems="", two_sided=False))
    assert "systems" not in plain and "two_sided" not in plain and "systems" not in plain["candidates"][0]
    assert "n_direction_flips" not in plain["summary"]


def test_two_sided_centre_is_cross_fitted():
    """A feature with no relation to the label must not look typical-of-humans by construction."""
    rng = np.random.default_rng(4)
    games = []
    for g in range(40):
        for label in ("human", "ai"):
            n = int(rng.integers(2, 9))
            games.append(_side([" ".join(["word"] * int(rng.integers(1, 12))) for _ in range(n)], label, f"g{g}",
                               "one"))
    report = contrast_report(games, ContrastConfig(n_boot=200, seed=2))
    assert "systems" not in report  # one system only: nothing to stratify
    for c in report["two_sided"]:
        assert c["ci"][0] < 0.62, c["name"]  # chance stays inside (or near) the interval
