"""The blind pairwise rater: answers validated against the paper's five names, the
answer format falling back when an endpoint refuses a JSON schema, retries with the
reason fed back, the key never in an error, and a real llama-cpp-python server."""

from __future__ import annotations

import pytest

from engine.scoring.judges.base import RatingError
from engine.scoring.pair_rater import SCALE, PairRater, normalise, parse_verdict

from .conftest_server import fake_endpoint, llama_server  # noqa: F401  (fixtures)

KEY = "sk-test-PAIR-RATER-5e1b"


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("HAL_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.mark.parametrize("content, expected", [
    ('{"verdict": "Likely B"}', "Likely B"),
    ('```json\n{"verdict": "certainly_a"}\n```', "Certainly A"),
    ('sure: {"verdict": "  TIE "}', "Tie"),
])
def test_answers_parse(content, expected):
    assert parse_verdict(content) == expected


@pytest.mark.parametrize("content, reason", [
    ("", "empty"), ("B is the human", "no JSON"), ('{"answer": "Likely A"}', 'no "verdict"'),
    ('{"verdict": "Both bad"}', "must be one of"), ('{"verdict": 3}', "must be one of"),
])
def test_bad_answers_are_refused_with_a_reason(content, reason):
    with pytest.raises(ValueError, match=reason):
        parse_verdict(content)


def test_normalise_takes_the_paper_names_only():
    assert [normalise(s.upper().replace(" ", "-")) for s in SCALE] == list(SCALE)
    assert normalise("probably A") is None


def test_schema_refused_falls_back_and_is_remembered(fake_endpoint):
    fake_endpoint.script = [("raw", 422, b'{"detail": "type json_schema not allowed"}'),
                            {"verdict": "Likely A"}, {"verdict": "Tie"}]
    rater = PairRater(base_url=fake_endpoint.base, timeout=5, concurrency=1)
    assert rater.model == "fake-model" and rater.rater == "llm:fake-model"
    assert rater.ask("hi", "hey", "Hello. How may I assist you?")[0] == "Likely A"
    assert rater.ask("hi", "yo", "Greetings.")[0] == "Tie"
    formats = [b["response_format"]["type"] for b in fake_endpoint.chats()]
    assert formats == ["json_schema", "json_object", "json_object"]
    assert "schema" in fake_endpoint.chats()[1]["response_format"]  # JSON mode with the schema as grammar
    assert rater.format == "json_object+schema" and rater.stats["format_fallbacks"] == 1
    headers = fake_endpoint.requests[-1][1]
    assert headers.get("Authorization") == f"Bearer {KEY}"
    assert KEY not in str(rater.describe())


def test_malformed_answer_is_retried_with_the_reason(fake_endpoint):
    fake_endpoint.script = ["the human is B", {"verdict": "Certainly B"}]
    rater = PairRater(base_url=fake_endpoint.base, model="m", timeout=5, response_format="json_object")
    assert rater.ask("hi", "a", "b")[0] == "Certainly B"
    second = fake_endpoint.chats()[1]["messages"]
    assert second[-2]["content"] == "the human is B" and "no JSON object" in second[-1]["content"]


def test_a_pair_that_keeps_failing_is_an_error_naming_the_reason(fake_endpoint):
    fake_endpoint.script = [("raw", 401, f"bad key {KEY}".encode())]
    rater = PairRater(base_url=fake_endpoint.base, model="m", timeout=5, response_format="json_object")
    with pytest.raises(RatingError, match="refused the key") as err:
        rater.ask("hi", "a", "b", item="p1")
    assert KEY not in err.value.message and err.value.item == "p1"
    assert len(fake_endpoint.chats()) == 1  # a refused key is not retried


def test_both_replies_are_shown_the_same_way(fake_endpoint):
    fake_endpoint.script = [{"verdict": "Tie"}]
    rater = PairRater(base_url=fake_endpoint.base, model="m", timeout=5)
    rater.ask("how was your day", "REPLY-ONE", "REPLY-TWO")
    text = fake_endpoint.chats()[0]["messages"][-1]["content"]
    assert "Speaker A:\nREPLY-ONE\n\nSpeaker B:\nREPLY-TWO" in text and "which speaker is the human" in text.lower()


def test_real_server_answers_on_the_scale(llama_server):
    """llama-cpp-python's server refuses json_schema (422); the rater moves to JSON mode
    with the schema as a grammar, and the 135M model's answer validates."""
    rater = PairRater(base_url=llama_server, timeout=120, retries=1, concurrency=1)
    try:
        verdict, raw = rater.ask("hey, what are you up to tonight?", "nm just chilling lol, u?",
                                 "As an AI, I do not have plans. How can I assist you today?")
    finally:
        rater.close()
    assert verdict in SCALE and raw
    assert rater.format in ("json_object+schema", "json_schema")
