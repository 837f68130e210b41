"""Reading judge answers (good, garbage, empty) and the explain loop with a scripted judge."""

from __future__ import annotations

import re

import pytest

from engine.discovery.explain import ExplainConfig, pair_games, run_explain
from engine.discovery.judges import ExplainJudge
from engine.discovery.prompts import parse_statements, parse_verdict
from engine.errors import BadRequest, Cancelled
from engine.jobs import RecordingState
from engine.scoring.importers import load_jsonl

from .helpers import write_games


@pytest.mark.parametrize("answer, side", [
    ("A", "A"), ("**B**", "B"), ("Human: A\n- short replies", "A"), ("The human is in chat B.", "B"),
    ("The writer A is the human.", "A"), ("Chat A is an AI, clearly.", "B"), ("Answer: B", "B"),
    ("B is human", "B"),
])
def test_verdicts_are_read(answer, side):
    assert parse_verdict(answer) == (side, "")


@pytest.mark.parametrize("answer", ["", "   ", "A human would say hi", "I cannot tell", "A: US-based gamer",
                                    "The human is a person who types", "Chat A is not human"])
def test_no_verdict_is_guessed(answer):
    side, why = parse_verdict(answer)
    assert side is None and why


def test_statements_from_a_good_list():
    kept, thrown, form = parse_statements(
        "Human: A\n- **Style**: Writes in lower case and skips punctuation\n- Uses slang like lol and tbh\n"
        "- Answers in very few words\n- Asks nothing back", "prompt", limit=3)
    assert form == "list" and kept == ["Writes in lower case and skips punctuation.", "Uses slang like lol and tbh.",
                                       "Answers in very few words."]
    assert thrown == [{"text": "Asks nothing back", "reason": "beyond the first 3"}]


def test_garbage_is_thrown_away_with_reasons():
    prompt = "Messages written by a human:\n- just got home from work lol\n..."
    answer = ("- W: hi there\n- lol\n- The witness is human\n- just got home from work lol\n"
              "- I'm a gamer from LA\n- Sentence structure:\n- The human writes in a way that the\n"
              "- The human writes in a way that the\n- just got home from work means the writer is tired\n"
              "- Hello, I'm here to chat about my hobby, art\n- Uses my and me often when talking")
    kept, thrown, _ = parse_statements(answer, prompt, limit=3)
    assert kept == ["Uses my and me often when talking."]
    reasons = [t["reason"] for t in thrown]
    assert reasons == ["a transcript line, not a statement", "fewer than 3 words", "says nothing beyond the verdict",
                       "copied from the chats or the question",
                       "written as a chat message (first person), not about the writer", "a heading, not a statement",
                       "cut off mid-sentence", "cut off mid-sentence",
                       "starts with a quote from the chats (a comment on one line, not a general point)",
                       "written as a chat message (first person), not about the writer"]


def test_sentences_are_read_when_there_is_no_list_and_cut_answers_lose_their_tail():
    kept, thrown, form = parse_statements("They use a lot of contractions. They also use slang and short "
                                          "replies. They also use", "p", limit=3, cut=True)
    assert form == "sentences"
    assert kept == ["They use a lot of contractions.", "They also use slang and short replies."]
    assert thrown[0]["reason"] == "cut off by the token limit"
    assert parse_statements("", "p", 3) == ([], [], "sentences")


class ScriptedJudge(ExplainJudge):
    """Letter scores and explanations from a script keyed by game order; records what it was asked."""

    judge_id = "scripted"

    def __init__(self, answers, letters=True):
        super().__init__(cache=None)
        self.answers, self.scores_letters, self.asked = list(answers), letters, []

    def _complete(self, messages, max_tokens, temperature, seed):
        self.asked.append(messages[0]["content"])
        if "Answer with one letter" in messages[0]["content"]:
            return "Human: A", "stop"
        return self.answers.pop(0), "stop"

    def _letter_scores(self, messages):
        # prefers whichever side shows the short human lines, plus a constant pull towards A
        first = messages[0]["content"].split("B:")[0]
        return (2.0 if "lol" in first or "idk" in first or "nah" in first else -2.0) + 5.0


def _dialogues(tmp_path, n=4, **kw):
    return load_jsonl(write_games(tmp_path / "g.jsonl", n, **kw)).dialogues


def test_explain_reports_accuracy_and_never_invents(tmp_path):
    answers = ["- Writes in lower case\n- Uses slang such as lol\n- Keeps replies very short",
               "asdf qwer zxcv", "", "- Replies with few words\n- Skips capital letters"]
    judge = ScriptedJudge(answers)
    state = RecordingState()
    report = run_explain(_dialogues(tmp_path), ExplainConfig(), state, judge=judge)
    assert report["judge_verdict_accuracy"] == 1.0 and report["n_verdicts"] == 4  # the pull towards A cancels out
    items = report["items"]
    assert items[0]["statements"] == ["Writes in lower case.", "Uses slang such as lol.", "Keeps replies very short."]
    assert items[1]["statements"] == [] and items[1]["reason"].startswith("no usable statement")
    assert items[2]["statements"] == [] and items[2]["reason"] == "empty answer"
    assert report["n_statements"] == 5 and report["games_with_statements"] == 2
    assert {p["id"] for p in report["problems"]} == {items[1]["game"], items[2]["game"]}
    assert "too few statements to cluster: 5" in report["clustering"]["message"] and report["clusters"] == []
    for it in items:  # every statement is in the judge's own words
        raw = " ".join(re.findall(r"[a-z]+", it.get("raw", "").lower()))
        for s in it["statements"]:
            assert " ".join(re.findall(r"[a-z]+", s.lower())) in raw
    last = state.of_type("progress")[-1]
    assert last["done"] == last["total"] == 4 and "clustering 5 statements" in last["message"]


