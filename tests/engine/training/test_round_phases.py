"""A round's phases: the progress bar keeps moving through the verdict and its canaries,
the round reports where its time went, the verdict samples on llama.cpp with the GGUF LoRA
where one exists, and the smoke preset stays small."""

from __future__ import annotations

import math

import pytest

from engine.jobs import RecordingState
from engine.training import dpo, policy
from engine.training.phases import VERDICT_PHASES


def _smoke(tiny_model_dir, tiny_gguf, **over):
    return dpo.make_config("smoke", {"model": str(tiny_model_dir), "base_gguf": str(tiny_gguf), "threads": 1,
                                     **over})


def test_progress_moves_through_the_verdict_and_canaries_and_timings_add_up(
        tiny_model_dir, tiny_gguf, fake_reward, store):
    state = RecordingState()
    out = dpo.run(_smoke(tiny_model_dir, tiny_gguf, canary_dialogues=4), state, store)
    events = state.of_type("progress")
    done = [e["done"] for e in events]
    assert done == sorted(done), "the bar went backwards"
    assert all(e["done"] < e["total"] for e in events[:-1]), \
        [e["message"] for e in events[:-1] if e["done"] >= e["total"]]
    assert events[-1]["done"] == events[-1]["total"] and events[-1]["message"] == "done"
    canary = [e for e in events if "canary" in e["message"]]
    assert canary and len({e["done"] for e in canary}) >= 3  # it advances dialogue by dialogue
    assert all(e["eta_s"] is not None and e["eta_s"] > 0 for e in canary[:-1])
    verdict = [e for e in events if e["message"].startswith("verdict")]
    assert verdict[0]["done"] < 0.99 * verdict[0]["total"]

    t = out["timings"]
    assert {"load", "pairs", "training", "adapter", *VERDICT_PHASES} <= set(t)
    assert all(v >= 0 for v in t.values())
    assert sum(t.values()) <= out["seconds"] + 0.05
    share = sum(t[k] for k in VERDICT_PHASES) / out["seconds"]
    assert 0 < out["verdict_share"] < 1 and math.isclose(out["verdict_share"], share, abs_tol=0.01)
    assert out["verdict"]["canary"]["n_dialogues"] == 4
    assert out["verdict"]["canary_human_chat"]["n_dialogues"] == 4
    row = store.db["rounds"].get(out["round_id"])
    assert '"verdict_share"' in row["metrics"]


def test_smoke_presets_are_small_and_sample_where_it_is_fastest():
    from engine.training import grpo

    for mod in (dpo, grpo):
        cfg = mod.make_config("smoke")
        assert cfg.sampler == "auto"  # llama.cpp on a GGUF base, with the GGUF LoRA for the verdict
        assert 2 <= cfg.verdict_prompts <= 4 and 1 <= cfg.canary_dialogues <= 8
        assert cfg.max_steps <= 2
    assert dpo.make_config("default").canary_dialogues == 0  # the default verdict reads every dialogue


def test_verdict_samples_on_llamacpp_with_the_gguf_lora_where_one_exists(tiny_model_dir, tiny_gguf):
    pytest.importorskip("llama_cpp")
    bundled = policy.resolve("bundled")
    sampler, adapter = policy.verdict_sampler("auto", bundled, "/some/adapter.gguf", None, None, 1)
    try:
        assert sampler.name == "llamacpp" and adapter == "/some/adapter.gguf"
    finally:
        policy.close(sampler)
    sampler, adapter = policy.verdict_sampler("transformers", bundled, "/some/adapter.gguf", None, None, 1)
    assert sampler.name == "transformers" and adapter == "default"
    sampler, adapter = policy.verdict_sampler("auto", bundled, None, None, None, 1)  # no GGUF LoRA
    assert sampler.name == "transformers"
    # a folder base whose GGUF llama.cpp cannot read: said once, transformers instead
    said = []
    sampler, adapter = policy.verdict_sampler("auto", policy.resolve(str(tiny_model_dir), str(tiny_gguf)),
                                              "/some/adapter.gguf", None, None, 1, said.append)
    assert sampler.name == "transformers" and adapter == "default" and "llama.cpp" in said[0]


def test_batched_canary_matches_one_dialogue_at_a_time(tiny_model_dir):
    from engine.training import prompts as PS
    from engine.training.verdict import canary_perplexity

    model, tok = policy.load(policy.resolve(str(tiny_model_dir)))
    dialogues = PS.canary_dialogues()[:7]
    one = canary_perplexity(model, tok, dialogues, True, batch_size=1)
    seen = []
    batched = canary_perplexity(model, tok, dialogues, True, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert math.isfinite(one) and math.isclose(one, batched, rel_tol=1e-4)
    assert seen == [(4, 7), (7, 7)]


def test_a_gguf_load_parses_its_header_once_and_puts_gguf_back():
    import gguf

    from engine.models.hf_load import _one_gguf_parse
    from engine.models.spec import bundled_gguf_path

    real_reader, real_map = gguf.GGUFReader, gguf.get_tensor_name_map
    path = bundled_gguf_path()
    with _one_gguf_parse():
        from gguf import GGUFReader, get_tensor_name_map  # as transformers looks them up, at call time

        assert GGUFReader(path) is GGUFReader(str(path))
        assert get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2) is get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
    assert gguf.GGUFReader is real_reader and gguf.get_tensor_name_map is real_map
