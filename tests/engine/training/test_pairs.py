"""Prompt sets, pair building with a margin, ratings as pairs, export formats."""

from __future__ import annotations

import json

import pytest

from engine.errors import BadRequest
from engine.training import pairs as P
from engine.training import prompts as PS
from engine.training.sampling import SampleSettings

from .helpers import seed_votes


def test_bundled_prompt_set_has_fixed_heldout_split():
    ps = PS.load()
    assert not ps.problems
    train, held = ps.split("train"), ps.split("heldout")
    assert len(train) + len(held) >= 150 and len(held) >= 20
    assert not {p.id for p in train} & {p.id for p in held}
    assert any(p.messages[0]["role"] == "system" for p in ps.prompts)  # personas
    assert PS.load().digest() == ps.digest()
    assert len(PS.canary_dialogues()) >= 20


def test_import_reports_bad_lines(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text("\n".join([
        json.dumps({"text": "hi there"}),
        "{not json",
        json.dumps({"text": ""}),
        json.dumps({"messages": [{"role": "user", "content": "yo"}], "split": "heldout"}),
        json.dumps({"text": "x", "split": "test"}),
        json.dumps([1, 2]),
        json.dumps({"text": "who?", "persona": "nobody"}),
    ]))
    ps = PS.load(f)
    assert [p.user_text for p in ps.prompts] == ["hi there", "yo"]
    assert ps.prompts[1].split == "heldout"
    reasons = {p["line"]: p["reason"] for p in ps.problems}
    assert set(reasons) == {2, 3, 5, 6, 7}
    assert "JSON" in reasons[2] and "split" in reasons[5] and "persona" in reasons[7]
    from engine.jobs import RecordingState

    state = RecordingState()
    PS.report_problems(ps, state)
    assert len(state.of_type("log")) == 1 + len(ps.problems)
    with pytest.raises(BadRequest, match="at least 3"):
        PS.require(ps.split("train"), 3, "training split")


class ListSampler:
    name = "fixed"

    def __init__(self, replies):
        self.replies = replies

    def generate(self, prompts, seeds, adapter, settings, cancelled=lambda: False, on_done=lambda n: None):
        return [self.replies[s % len(self.replies)] for s in seeds]


def test_pairs_keep_only_gaps_above_margin(fake_reward):
    prompts = PS.load().split("train")[:3]
    sampler = ListSampler(["lol ok", "lol ok", "Well, that is a long and Formal reply with many Words in it."])
    pool = P.sample_and_score(prompts, sampler, fake_reward, 3, None, SampleSettings(), seed=0)
    scores = pool.all_scores()
    margin = P.margin_of(scores, None, 0.5)
    assert margin > 0
    pairs = P.pairs_from_pool(prompts, pool, margin)
    assert len(pairs) == 2 * len(prompts)  # each short reply beats the long one; identical texts never pair
    assert all(p.chosen_score - p.rejected_score > margin for p in pairs)
    assert all(p.chosen == "lol ok" for p in pairs)
    assert P.pairs_from_pool(prompts, pool, 1e9) == []
    assert len(P.pairs_from_pool(prompts, pool, margin, max_per_prompt=1)) == len(prompts)


def test_ratings_become_pairs_without_ties_or_both_bad(store):
    ids = seed_votes(store, 8)
    pairs = P.rating_pairs(store, likely_weight=0.5)
    assert sorted(p.rating_id for p in pairs) == sorted(ids)
    assert all(p.source == "rating" and len(p.chosen) < len(p.rejected) for p in pairs)
    assert {p.weight for p in pairs} == {0.5, 1.0}
    rows = P.training_rows(pairs, rating_repeat=2)
    assert len(rows) == 4 * 2 + 4 * 1  # certainly x2, likely x1
    assert P.rating_pairs(store, likely_weight=0.0) and len(P.rating_pairs(store, likely_weight=0.0)) == 4


def test_store_lineage_and_exports(store, fake_reward, tmp_path):
    import datasets

    seed_votes(store, 4)
    prompts = PS.load().split("train")[:2]
    pool = P.sample_and_score(prompts, ListSampler(["ya", "Long Formal Reply Here ok."]), fake_reward, 2,
                              None, SampleSettings(), seed=0)
    pairs = P.pairs_from_pool(prompts, pool, 0.0) + P.rating_pairs(store)
    pair_set = P.save(store, pairs, None, fake_reward)
    back = P.load(store, pair_set)
    assert [(p.chosen, p.source, p.prompt_id) for p in back] == [(p.chosen, p.source, p.prompt_id) for p in pairs]
    lin = P.lineage(pair_set, back, fake_reward)
    assert lin["n_sampled"] == 2 and lin["n_rating"] == 4 and lin["judge"] == "fake"
    assert len(lin["rating_ids"]) == 4 and lin["prompt_ids"] == sorted(p.id for p in prompts)
    n = P.export_jsonl(back, tmp_path / "pairs.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert len(rows) == n and rows[0]["chosen"][0]["role"] == "assistant"
    assert rows[0]["prompt"][-1]["role"] == "user"
    P.export_datasets(back, tmp_path / "ds")
    ds = datasets.load_from_disk(str(tmp_path / "ds"))
    assert set(ds.column_names) == {"prompt", "chosen", "rejected"} and len(ds) == n
    ds2 = datasets.load_dataset("json", data_files=str(tmp_path / "pairs.jsonl"), split="train")
    assert len(ds2) == n


def _pool(prompt_id: str, texts: list[str], scores: list[float]) -> P.SampledPool:
    pool = P.SampledPool()
    pool.replies[prompt_id], pool.scores[prompt_id] = list(texts), list(scores)
    return pool


def test_a_looping_reply_is_never_chosen_but_may_be_rejected():
    prompt = PS.load().split("train")[0]
    texts = ["ha ha ha ha ha ha ha ha ha", "pretty good, you?", "I am an assistant."]
    pool = _pool(prompt.id, texts, [5.0, 2.0, -1.0])  # the loop has the top score
    looping = lambda t: t.startswith("ha ha")  # noqa: E731
    pairs = P.pairs_from_pool([prompt], pool, 0.5, looping=looping)
    assert {p.chosen for p in pairs} == {"pretty good, you?"}
    assert {p.rejected for p in pairs} == {"I am an assistant."}
    with_loops = P.pairs_from_pool([prompt], pool, 0.5)
    assert "ha ha ha ha ha ha ha ha ha" in {p.chosen for p in with_loops}


def test_length_balance_drops_pairs_that_length_alone_decides():
    prompt = PS.load().split("train")[0]
    texts = ["ok", "sure thing, see you at noon then", "I would be happy to help you plan your day today"]
    pool = _pool(prompt.id, texts, [3.0, 2.0, 0.0])
    all_pairs = P.pairs_from_pool([prompt], pool, 0.5)
    balanced = P.pairs_from_pool([prompt], pool, 0.5, length_ratio_max=1.6)
    assert len(all_pairs) == 3
    assert [(p.chosen, p.rejected) for p in balanced] == [(texts[1], texts[2])]  # 7 vs 11 words


class _EchoSampler:
    name = "fake"

    def generate(self, messages, seeds, adapter, settings, cancelled, progress):
        progress(len(messages))
        return [f"As an AI, I can reply to: {m[-1]['content'][:20]}" for m in messages]


def test_human_anchored_pairs_put_a_real_reply_above_the_policys_own():
    pairs = P.human_pairs(6, _EchoSampler(), None, SampleSettings(0.7, 0.9, 32), seed=3)
    assert len(pairs) == 6 and all(p.source == "human" for p in pairs)
    for p in pairs:
        assert p.prompt[-1]["role"] == "user" and p.rejected.startswith("As an AI")
        assert p.chosen and not p.chosen.startswith("As an AI")
    lineage = P.lineage("set", pairs, None)
    assert lineage["n_human"] == 6
    assert P.human_pairs(0, _EchoSampler(), None, SampleSettings(0.7, 0.9, 32), seed=3) == []
