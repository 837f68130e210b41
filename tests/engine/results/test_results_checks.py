"""Position bias, rater consistency, identity leaks, score vs researcher."""

import json

import pytest

from engine.results import browser, compute
from engine.results.checks import consistency, load_repeats, position_bias, score_agreement
from engine.results.data import Filters, LeakConfig, load_votes
from engine.results.sample import add_rating


def test_position_bias_blind_and_not(V):
    blind = [V("A", "B", "certainly_left") for _ in range(6)] + \
            [V("B", "A", "likely_left") for _ in range(3)] + [V("A", "B", "certainly_right"),
                                                              V("A", "B", "tie"), V("A", "B", "both_bad")]
    open_ = [V("A", "B", "likely_left", blind=False) for _ in range(3)] + \
            [V("A", "B", "likely_right", blind=False) for _ in range(3)]
    pb = position_bias(blind + open_)
    # blind: 9 left of 10 decisive (tie, both bad left out); exact two-sided binomial
    # p = 2·(C(10,9) + C(10,10))/2^10 = 2·11/1024 = 0.021484
    b = pb["blind"]
    assert (b["n"], b["left_wins"], b["right_wins"], b["ties"], b["both_bad"]) == (10, 9, 1, 1, 1)
    assert b["left_rate"] == 0.9 and b["p_value"] == pytest.approx(0.021484, abs=1e-6)
    assert b["significant"] and "blind votes favour the left" in pb["warning"]
    # not blind: 3 of 6 -> p = 1
    nb = pb["not_blind"]
    assert nb["left_rate"] == 0.5 and nb["p_value"] == pytest.approx(1.0) and not nb["significant"]
    assert "non-blind" not in pb["warning"]
    assert pb["all"]["n"] == 16 and len(pb["all"]["rating_ids"]) == 18


def test_no_warning_without_bias(V):
    pb = position_bias([V("A", "B", "certainly_left"), V("A", "B", "certainly_right")])
    assert pb["warning"] is None and pb["blind"]["p_value"] == 1.0


def test_consistency_unswaps_sides(store):
    ids = [add_rating(store, "X", "Y", v) for v in
           ("certainly_left", "likely_left", "tie", "certainly_left")]
    rows = [store.db["ratings"].get(i) for i in ids]
    again = ("certainly_right",  # X wins again (now on the right), same strength: agree, exact
             "likely_left",      # Y (now left) wins: disagree
             "tie",              # tie again: agree, exact
             "likely_right")     # X wins, weaker: agree, not exact
    for r, v in zip(rows, again):
        browser.record_repeat(store, r["id"], r["right_reply_id"], r["left_reply_id"], v)
    c = consistency(load_repeats(store))
    # agree 3 of 4 = 0.75; exact 2 of 4 = 0.5
    assert (c["n"], c["agree"], c["agreement"], c["exact_agreement"]) == (4, 3, 0.75, 0.5)
    assert c["sides_swapped"] == 4
    assert [d["rating_id"] for d in c["disagreements"]] == [ids[1]]
    # Wilson 3/4: centre (0.75 + 0.4802)/1.9604 = 0.6275, half 1.96·sqrt(0.046875 + 0.0600)/1.9604
    # = 0.3268 -> (0.3006, 0.9544)
    assert c["ci"] == pytest.approx([0.3006, 0.9544], abs=2e-4)
    # the original of the 4th is deleted: that repeat is skipped, with the reason
    browser.delete_rating(store, ids[3])
    c = consistency(load_repeats(store))
    assert c["n"] == 3 and c["skipped"][0]["reason"] == "its original rating was deleted"
    # filters reach consistency through the ids kept
    assert consistency(load_repeats(store), keep_ids={ids[0]})["n"] == 1


def test_recheck_picks_a_share_and_swaps_sides(store):
    ids = [add_rating(store, "X", "Y", "likely_left") for _ in range(4)]
    picks = browser.pick_for_recheck(store, share=0.5, seed=3)
    assert len(picks) == 2  # ceil(0.5·4) - 0 repeated so far
    for p in picks:
        orig = store.db["ratings"].get(p["rating_id"])
        assert p["left"]["reply_id"] == orig["right_reply_id"]
        assert p["right"]["reply_id"] == orig["left_reply_id"]
    browser.record_repeat(store, picks[0]["rating_id"], picks[0]["left"]["reply_id"],
                          picks[0]["right"]["reply_id"], "likely_right")
    assert len(browser.pick_for_recheck(store, share=0.5, seed=3)) == 1
    with pytest.raises(ValueError):
        other = store.db["ratings"].get(ids[1])
        browser.record_repeat(store, ids[0], other["left_reply_id"], other["right_reply_id"], "tie")
    with pytest.raises(ValueError):
        browser.record_repeat(store, ids[0], "a", "b", "meh")


