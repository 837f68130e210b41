"""The api judge: validation of untrusted answers, retries with the reason fed
back, timeouts, per-item errors, the key kept out of every file, and a real
llama-cpp-python server with the bundled model."""

from __future__ import annotations

import json
import time

import pytest

from engine.scoring.dialogue import Dialogue, Turn
from engine.scoring.judges import JudgeUnavailable, RatingCache, RatingError, get_judge
from engine.scoring.judges.api import ApiJudge, parse_ratings, public_url
from engine.scoring.traits import load_questionnaire

from .conftest_server import fake_endpoint, llama_server  # noqa: F401  (fixtures)

KEY = "sk-test-DO-NOT-STORE-7f3a9c"
TRAITS = [1, 5, 20]
GOOD = {"1": 4, "5": 1, "20": 2}


def chat(text: str = "lol mostly sleep tbh. u?", did: str = "d1") -> Dialogue:
    return Dialogue(id=did, turns=(Turn("I", "what do you do on weekends?"), Turn("W", text)), rated_speaker="W")


@pytest.fixture
def q():
    return load_questionnaire("hal16").subset(TRAITS)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("HAL_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("HAL_API_BASE", raising=False)


def make(base: str, q, tmp_path=None, **kw) -> ApiJudge:
    kw.setdefault("timeout", 5)
    kw.setdefault("concurrency", 1)
    cache = RatingCache(tmp_path / "ratings.sqlite3") if tmp_path else False
    return ApiJudge(questionnaire=q, cache=cache, base_url=base, **kw)


# ------------------------------------------------------------ validation
@pytest.mark.parametrize("content, reason", [
    ("", "empty"),
    ("sure! here you go", "no JSON object"),
    ('{"1": 4, "5": 1,}', "did not parse"),
    ('[1, 4, 2]', "no JSON object"),
    ('{"1": 4, "5": 1}', "missing for statements 20"),
    ('{"1": 4, "5": 1, "20": 6}', "20 need a number"),
    ('{"1": 4, "5": 1, "20": "3"}', "20 need a number"),
    ('{"1": true, "5": 1, "20": 3}', "1 need a number"),
    ('{"1": 4, "5": 0, "20": NaN}', "need a number"),
])
def test_bad_answers_are_refused_with_a_reason(content, reason):
    with pytest.raises(ValueError, match=reason):
        parse_ratings(content, TRAITS)


def test_good_answers_parse():
    assert parse_ratings('```json\n{"1": 4, "5": 1.5, "20": 2, "99": 3}\n```', TRAITS) == {1: 4.0, 5: 1.5, 20: 2.0}


def test_public_url_drops_credentials():
    assert public_url("https://user:pw@api.example.com/v1/?key=abc#x") == "https://api.example.com/v1"


def test_needs_a_base_url(q):
    with pytest.raises(JudgeUnavailable, match="base URL"):
        get_judge("api", questionnaire=q, cache=False)


# ------------------------------------------------------- the fake endpoint
def test_valid_answer_and_the_key_is_sent_but_never_stored(fake_endpoint, q, tmp_path):
    fake_endpoint.script = [GOOD]
    judge = make(fake_endpoint.base, q, tmp_path)  # no model named: taken from /models
    assert judge.model == "fake-model"
    assert judge.rate(chat()) == {1: 4.0, 5: 1.0, 20: 2.0}
    _, headers, body = fake_endpoint.requests[-1]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert body["response_format"] == {"type": "json_object"} and body["model"] == "fake-model"
    assert KEY not in judge.judge_id + repr(judge) + json.dumps(judge.describe())
    judge.cache.close()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_malformed_answer_is_retried_with_the_error_fed_back(fake_endpoint, q):
    fake_endpoint.script = ["my ratings: 1=4, 5=1", {"1": 4, "5": 1}, GOOD]
    judge = make(fake_endpoint.base, q, retries=2)
    assert judge.rate(chat()) == {1: 4.0, 5: 1.0, 20: 2.0}
    chats = fake_endpoint.chats()
    assert len(chats) == 3 and judge.stats["retries"] == 2
    second, third = chats[1]["messages"], chats[2]["messages"]
    assert second[-2] == {"role": "assistant", "content": "my ratings: 1=4, 5=1"}
    assert "no JSON object" in second[-1]["content"]
    assert "missing for statements 20" in third[-1]["content"]


def test_garbage_fails_per_item_and_the_rest_finish(fake_endpoint, q):
    fake_endpoint.script = [("raw", 200, b"\x00\xffnot json at all"), ("raw", 200, b"<html>oops</html>"), GOOD]
    judge = make(fake_endpoint.base, q, retries=1)
    out = judge.rate_many([chat(did="a"), chat("yeah i guess", did="b")])
    assert isinstance(out[0], RatingError) and out[0].item == "a"
    assert "did not answer JSON" in out[0].message and "2 tries" in out[0].message
    assert out[1] == {1: 4.0, 5: 1.0, 20: 2.0}


def test_timeout_is_a_per_item_error(fake_endpoint, q):
    fake_endpoint.script = [("sleep", 3), ("sleep", 3)]
    judge = make(fake_endpoint.base, q, timeout=0.4, retries=1)
    t0 = time.monotonic()
    out = judge.rate_many([chat()])[0]
    assert isinstance(out, RatingError) and "timed out" in out.message
    assert time.monotonic() - t0 < 2.5


def test_refused_key_is_not_retried_and_server_errors_are(fake_endpoint, q):
    fake_endpoint.script = [("raw", 401, json.dumps({"error": f"bad key {KEY}"}).encode())]
    judge = make(fake_endpoint.base, q, retries=3)
    out = judge.rate_many([chat()])[0]
    assert isinstance(out, RatingError) and "refused the key" in out.message and len(fake_endpoint.chats()) == 1
    fake_endpoint.script = [("raw", 503, f"echo {KEY}".encode()), GOOD]
    assert judge.rate(chat("other")) == {1: 4.0, 5: 1.0, 20: 2.0}
    fake_endpoint.script = [("raw", 400, f"no such thing, key {KEY}".encode())]
    err = judge.rate_many([chat("third")])[0]
    assert isinstance(err, RatingError) and "HTTP 400" in err.message and KEY not in err.message


def test_oversized_answer_is_refused(fake_endpoint, q):
    fake_endpoint.script = [("raw", 200, b"x" * (1 << 21))]
    out = make(fake_endpoint.base, q, retries=0).rate_many([chat()])[0]
    assert isinstance(out, RatingError) and "larger than" in out.message


def test_traits_split_over_requests_and_schema_formats(fake_endpoint, q):
    fake_endpoint.script = [{"1": 4, "5": 1}, {"20": 2}]
    judge = make(fake_endpoint.base, q, traits_per_request=2, response_format="json_schema")
    assert judge.rate(chat()) == {1: 4.0, 5: 1.0, 20: 2.0}
    fmt = fake_endpoint.chats()[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["required"] == ["1", "5"]


def test_cli_score_with_the_api_judge(fake_endpoint, tmp_path, capsys):
    from engine.scoring.cli import main

    path = tmp_path / "d.jsonl"
    rows = [{"id": "a", "turns": [["I", "hi"], ["W", "yo whats up"]], "rated_speaker": "W", "label": "human"},
            {"id": "b", "turns": [["I", "hi"], ["W", "Hello! How can I help?"]], "rated_speaker": "W"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    fake_endpoint.script = [GOOD, "no", "no", "no"]
    rc = main(["score", str(path), "--judge", "api", "--api-base", fake_endpoint.base, "--model", "m",
               "--questionnaire", str(_saved(tmp_path)), "--weights", "hal16_published", "--json", "--no-cache"])
    out = capsys.readouterr().out
    lines = [json.loads(x) for x in out.splitlines()]
    # the judge may send the two items concurrently, so the scripted good
    # answer can go to either: one line is rated, the other carries its reason
    rated = [ln for ln in lines if "traits" in ln]
    failed = [ln for ln in lines if "error" in ln]
    assert rc == 3 and len(rated) == 1 and len(failed) == 1 and KEY not in out
    assert rated[0]["traits"]["1"] == 4.0


def _saved(tmp_path):
    q = load_questionnaire("hal16").subset(TRAITS)
    path = tmp_path / "q3.json"
    path.write_text(json.dumps({**q.to_dict(), "id": "q3", "version": 1}))
    return path


# ------------------------------------------------------ the real server
def test_real_server_with_a_json_schema(llama_server, q, tmp_path):
    """With the schema as a grammar the 135M model's answer always validates."""
    judge = make(llama_server, q, tmp_path, timeout=120, retries=1,
                 response_format="json_object+schema")
    try:
        ratings = judge.rate(chat())
        assert sorted(ratings) == TRAITS and all(r in (1.0, 2.0, 3.0, 4.0, 5.0) for r in ratings.values())
        assert "bundled" not in judge.judge_id and judge.model  # named from /v1/models
    finally:
        judge.cache.close()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_real_server_plain_json_mode(llama_server, q):
    """JSON mode alone (no schema): SmolLM2-135M often leaves traits out, which
    must come back as a reason, never as a rating it did not give."""
    judge = make(llama_server, q, timeout=120, retries=0, response_format="json_object")
    out = judge.rate_many([chat()])[0]
    if isinstance(out, RatingError):
        assert out.message.startswith("malformed answer")
    else:
        assert sorted(out) == TRAITS and all(1 <= r <= 5 for r in out.values())
