"""The importers read every good item and name each bad one with a reason."""

from __future__ import annotations

import json

import pytest

from engine.errors import BadRequest
from engine.scoring.dialogue import parse_transcript
from engine.scoring.importers import QWEN_RATING_IDS, load_any, load_jsonl

from .helpers import turing_row, write_csv


def test_turing_csv_sides_labels_and_ratings(tmp_path):
    rows = [turing_row(17, "A"), turing_row(18, "B")]
    rows[0]["conversation_A_transcript"] = "I: hi\nW: hey there\nsecond line of the same message\nI: ok?\nW: yep"
    path = write_csv(tmp_path / "t.csv", rows)
    out = load_any(path)
    assert out.layout == "turing" and not out.problems
    assert [d.id for d in out.dialogues] == ["17-A", "17-B", "18-A", "18-B"]
    a = out.dialogues[0]
    assert a.speaker_lines() == ["hey there\nsecond line of the same message", "yep"]
    assert a.label == "human" and out.dialogues[1].label == "ai" and a.group == "17"
    assert a.ratings[1] == 5 and a.ratings[32] == 3 and len(a.ratings) == 32
    assert a.meta["source_label"] == "Human"


def test_turing_csv_without_game_id_uses_row_index(tmp_path):
    rows = [turing_row(1), turing_row(2)]
    cols = [c for c in rows[0] if c != "game_id"]
    out = load_any(write_csv(tmp_path / "t.csv", rows, cols))
    assert [d.id for d in out.dialogues] == ["0-A", "0-B", "1-A", "1-B"]


def test_turing_malformed_rows_are_reported(tmp_path):
    rows = [turing_row(1), turing_row(2), turing_row(3), turing_row(4), turing_row(1)]
    rows[1]["conversation_B_transcript"] = ""
    rows[2]["conversation_A_transcript"] = "I: hello?\nI: anyone there?"
    rows[3]["likert_evaluation_A"] = "[1, 2, 3]"
    out = load_any(write_csv(tmp_path / "t.csv", rows))
    reasons = {p.item: p.reason for p in out.problems}
    assert "empty transcript" in reasons["2-B"]
    assert "no witness" in reasons["3-A"]
    assert "expected 32 ratings" in reasons["4-A"]
    assert any("repeats" in r for r in reasons.values())
    ids = [d.id for d in out.dialogues]
    assert "2-A" in ids and "3-B" in ids and "4-A" in ids and "2-B" not in ids and "3-A" not in ids
    assert next(d for d in out.dialogues if d.id == "4-A").ratings is None


def test_dialogue_csv_layout(tmp_path):
    rows = [{"dialogue_id": "7", "dialogue": "P: hi doc\n2. D: hello, what brings you in?\n3. P: my knee\n</dialogue>",
             "likert_evaluation": json.dumps(list(range(1, 6)) * 3 + [1])},
            {"dialogue_id": "8", "dialogue": "1: hello\n2: hi", "likert_evaluation": ""}]
    out = load_any(write_csv(tmp_path / "q.csv", rows))
    assert out.layout == "dialogue_csv"
    d = out.dialogues[0]
    assert d.speaker_lines() == ["hi doc", "my knee"] and d.rated_speaker == "P"
    assert d.ratings[QWEN_RATING_IDS[1]] == 2  # second position is emojis, trait 5
    assert [p.item for p in out.problems] == ["8"]


def test_jsonl_schema_and_bad_lines(tmp_path):
    good = {"id": "a", "turns": [["I", "hi"], ["W", "hey"]], "rated_speaker": "W", "label": "human", "group": "g1",
            "ratings": {"1": 4, "20": 2}}
    lines = [
        json.dumps(good),
        json.dumps({"id": "b", "transcript": "I: hi\nW: hello", "rated_speaker": "W", "label": "ai"}),
        "{not json",
        json.dumps({"id": "c", "turns": [["I", "hi"]], "rated_speaker": "W"}),
        json.dumps({"id": "d", "turns": [["W", "x"]], "rated_speaker": "W", "label": "robot"}),
        json.dumps({"id": "e", "turns": [["W", "x"]], "rated_speaker": "W", "ratings": {"1": 9}}),
        json.dumps({"turns": [["W", "x"]], "rated_speaker": "W"}),
        json.dumps(good),
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = load_jsonl(path)
    assert [d.id for d in out.dialogues] == ["a", "b"]
    assert out.dialogues[0].ratings == {1: 4.0, 20: 2.0} and out.dialogues[1].label == "ai"
    reasons = [p.reason for p in out.problems]
    assert len(reasons) == 6
    assert any("no lines by the rated speaker" in r for r in reasons)
    assert any("not 'human' or 'ai'" in r for r in reasons)
    assert any("outside 1..5" in r for r in reasons)
    assert any("repeats" in r for r in reasons)


def test_unknown_layouts_are_refused(tmp_path):
    with pytest.raises(BadRequest):
        load_any(tmp_path / "missing.csv")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(BadRequest):
        load_any(tmp_path / "x.csv")


def test_parse_transcript_keeps_unknown_prefixes_inside_messages():
    turns = parse_transcript("I: hi\nW: note: this stays\nps: so does this\nI: ok", {"I", "W"})
    assert [t.speaker for t in turns] == ["I", "W", "I"]
    assert turns[1].text == "note: this stays\nps: so does this"


def test_real_turing_file(shared):
    out = load_any(shared / "turing_gpt5_train.csv")
    assert not out.problems
    assert len(out.dialogues) == 900 and len({d.group for d in out.dialogues}) == 450
    assert sum(d.is_human for d in out.dialogues) == 450
    assert all(d.ratings and len(d.ratings) == 32 for d in out.dialogues)
    assert all(d.id.endswith(("-A", "-B")) for d in out.dialogues)
