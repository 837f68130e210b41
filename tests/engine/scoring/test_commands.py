"""The scoring commands through the engine's read loop, in-process, on a real store."""

from __future__ import annotations

import json

import pytest

import engine.scoring.commands  # noqa: F401  (registers the commands)
from engine.protocol import Message
from engine.server import COMMANDS, Engine
from engine.store import Store
from tests.engine.scoring.helpers import FORMAL, SLANGY, turing_row, write_csv
from tests.engine.test_server import Sink


@pytest.fixture
def eng(tmp_path):
    sink = Sink()
    e = Engine(sink, store_path=str(tmp_path / "studio.sqlite3"))
    yield e, sink
    e.close()


def call(eng, type_, content=None, timeout=60.0):
    """Send one command; return (final event, all events of that command)."""
    e, sink = eng
    msg = Message(type=type_, content=content or {})
    e.handle_line(msg.encode())
    final = sink.wait_for(lambda m: m.parent == msg.id and m.type in ("result", "error"), timeout)
    return final, [m for m in sink.lines if m.parent == msg.id]


def ok(eng, type_, content=None, timeout=60.0) -> dict:
    final, _ = call(eng, type_, content, timeout)
    assert final.type == "result", final.content
    return final.content


def conversation(store: Store, prompts_and_replies: list[tuple[str, str, str]]) -> list[dict]:
    """Turns with slot a/b replies; returns [{turn_id, a, b}] with reply ids."""
    cid = store.create_conversation({"source": "bundled"}, {"source": "bundled"}, {}, False)
    out = []
    for prompt, a, b in prompts_and_replies:
        tid = store.add_turn(cid, prompt, False, "left")
        ids = {"turn_id": tid}
        for slot, side, text in (("a", "left", a), ("b", "right", b)):
            ids[slot] = store.add_reply(tid, slot, side, text, "stop", {"source": "bundled"},
                                        {"name": "m", "backend": "fake"}, {"seed": 1}, {})
        out.append(ids)
    return out


def test_registered_at_engine_start():
    for name in ("score.reply", "score.config", "questionnaire.get", "questionnaire.save",
                 "weights.get", "fit.run"):
        assert name in COMMANDS


def test_config_on_a_fresh_machine_defaults_to_lexical_with_its_shipped_fitted_weights(eng):
    cfg = ok(eng, "score.config")
    names = {j["name"]: j for j in cfg["judges"]}
    assert names["lexical"]["available"] and names["lexical"]["score"]
    assert not names["precomputed"]["score"] and names["precomputed"]["fit"]
    assert {"hal32@1", "hal16@1"} <= {q["ref"] for q in cfg["questionnaires"]}
    assert "hal16_published@1" in {w["ref"] for w in cfg["weights"]}
    d = cfg["default"]
    # no reference data, nothing fitted in the data folder: the shipped fit on this judge's own ratings
    # the shipped distilled judge with the weights fitted on its teacher's (GPT-5's) ratings
    assert d["judge"] == "distilled:gpt5-turing" and d["weights"] == "hal16_published@1"
    assert d["weights_match_judge"] is True and "distilled to reproduce" in d["weights_note"]


def test_published_weights_on_lexical_ratings_are_flagged_and_can_misorder(eng):
    """Why they are not the default: fitted on GPT-5's scale, on the lexical judge's
    ratings they put a stiff reply above a casual one."""
    e, _ = eng
    ids = conversation(e.store, [("hey whats up", "nm lol u?", FORMAL[0]),
                                 ("cool, any plans?", "idk tbh, prob just chill rn", FORMAL[1])])
    res = ok(eng, "score.reply", {"reply_ids": [ids[1]["a"], ids[1]["b"]], "weights": "hal16_published",
                                  "judge": "lexical"})
    casual, stiff = res["scores"]
    assert casual["score"] < stiff["score"]
    assert casual["questionnaire"] == "hal16@1" and casual["traits"]["24"] is None and 24 in casual["missing"]
    assert not res["scoring"]["weights_match_judge"] and "gpt-5" in res["scoring"]["weights_note"]