def test_text_verdicts_and_explaining_the_truth(tmp_path):
    judge = ScriptedJudge(["- Uses slang and lower case letters"] * 3, letters=False)
    report = run_explain(_dialogues(tmp_path, 3), ExplainConfig(explain_from="truth"), RecordingState(),
                         judge=judge)
    assert all(it["verdict_from"] == "text" and it["answers"] == ["A", "A"] for it in report["items"])
    assert report["answers_a_share"] == 1.0  # the position bias is reported
    explained = [q for q in judge.asked if "Messages written by a human" in q]
    assert len(explained) == 3 and all("lol" in q.split("written by an AI")[0] or "idk" in q or "nah" in q
                                       or "haha" in q or "ya" in q for q in explained)


def test_a_judge_that_always_answers_a_is_never_counted_right(tmp_path):
    """Asked in both orders, "A" twice names two different chats: no verdict, whatever one order would score."""
    dialogues = _dialogues(tmp_path, 12, seed=3)
    report = run_explain(dialogues, ExplainConfig(), RecordingState(), judge=ScriptedJudge([], letters=False))
    bias = report["position_bias"]
    assert bias["answers_a_share"] == 1.0 and bias["n_answers"] == 24 and bias["consistent_share"] == 0.0
    shown_a = sum(it["human_shown_as"] == "A" for it in report["items"])
    assert 0 < shown_a < 12 and bias["first_order_accuracy"] == round(shown_a / 12, 4)  # what one order "scores"
    assert report["judge_verdict_accuracy"] is None and report["n_verdicts"] == 0 and report["verdict_ci"] is None
    assert report["accuracy_counting_no_verdict_as_wrong"] == 0.0
    assert report["accuracy_ties_as_half"] == 0.5  # chance, as it should be
    assert all(it["correct"] is None and "position bias: answered A in both orders" in it["verdict_reason"]
               for it in report["items"])
    assert "picks a letter, not a side" in bias["message"] and report["n_statements"] == 0
    # asked in one order only, the same judge gets every game with the human shown as A "right"
    one = run_explain(dialogues, ExplainConfig(both_orders=False), RecordingState(),
                      judge=ScriptedJudge([""] * 12, letters=False))
    assert one["judge_verdict_accuracy"] == round(shown_a / 12, 4) and one["position_bias"]["consistent_share"] is None


class ReadingJudge(ScriptedJudge):
    """Names the chat whose lines look like the synthetic human's, by its letter, in whatever order it is shown."""

    def _complete(self, messages, max_tokens, temperature, seed):
        text = messages[0]["content"]
        if "Answer with one letter" not in text:
            return super()._complete(messages, max_tokens, temperature, seed)
        a = text.split("B:\n")[0]
        human_first = any(w in a for w in ("lol", "idk", "nah", "haha", "kinda", "yeah", "ugh"))
        return ("Human: A" if human_first else "The human is in chat B."), "stop"


def test_consistent_text_verdicts_count_and_show_no_lean(tmp_path):
    report = run_explain(_dialogues(tmp_path, 7, seed=5), ExplainConfig(), RecordingState(),
                         judge=ReadingJudge(["- Writes in lower case with slang"] * 7, letters=False))
    bias = report["position_bias"]
    assert bias["consistent_share"] == 1.0 and bias["n_asked_both"] == 7
    assert bias["answers_a_share"] == 0.5  # each game once as A, once as B
    assert report["judge_verdict_accuracy"] == 1.0 and report["n_verdicts"] == 7 and "message" not in bias
    assert all(it["consistent"] and it["correct"] for it in report["items"])
    assert report["n_statements"] == 7  # each consistent verdict is explained


def test_logit_verdicts_report_the_lean_they_cancel(tmp_path):
    report = run_explain(_dialogues(tmp_path, 6), ExplainConfig(), RecordingState(),
                         judge=ScriptedJudge(["- Replies with few words"] * 6))
    bias = report["position_bias"]
    # the scripted letters prefer the human by 2 but pull to A by 5: every ask says A, the mean difference is right
    assert bias["answers_a_share"] == 1.0 and bias["consistent_share"] == 0.0
    assert report["judge_verdict_accuracy"] == 1.0 and report["position_pull_mean"] == 5.0


def test_pairing_reports_empty_and_unpaired_sides(tmp_path):
    extra = [{"id": "solo", "group": "solo", "rated_speaker": "W", "label": "human", "turns": [["W", "hey"]]},
             {"id": "nogroup", "rated_speaker": "W", "label": "ai", "turns": [["W", "hello"]]},
             {"id": "e-h", "group": "e", "rated_speaker": "W", "label": "human", "turns": [["W", "  "], ["I", "x"]]},
             {"id": "e-a", "group": "e", "rated_speaker": "W", "label": "ai", "turns": [["W", "Hello there."]]}]
    path = write_games(tmp_path / "g.jsonl", 2, extra=extra)
    data = load_jsonl(path)
    games, problems = pair_games(data.dialogues)
    assert len(games) == 2
    why = {p["id"]: p["error"] for p in problems + [q.as_json() for q in data.problems]}
    assert "nothing to contrast" in why["solo"] and "no group" in why["nogroup"]
    assert "no lines by the rated speaker" in why["e-h"] and "nothing to contrast" in why["e"]


def test_no_games_and_cancel(tmp_path):
    d = _dialogues(tmp_path, 2)
    with pytest.raises(BadRequest, match="no game with one human and one AI side"):
        run_explain([x for x in d if x.label == "human"], ExplainConfig(), RecordingState(), judge=ScriptedJudge([]))
    state = RecordingState()
    state.cancel()
    with pytest.raises(Cancelled):
        run_explain(d, ExplainConfig(), state, judge=ScriptedJudge([]))
