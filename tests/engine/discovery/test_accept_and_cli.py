"""Accepting proposals into a questionnaire version, the measured judge, ``hal discover`` and the engine commands."""

from __future__ import annotations

import io
import json
import time

import pytest

from engine.cli import main as hal
from engine.discovery.accept import accept
from engine.discovery.runs import DiscoverConfig, load_run, run
from engine.errors import BadRequest
from engine.jobs import RecordingState
from engine.scoring.fit import FitConfig, build_table, cross_validate
from engine.scoring.importers import load_jsonl
from engine.scoring.judges import get_judge
from engine.scoring.traits import load_questionnaire

from .helpers import write_games


@pytest.fixture
def games(tmp_path):
    return write_games(tmp_path / "games.jsonl", 16, seed=4)


@pytest.fixture
def contrast_run(games):
    return run(DiscoverConfig.from_dict({"path": str(games), "method": "contrast", "contrast": {"n_boot": 100}}),
               RecordingState())


def test_accept_makes_a_new_version_with_provenance(contrast_run, games):
    group = next(g for g in contrast_run["groups"] if "words_per_msg" in g["members"])
    items = [{"from": group["id"]},
             {"from": ["slang_rate", "question_msg_frac"], "statement": "Chats casually and asks little back.",
              "name": "casual"}]
    q = accept(contrast_run, items, "found")
    assert q.ref == "found@1" and [t.id for t in q.traits] == [33, 34]
    assert q.traits[1].statement == "Chats casually and asks little back." and q.traits[1].name == "casual"
    prov = q.provenance["traits"]
    assert prov["33"]["from"] == [group["id"]] and prov["33"]["run"] == contrast_run["run_id"]
    assert prov["33"]["measure"]["feature"] == group["lead"]
    assert prov["34"]["merged"] and prov["34"]["edited"] and prov["34"]["measure"]["feature"] == "slang_rate"
    source = q.provenance["runs"][contrast_run["run_id"]]["source"]
    assert source["path"] == str(games.resolve()) and len(source["sha256"]) == 64
    assert load_questionnaire("found").provenance == q.provenance  # it survives the file
    again = accept(contrast_run, [{"from": "you_rate"}], "found", base="found")
    assert again.ref == "found@2" and again.parent == "found@1" and len(again.traits) == 3
    assert load_questionnaire("found@1").trait_ids == [33, 34]  # the old version is untouched
    on_hal = accept(contrast_run, [{"from": "you_rate"}], "hal32-plus", base="hal32", drop_traits=[10])
    assert len(on_hal.traits) == 32 and on_hal.parent == "hal32@1" and on_hal.trait_ids[-1] == 33


def test_the_new_questionnaire_is_rated_and_fitted(contrast_run, games):
    q = accept(contrast_run, [{"from": "words_per_msg"}, {"from": "question_msg_frac"}], "fit-me")
    judge = get_judge("measured", questionnaire=q)
    dialogues = load_jsonl(games).dialogues
    ratings = judge.rate_many(dialogues)
    human = [r[33] for d, r in zip(dialogues, ratings) if d.is_human]
    ai = [r[33] for d, r in zip(dialogues, ratings) if not d.is_human]
    assert min(human) > max(ai)  # short messages: the human end of the scale
    table, problems = build_table(dialogues, ratings, q.trait_ids)
    report = cross_validate(table, FitConfig(folds=4, penalty="l2"))
    assert problems == [] and report["traits"] == [33, 34] and report["cv_accuracy"] > 0.9


def test_themes_from_explanations_and_the_unrated_note():
    from engine.discovery.accept import summarise

    run = {"run_id": "explain-x", "method": "explain", "source": {"path": "x.jsonl"},
           "clusters": [{"id": "c1", "size": 9, "representatives": ["Writes in lower case.", "No capitals."],
                         "keywords": ["lower", "case"], "n_games": 7, "correct_share": 0.6},
                        {"id": "c2", "size": 5, "representatives": ["Uses slang like lol."], "keywords": ["slang"]}],
           "feature_quantiles": {"slang_rate": {"p10": 0.0, "p50": 0.05, "p90": 0.2, "min": 0.0, "max": 0.5,
                                                "human_mean": 0.1, "ai_mean": 0.02}}}
    with pytest.raises(BadRequest, match="say whether more slang_rate means the trait is present"):
        accept(run, [{"from": "c2", "measure": "slang_rate"}], "themes")
    q = accept(run, [{"from": "c1"}, {"from": "c2", "measure": "slang_rate", "present_when": "higher"}], "themes")
    assert [t.name for t in q.traits] == ["lower-case", "slang"]
    assert q.traits[0].statement == "Writes in lower case."
    prov = q.provenance["traits"]
    assert prov["33"]["evidence"][0]["representatives"] == ["Writes in lower case.", "No capitals."]
    assert "measure" not in prov["33"]
    assert prov["34"]["measure"] == {"feature": "slang_rate", "present_when": "higher", "at1": 0.0, "at5": 0.2,
                                     "anchors_from": "10th and 90th percentile of the run's data",
                                     "means": {"human": 0.1, "ai": 0.02}}
    note = summarise(q, run)["note"]
    assert note.startswith("trait(s) 33 have no measure")