def test_score_reply_rates_the_models_own_side_of_the_conversation_and_stores_it(eng):
    e, _ = eng
    ids = conversation(e.store, [("hey whats up", "nm lol u?", FORMAL[0]),
                                 ("cool, any plans?", "idk tbh, prob just chill rn", FORMAL[1])])
    res = ok(eng, "score.reply", {"reply_ids": [ids[1]["a"], ids[1]["b"]], "judge": "lexical"})
    a, b = res["scores"]
    assert a["reply_id"] == ids[1]["a"] and not a["reused"]
    assert a["score"] != b["score"]  # which side is ahead is the default weights' call (defaults.py)
    # lexical cannot see trait 24, and weights fitted on its ratings give it no weight
    assert a["traits"]["24"] is None and "24" not in a["weights_used"] and 24 not in a["missing"]
    assert a["imputed_weight"] == 0
    assert set(a["shares"]) == set(a["weights_used"]) and abs(sum(abs(v) for v in a["shares"].values()) - 1) < 1e-4
    assert a["questionnaire"] == "hal32@1" and a["weights"] == "lexical_turing@1"
    assert [t["id"] for t in res["traits"]["hal32@1"]][:3] == [1, 2, 3]
    assert res["scoring"]["weights_match_judge"]
    rows = list(e.store.db.query("SELECT * FROM scores ORDER BY created_at"))
    assert len(rows) == 2 and rows[0]["reply_id"] in (ids[1]["a"], ids[1]["b"])
    stored = json.loads(rows[0]["traits"])
    assert set(stored["1"]) == {"rating", "weight", "contribution", "share", "imputed"}
    # the second turn's rating saw the first turn's reply of the same slot (more lines rated)
    first_only = ok(eng, "score.reply", {"items": [{"text": "idk tbh, prob just chill rn",
                                                    "context_messages": [{"role": "user", "content": "cool, any plans?"}]}],
                                     "judge": "lexical"})
    assert first_only["scores"][0]["score"] != a["score"]
    # asking again reuses the rows
    again = ok(eng, "score.reply", {"reply_ids": [ids[1]["a"]], "judge": "lexical"})
    assert again["scores"][0]["reused"] and again["scores"][0]["score_id"] == a["score_id"]
    assert e.store.db.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 2


def test_superseded_earlier_replies_are_not_part_of_the_dialogue(eng):
    e, _ = eng
    ids = conversation(e.store, [("hi", "As an AI language model I cannot chat.", "hello"),
                                 ("ok", "lol ok", "Fine.")])
    before = ok(eng, "score.reply", {"reply_ids": [ids[1]["a"]]})["scores"][0]
    e.store.add_reply(ids[0]["turn_id"], "a", "left", "hey!! whats up", "stop", {}, {}, {"seed": 1}, {})
    e.store.db.execute("DELETE FROM scores")
    after = ok(eng, "score.reply", {"reply_ids": [ids[1]["a"]]})["scores"][0]
    assert after["traits"] != before["traits"]


def test_bad_items_are_reported_one_by_one_and_the_rest_are_scored(eng):
    e, _ = eng
    ids = conversation(e.store, [("hi", "", "hey there, all good?")])
    res = ok(eng, "score.reply", {"reply_ids": [ids[0]["a"], "no-such-reply", ids[0]["b"]]})
    empty, missing, good = res["scores"]
    assert empty["error"]["kind"] == "rating_failed" and "empty" in empty["error"]["message"]
    assert "no reply" in missing["error"]["message"]
    assert good["score"] is not None and good["reply_id"] == ids[0]["b"]
    loose = ok(eng, "score.reply", {"items": [{"id": "x", "text": "  "}, {"text": "sure lol", "context_messages": []}]})
    assert loose["scores"][0]["id"] == "x" and "error" in loose["scores"][0]
    assert loose["scores"][1]["id"] == "item-1" and "score" in loose["scores"][1]


@pytest.mark.parametrize("content, words", [
    ({}, "either reply_ids or items"),
    ({"reply_ids": []}, "list of 1 to"),
    ({"reply_ids": ["x"], "judge": "precomputed"}, "cannot rate a new reply"),
    ({"reply_ids": ["x"], "weights": "nope"}, "unknown weight"),
    ({"items": ["text"]}, "must be an object"),
])
def test_bad_requests_are_errors_not_crashes(eng, content, words):
    final, _ = call(eng, "score.reply", content)
    assert final.type == "error" and words in final.content["message"]


def test_explicit_weights_and_questionnaire_change_what_is_scored(eng):
    e, _ = eng
    ids = conversation(e.store, [("hi", "hey :) hows it going", "Hello.")])
    a16 = ok(eng, "score.reply", {"reply_ids": [ids[0]["a"]], "weights": "hal16_published"})["scores"][0]
    a32 = ok(eng, "score.reply", {"reply_ids": [ids[0]["a"]], "weights": "hal16_published",
                                  "questionnaire": "hal32"})["scores"][0]
    assert a32["questionnaire"] == "hal32@1" and len(a32["traits"]) == 32 and len(a16["traits"]) == 16
    assert a32["score"] == pytest.approx(a16["score"])  # same weights, same ratings of the weighted traits
    assert e.store.db.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 2


