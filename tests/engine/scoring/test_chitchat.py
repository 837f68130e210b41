"""Contrastive dialogues from the chitchat-dataset package (shipped data, no
download): contexts, labelled pairs sharing a group, JSONL that hal fit reads."""

from __future__ import annotations

import json

import pytest

from engine.models.base import GenerationResult
from engine.scoring.chitchat import (PARTNER, RESPONDER, build_contrast, chitchat_chats, chitchat_file,
                                     jsonl_chats, pick_contexts, write_contrast)
from engine.scoring.importers import load_jsonl

pytest.importorskip("chitchat_dataset")


class FakeModel:
    """Stands in for LlamaCppModel.generate: a fixed reply, or none."""

    backend = "fake"
    path = "fake.gguf"

    def __init__(self, reply="haha same, i love that"):
        self.reply = reply
        self.calls = []

    def info(self):
        return {"name": "fake", "chat_template_digest": "0"}

    def generate(self, messages, sampling, adapter, on_token, cancelled):
        self.calls.append((messages, sampling))
        return GenerationResult(self.reply, "stop", 10, 3, 0.0, 0.0)


@pytest.fixture(scope="module")
def chats():
    return chitchat_chats()


def test_the_data_ships_in_the_package(chats):
    assert chitchat_file().stat().st_size > 10_000_000
    assert len(chats) > 7000 and all(isinstance(t, str) for _, turns in chats[:50] for _, t in turns)


def test_contexts_are_reproducible_and_end_with_the_partner(chats):
    a, b = pick_contexts(chats, 20, seed=3), pick_contexts(chats, 20, seed=3)
    assert [c.source for c in a] == [c.source for c in b] and len(a) == 20
    assert len({c.source.split("#")[0] for c in a}) == 20  # one context per chat
    for c in a:
        assert len(c.turns) == 3 and c.turns[-1][0] == PARTNER and c.human_reply
        assert {s for s, _ in c.turns} <= {PARTNER, RESPONDER}
    assert [c.source for c in pick_contexts(chats, 20, seed=4)] != [c.source for c in a]


def test_pairs_share_a_group_and_load_for_fit(chats, tmp_path):
    model = FakeModel()
    contexts = pick_contexts(chats, 4, seed=0)
    out = tmp_path / "c.jsonl"
    with open(out, "w") as fh:
        for records, problem in build_contrast(contexts, model):
            assert problem is None
            for r in records:
                fh.write(json.dumps(r) + "\n")
    data = load_jsonl(out)
    assert not data.problems and len(data.dialogues) == 8
    for human, ai in zip(data.dialogues[::2], data.dialogues[1::2]):
        assert (human.label, ai.label) == ("human", "ai") and human.group == ai.group
        assert human.turns[:-1] == ai.turns[:-1] and ai.turns[-1].text == "haha same, i love that"
        assert human.rated_speaker == RESPONDER and ai.meta["sampling"]["temperature"] == 0.7
    messages = model.calls[0][0]
    assert messages[0]["role"] == "system" and messages[-1]["role"] == "user"
    assert len({s.seed for _, s in model.calls}) == 4  # a seed per context, reproducible


def test_an_empty_generation_is_reported_not_written(chats):
    results = list(build_contrast(pick_contexts(chats, 2, seed=1), FakeModel(reply="   ")))
    assert all(records is None and "empty" in problem for records, problem in results)


def test_local_jsonl_chats(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"id": "c1", "turns": [["x", "hi"], ["y", "hey you"], ["x", "how was work"],
                                                      ["y", "long day honestly"]]}) + "\n")
    chats = jsonl_chats(path)
    ctx = pick_contexts(chats, 5, context=3)
    assert len(ctx) == 1 and ctx[0].human_reply == "long day honestly"
    report = write_contrast(tmp_path / "o.jsonl", 1, FakeModel(), source=str(path))
    assert report["pairs"] == 1 and len(load_jsonl(tmp_path / "o.jsonl").dialogues) == 2


def test_cli_builds_with_the_bundled_model(tmp_path, capsys):
    pytest.importorskip("llama_cpp")
    from engine.scoring.cli import main

    out = tmp_path / "pairs.jsonl"
    rc = main(["contrast", "build", "--n", "1", "--out", str(out), "--max-tokens", "8", "--json"])
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert rc == 0 and report["pairs"] == 1
    data = load_jsonl(out)
    assert [d.label for d in data.dialogues] == ["human", "ai"] and data.dialogues[1].turns[-1].text


def test_another_system_prompt_gives_the_model_another_persona(chats):
    model = FakeModel()
    contexts = pick_contexts(chats, 2, seed=0)
    plain = [r for r, _ in build_contrast(contexts, model)]
    persona = [r for r, _ in build_contrast(contexts, model, system="you text in lowercase")]
    assert model.calls[0][0][0]["content"] != "you text in lowercase"
    assert model.calls[2][0][0] == {"role": "system", "content": "you text in lowercase"}
    assert persona[0][1]["meta"]["system"] == "you text in lowercase" and "system" not in plain[0][1]["meta"]
    assert persona[0][0]["turns"] == plain[0][0]["turns"]  # same contexts and human replies