def test_identity_leak_is_flagged_and_left_out_of_blind_statistics(store):
    clean = add_rating(store, "Smol", "Smol + v3", "certainly_right", left_text="hi", right_text="hey you")
    leaky = add_rating(store, "Smol", "Smol + v3", "certainly_left",
                       left_text="I'm SmolLM2, your assistant.", right_text="yo")
    named = add_rating(store, "Zephyrine-7B", "Smol", "likely_left", left_text="zephyrine here!",
                       right_text="follow the instructions")
    votes = load_votes(store).votes
    leaks = {v.rating_id: v.leak for v in votes}
    assert leaks[clean] == "" and "SmolLM" in leaks[leaky] and "Zephyrine" in leaks[named]
    blind = compute(store, Filters(blind=True), n_boot=20)
    assert blind["n_ratings"] == 1 and blind["pairs"][0]["rating_ids"] == [clean]
    assert blind["pairs"][0]["win_rate"] == 1.0  # Smol + v3 certainly, the leak no longer counts
    everything = compute(store, n_boot=20)
    assert everything["leaks"]["n"] == 2 and everything["leaks"]["blind_excluded"] == 2
    assert set(everything["leaks"]["rating_ids"]) == {leaky, named}
    # configurable: without the default tokens and model names nothing is flagged
    quiet = load_votes(store, leaks=LeakConfig(tokens=(), model_names=False)).votes
    assert not any(v.leak for v in quiet)
    # "Instruct" in a model name does not flag "instructions"
    assert LeakConfig(tokens=()).find("read the instructions", ("SmolLM2-Instruct",)) == ""


def test_score_agreement_overall_and_per_trait(V):
    v1 = V("A", "B", "certainly_left", left_reply_id="l1", right_reply_id="r1")
    v2 = V("A", "B", "likely_right", left_reply_id="l2", right_reply_id="r2")
    v3 = V("A", "B", "likely_left", left_reply_id="l3", right_reply_id="r3")
    tie = V("A", "B", "tie", left_reply_id="l4", right_reply_id="r4")  # not decisive: left out
    s = lambda score, t1, t2: {"score": score, "traits": {"T1": t1, "T2": t2}}
    scores = {"lexical": {"l1": s(4, 5, 1), "r1": s(2, 1, 2),   # left won, score agrees
                          "l2": s(3, 1, 2), "r2": s(1, 5, 2),   # right won, score disagrees
                          "l3": s(2, 3, 4), "r3": s(2, 3, 1),   # left won, equal scores
                          "l4": s(1, 1, 1), "r4": s(5, 5, 5)}}
    out = score_agreement([v1, v2, v3, tie], scores)["judges"][0]
    # overall: 1 agree of 2 with a score difference; 1 equal
    assert (out["n"], out["agree"], out["agreement"], out["equal_scores"]) == (2, 1, 0.5, 1)
    traits = {t["trait"]: t for t in out["traits"]}
    # T1: v1 5>1 left won (agree), v2 1<5 right won (agree), v3 equal -> 2/2
    # T2: v1 1<2 left won (disagree), v2 equal, v3 4>1 left won (agree) -> 1/2
    assert (traits["T1"]["n"], traits["T1"]["agreement"]) == (2, 1.0)
    assert (traits["T2"]["n"], traits["T2"]["agreement"]) == (2, 0.5)
    assert out["traits"][0]["trait"] == "T2"  # where person and score part ways comes first


def test_score_agreement_reads_the_scores_table(store):
    rid = add_rating(store, "A", "B", "likely_left")
    r = store.db["ratings"].get(rid)
    for reply, score, traits in ((r["left_reply_id"], 4.0, {"T1": {"rating": 4}}),
                                 (r["right_reply_id"], 2.0, [{"id": "T1", "rating": 2}])):
        store.db.execute("INSERT INTO scores (id, reply_id, judge, score, traits, created_at) "
                         "VALUES (?, ?, 'lexical', ?, ?, '2025')", [reply + "s", reply, score, json.dumps(traits)])
    sa = compute(store, n_boot=10)["score_agreement"]["judges"][0]
    assert sa["agreement"] == 1.0 and sa["traits"][0] == {"trait": "T1", "n": 1, "agreement": 1.0,
                                                          "ci": pytest.approx([0.2065, 1.0], abs=1e-4)}