def test_questionnaire_save_makes_a_new_version_with_adds_drops_and_rewording(eng):
    q = ok(eng, "questionnaire.get", {"ref": "hal16"})["questionnaire"]
    traits = [dict(t) for t in q["traits"] if t["id"] != 2]
    traits[0]["statement"] = "Answers in a few words, the way people text."
    traits.append({"id": None, "name": "weather talk", "statement": "Mentions the weather.", "theme": "small talk"})
    res = ok(eng, "questionnaire.save", {"base": "hal16", "traits": traits})
    assert res["ref"] == "hal16@2" and res["questionnaire"]["parent"] == "hal16@1"
    assert res["changes"] == {"added": [33], "dropped": [2], "edited": [1]}
    assert "small talk" in {t["id"] for t in res["questionnaire"]["themes"]}
    assert ok(eng, "questionnaire.get", {"ref": "hal16"})["questionnaire"]["version"] == 2
    assert ok(eng, "questionnaire.get", {"ref": "hal16@1"})["questionnaire"]["traits"][0]["id"] == 1
    final, _ = call(eng, "questionnaire.save", {"base": "hal16@2", "traits": res["questionnaire"]["traits"]})
    assert final.type == "error" and "nothing changed" in final.content["message"]
    final, _ = call(eng, "questionnaire.save", {"base": "hal16", "traits": [{"id": 1, "name": "", "statement": "x"}]})
    assert final.type == "error" and "short name" in final.content["message"]


def test_weights_get_names_each_trait(eng):
    res = ok(eng, "weights.get", {"ref": "hal16_published"})
    assert res["weights"]["ref"] == "hal16_published@1" and len(res["traits"]) == 16
    assert res["traits"][0] == {"id": 1, "name": "brevity", "theme": "form"}


def _labelled_file(tmp_path, n=24):
    rows = [turing_row(g, "A" if g % 2 else "B",
                       a_lines=SLANGY if g % 2 else FORMAL, b_lines=FORMAL if g % 2 else SLANGY)
            for g in range(n)]
    return write_csv(tmp_path / "games.csv", rows)


def test_fit_run_streams_progress_saves_weights_listed_but_not_the_silent_default(eng, tmp_path):
    path = _labelled_file(tmp_path)
    final, events = call(eng, "fit.run", {"path": str(path), "judge": "lexical", "folds": 4})
    assert final.type == "result", final.content
    report = final.content
    assert report["n"] == 48 and report["cv_accuracy"] > 0.9 and "pairwise_accuracy" in report
    assert report["saved_weights"] == "fit-lexical@1" and report["judge"].startswith("lexical@")
    progress = [m.content for m in events if m.type == "progress"]
    assert progress[0]["message"].startswith("reading") and progress[-1]["done"] == progress[-1]["total"]
    assert any("fold" in p["message"] for p in progress)
    cfg = ok(eng, "score.config")
    # the default is one policy, the same whatever the data folder holds; the fit is there to choose
    assert cfg["default"]["weights"] == "hal16_published@1"
    listed = {w["ref"]: w for w in cfg["weights"]}
    assert listed["fit-lexical@1"]["fitted_on_judge"] == report["judge"]
    res = ok(eng, "score.reply", {"items": [{"text": "nm lol u?"}], "weights": "fit-lexical", "judge": "lexical"})
    assert res["scoring"]["weights_match_judge"] and "games.csv" in res["scoring"]["weights_note"]
    w = ok(eng, "weights.get", {"ref": "fit-lexical"})
    assert w["weights"]["fitted_on"]["judge"] == report["judge"]


def test_fit_run_on_precomputed_ratings_and_bad_settings(eng, tmp_path):
    path = _labelled_file(tmp_path)
    res = ok(eng, "fit.run", {"path": str(path), "judge": "precomputed", "folds": 3, "save": False})
    assert res["judge"].startswith("precomputed") and "saved_weights" not in res
    for content, words in (({"path": str(tmp_path / "nope.csv")}, "no data file"),
                           ({"path": str(path), "judge": "gpt"}, "fit with one of"),
                           ({"path": str(path), "penalty": "l3"}, "penalty"),
                           ({"path": str(path), "colour": 1}, "unknown fit setting")):
        final, _ = call(eng, "fit.run", content)
        assert final.type == "error" and words in final.content["message"], final.content


def test_fit_run_can_be_cancelled(eng, tmp_path):
    from engine.jobs import RecordingState
    from engine.scoring.fit_job import FitJobConfig, run

    state = RecordingState()
    state.cancel()
    with pytest.raises(Exception, match="cancelled"):
        run(FitJobConfig(path=str(_labelled_file(tmp_path)), folds=4), state)


def test_fit_run_on_the_shared_turing_file_reaches_the_readme_figure(eng, shared):
    res = ok(eng, "fit.run", {"path": str(shared / "turing_gpt5_train.csv"), "judge": "lexical",
                              "save": False}, timeout=300)
    assert res["n"] == 900 and res["cv_accuracy"] > 0.8
