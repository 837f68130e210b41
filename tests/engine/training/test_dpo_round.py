"""The DPO round end to end on a tiny model: pairs, training, adapter, verdict, cancel/resume."""

from __future__ import annotations

import json
from pathlib import Path

from engine.jobs import RecordingState
from engine.training import dpo


def smoke(tiny_model_dir, tiny_gguf, **over):
    return dpo.make_config("smoke", {"model": str(tiny_model_dir), "base_gguf": str(tiny_gguf),
                                     "threads": 1, **over})


def test_smoke_round_writes_adapter_and_verdict(tiny_model_dir, tiny_gguf, fake_reward, store):
    state = RecordingState()
    out = dpo.run(smoke(tiny_model_dir, tiny_gguf), state, store)
    assert out["steps"] == 2
    adapter = Path(out["adapter_path"])
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert out["gguf_path"] and Path(out["gguf_path"]).read_bytes()[:4] == b"GGUF"
    assert not list(adapter.parent.glob(".tmp-*"))
    v = out["verdict"]
    for key in ("base", "aligned"):
        assert set(v[key]) == {"mean", "ci"} and v[key]["ci"][0] <= v[key]["mean"] <= v[key]["ci"][1]
    assert "delta" in v and "traits_delta" in v and "length_delta" in v and "canary" in v
    row = store.db["rounds"].get(out["round_id"])
    assert row["status"] == "done" and row["adapter_id"] == out["adapter"]
    assert json.loads(row["lineage"])["n_pairs"] > 0
    names = {c["name"] for c in state.of_type("metric")}
    assert {"loss", "rewards/margins", "rewards/accuracies"} <= names
    assert state.of_type("progress")[-1]["done"] == state.of_type("progress")[-1]["total"]
    adapters = store.db["adapters"].rows_where("round_id = ?", [out["round_id"]])
    assert [a["usable"] for a in adapters] == [1]


def test_online_rl_round_streams_reward_and_kl(tiny_model_dir, tiny_gguf, fake_reward, store):
    from engine.training import grpo

    state = RecordingState()
    cfg = grpo.make_config("smoke", {"model": str(tiny_model_dir), "base_gguf": str(tiny_gguf), "threads": 1})
    out = grpo.run(cfg, state, store)
    assert out["steps"] == 2 and Path(out["adapter_path"]).is_dir()
    names = {c["name"] for c in state.of_type("metric")}
    assert {"reward", "reward_std", "kl"} <= names
    assert store.db["rounds"].get(out["round_id"])["kind"] == "online"
    assert out["verdict"]["base"]["ci"]


def test_length_guard_penalises_empty_and_runaway():
    from engine.training import grpo

    cfg = grpo.make_config("smoke", {"min_words": 1, "max_words": 10})
    funcs, weights = grpo.reward_functions(None, cfg)
    guard = funcs[1]
    runaway = " ".join(f"word{i}" for i in range(20))  # long, but no loop
    assert guard([[]] * 3, ["", "ok sure", runaway]) == [-1.0, -0.0, -1.0]
    assert guard([[]], [" ".join(["w"] * 20)]) == [-3.0]  # long and looping: both penalties


class _Tok:
    eos_token_id = 2

    def convert_tokens_to_ids(self, token):
        return 7  # <|im_end|>


def test_a_cut_off_reply_is_penalised_and_one_that_ended_is_not():
    from engine.training import grpo

    cfg = grpo.make_config("smoke", {"max_completion_length": 4, "truncated_penalty": 2.0, "loop_penalty": 0.0})
    guard = grpo.reward_functions(None, cfg, tokenizer=_Tok())[0][1]
    got = guard([[]] * 3, ["a b c d", "a b c", "a b c d"], completion_ids=[[5, 6, 8, 9], [5, 6, 7], [5, 6, 8, 2]])
    assert got == [-2.0, -0.0, -0.0]  # cut off at 4 tokens / ended with im_end / ended with eos


def test_rpo_loss_adds_an_sft_term(tiny_model_dir, tiny_gguf, fake_reward, store):
    out = dpo.run(smoke(tiny_model_dir, tiny_gguf, loss_type="rpo", verdict=False, max_steps=1), RecordingState(),
                  store)
    assert out["steps"] == 1 and out["verdict"] is None


def test_a_margin_that_leaves_no_pairs_fails_the_round_by_name(tiny_model_dir, tiny_gguf, fake_reward, store):
    import io

    import pytest

    from engine.errors import EngineError
    from engine.server import Engine

    with pytest.raises(EngineError) as err:
        dpo.run(smoke(tiny_model_dir, tiny_gguf, margin=1e6, verdict=False), RecordingState(), store)
    assert err.value.kind == "no_pairs" and "margin" in err.value.message
    row = store.db["rounds"].get(err.value.round_id)
    assert row["status"] == "failed" and "cleared the margin" in row["error"]
    # The error event carries the round's id, so the studio can point at the failed round.
    buf = io.BytesIO()
    engine = Engine(out=buf)
    try:
        engine.error("m1", err.value.kind, err.value.message, cause=err.value)
    finally:
        engine.close()
    event = json.loads(buf.getvalue().decode().splitlines()[-1])
    assert event["content"]["round_id"] == err.value.round_id and event["parent"] == "m1"


def test_the_human_chat_anchor_adds_its_loss_and_a_second_canary(tiny_model_dir, tiny_gguf, fake_reward, store):
    from engine.training import anchor

    train = anchor.human_exchanges("train", 50)
    held = anchor.heldout_dialogues(20)
    assert len(train) == 50 and len(held) == 20
    assert all(d[0]["role"] == "user" and d[-1]["role"] == "assistant" for d in train + held)
    # the held-out chats are never among the anchor's
    assert not {d[-1]["content"] for d in held} & {d[-1]["content"] for d in anchor.human_exchanges("train", 3000)}
    state = RecordingState()
    out = dpo.run(smoke(tiny_model_dir, tiny_gguf, anchor="chitchat", anchor_weight=0.5, max_steps=2,
                        verdict_prompts=2, canary_dialogues=0), state, store)  # 0: every dialogue
    assert out["steps"] == 2
    names = {c["name"] for c in state.of_type("metric")}
    assert "anchor_nll" in names  # the anchor's loss was computed on every logged step
    nll = [c["value"] for c in state.of_type("metric") if c["name"] == "anchor_nll"]
    assert all(v > 0 for v in nll)
    human = out["verdict"]["canary_human_chat"]
    assert human["n_dialogues"] == 60 and human["base_ppl"] > 1 and human["aligned_ppl"] > 1
    assert isinstance(human["within_10pct"], bool)