def test_bad_accepts_are_refused(contrast_run):
    with pytest.raises(BadRequest, match="nothing to accept"):
        accept(contrast_run, [], "x")
    with pytest.raises(BadRequest, match="no proposal c9"):
        accept(contrast_run, [{"from": "c9"}], "x")
    with pytest.raises(BadRequest, match="needs a base"):
        accept(contrast_run, [{"from": "you_rate"}], "x", drop_traits=[3])


def test_cli_contrast_json_then_accept(games, capsys):
    assert hal(["discover", str(games), "--method", "contrast", "--n-boot", "100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"method", "n_dialogues", "candidates", "groups", "run_id"} <= set(out)
    assert out["method"] == "contrast" and out["n_dialogues"] == 32
    assert {"name", "auc", "ci", "direction"} <= set(out["candidates"][0])
    assert hal(["discover", "accept", out["run_id"], "--take", "words_per_msg+chars_per_msg=Keeps it short.",
                "--trait-name", "words_per_msg+chars_per_msg=short", "--take", "you_rate", "--into", "cli-q",
                "--json"]) == 0
    acc = json.loads(capsys.readouterr().out)
    assert acc["questionnaire"] == "cli-q@1" and [a["name"] for a in acc["accepted"]] == ["short", "you-words"]
    assert acc["accepted"][0]["provenance"]["from"] == ["words_per_msg", "chars_per_msg"]
    assert hal(["discover", "runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["run_id"] == out["run_id"]
    assert hal(["discover", "accept", out["run_id"], "--take", "nope", "--into", "x", "--json"]) == 2
    assert "no proposal nope" in json.loads(capsys.readouterr().out)["error"]["message"]


def test_cli_too_few_dialogues(tmp_path, capsys):
    few = write_games(tmp_path / "few.jsonl", 2)
    assert hal(["discover", str(few), "--json"]) == 2
    captured = capsys.readouterr()
    assert "too few dialogues to contrast" in json.loads(captured.out)["error"]["message"]
    assert "hal: error: too few dialogues" in captured.err


def _ask(engine, buf, type_, content, mid):
    from engine.protocol import Message

    engine.handle_line(Message(type=type_, content=content, id=mid).encode())
    for _ in range(1200):
        msgs = [json.loads(line) for line in buf.getvalue().splitlines()]
        done = [m for m in msgs if m.get("parent") == mid and m["type"] in ("result", "error")]
        if done:
            return done[0], [m for m in msgs if m.get("parent") == mid and m["type"] == "progress"]
        time.sleep(0.05)
    raise AssertionError("no answer")


def test_engine_commands(games):
    import engine.discovery.commands  # noqa: F401  (registers the commands)
    from engine.server import Engine

    buf = io.BytesIO()
    engine = Engine(buf)
    try:
        res, progress = _ask(engine, buf, "discover.run", {"path": str(games), "method": "contrast",
                                                           "contrast": {"n_boot": 50}}, "r")
        assert res["type"] == "result" and progress and progress[-1]["content"]["done"] == 1
        run_id = res["content"]["run_id"]
        assert load_run(run_id)["candidates"] == res["content"]["candidates"]
        listed, _ = _ask(engine, buf, "discover.runs", {}, "l")
        assert listed["content"]["runs"][0]["run_id"] == run_id
        acc, _ = _ask(engine, buf, "discover.accept", {"run_id": run_id, "items": [{"from": "g1"}],
                                                       "questionnaire_id": "from-engine"}, "a")
        assert acc["content"]["questionnaire"] == "from-engine@1" and acc["content"]["accepted"][0]["id"] == 33
        bad, _ = _ask(engine, buf, "discover.run", {"path": str(games), "method": "guess"}, "b")
        assert bad["type"] == "error" and "contrast or explain" in bad["content"]["message"]
        feats, _ = _ask(engine, buf, "discover.features", {}, "f")
        assert any(f["name"] == "oov_rate" for f in feats["content"]["features"])
    finally:
        engine.close()
