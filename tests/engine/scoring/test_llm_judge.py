"""The llm judge: ratings read from next-token digit probabilities, the shared
prefix equal to the unshared computation, determinism, cache, both backends."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.scoring.dialogue import Dialogue, Turn
from engine.scoring.judges import RatingCache, RatingError, get_judge
from engine.scoring.traits import load_questionnaire

pytest.importorskip("llama_cpp")

from engine.scoring.judges.llm import LLMJudge, read_digits  # noqa: E402

TRAITS = [1, 5, 20]  # brevity, emoji, asks back (kept few: every token costs on a loaded 2-core box)


def chat(*witness: str, speaker: str = "W") -> Dialogue:
    turns = []
    for i, line in enumerate(witness):
        turns += [Turn("I", f"what do you do on weekends {i}?"), Turn(speaker, line)]
    return Dialogue(id="d", turns=tuple(turns), rated_speaker="W")


SHORT = chat("lol mostly sleep tbh. u?")


@pytest.fixture(scope="module")
def q():
    return load_questionnaire("hal16").subset(TRAITS)


@pytest.fixture(scope="module")
def judge(q):
    j = LLMJudge(questionnaire=q, cache=False)
    yield j
    j.close()


@pytest.fixture(scope="module")
def rated(judge):
    """One shared-prefix rating of SHORT, with the scorer's token counts for it."""
    before = dict(judge.backend.scorer.stats)
    detail = judge.rate_detailed(SHORT)
    used = {k: judge.backend.scorer.stats[k] - before[k] for k in before}
    return detail, used


def test_ratings_and_details(rated, q):
    detail, _ = rated
    assert sorted(detail) == sorted(q.trait_ids)
    for d in detail.values():
        assert 1.0 <= d["rating"] <= 5.0
        assert math.isclose(sum(d["p"]), 1.0, abs_tol=1e-5)
        assert 0.0 <= d["entropy"] <= math.log(5) + 1e-9 and 0.0 <= d["confidence"] <= 1.0
        assert 0.0 < d["digit_mass"] <= 1.0
        assert math.isclose(d["rating"], sum(p * k for p, k in zip(d["p"], range(1, 6))), abs_tol=1e-4)


def test_read_digits_is_the_renormalised_expectation():
    d = read_digits(np.array([math.log(0.1), -np.inf, -np.inf, -np.inf, math.log(0.1)]))
    assert math.isclose(d["rating"], 3.0) and math.isclose(d["digit_mass"], 0.2)
    assert math.isclose(d["entropy"], math.log(2), rel_tol=1e-6)


def test_shared_prefix_equals_unshared(judge, rated):
    detail, used = rated
    assert used["prefix_tokens"] > 3 * used["tail_tokens"] / len(TRAITS)  # dialogue once, short tails
    alone = judge.backend.logprobs(judge.prompts(SHORT), shared=False)
    for row, tid in zip(alone, TRAITS):
        unshared = read_digits(row)
        assert math.isclose(unshared["rating"], detail[tid]["rating"], abs_tol=1e-4)
        np.testing.assert_allclose(unshared["p"], detail[tid]["p"], atol=1e-4)


def test_forked_tails_equal_sequential_ones(judge, rated):
    from engine.models.llamacpp_scoring import PrefixScorer

    backend = judge.backend
    tokens = [backend.model.tokenize(p) for p in judge.prompts(SHORT)]
    forked = PrefixScorer(backend.model, n_ctx=512, forks=3)
    try:
        lp = forked.logprobs(tokens, backend.cands)
        assert forked.stats["decodes"] == 2  # the prefix, then all three tails in one decode
    finally:
        forked.close()
    for row, tid in zip(lp, TRAITS):
        assert math.isclose(read_digits(row)["rating"], rated[0][tid]["rating"], abs_tol=1e-4)


def test_cache_hit_determinism_and_judge_id(q, tmp_path, judge, rated):
    cache = RatingCache(tmp_path / "r.sqlite3")
    j = LLMJudge(questionnaire=q, cache=cache, model=judge.backend.model)  # borrows the loaded model
    try:
        assert j.judge_id.startswith("llm@") and "SmolLM2" in j.judge_id and "llamacpp" in j.judge_id
        silent = Dialogue(id="x", turns=(Turn("I", "hello?"),), rated_speaker="W")
        first = j.rate_many([silent, SHORT])
        assert isinstance(first[0], RatingError)  # an error with a reason, never a zero
        # a second context on the same weights gives the very same numbers
        assert first[1] == {tid: round(rated[0][tid]["rating"], 4) for tid in TRAITS}
        decodes = j.backend.scorer.stats["decodes"]
        assert j.rate_many([SHORT])[0] == first[1] and cache.hits == 1
        assert j.backend.scorer.stats["decodes"] == decodes  # nothing recomputed
        assert j.details(SHORT)[TRAITS[0]]["p"]
        reworded = LLMJudge(questionnaire=q.reword(1, "Writes in very short bursts."), cache=cache,
                            model=judge.backend.model)
        assert reworded.judge_id != j.judge_id  # a new wording never reuses old ratings
        reworded.close()
    finally:
        j.close()
    assert judge.backend.model.info()  # closing a borrowing judge leaves the model loaded


def test_long_dialogue_is_cut_from_the_start(judge, q):
    j = LLMJudge(questionnaire=q.subset([1]), cache=False, model=judge.backend.model, max_prompt_tokens=260)
    try:
        long = chat(*[f"this is my fairly long line number {i} about nothing much" for i in range(40)])
        text = j.prompts(long)[0]
        assert "(earlier lines left out)" in text and "number 39" in text and "number 0 " not in text
        assert len(j.backend.model.tokenize(text)) <= 260
        assert 1 <= j.rate(long)[1] <= 5
    finally:
        j.close()


def test_bench_reports_the_all_vs_one_trait_cost(q):
    from engine.scoring.bench import bench_llm

    rep = bench_llm([SHORT], repeat=1, questionnaire=q)
    assert rep["n_traits"] == len(TRAITS) and rep["replies_per_s"] > 0 and rep["one_trait_replies_per_s"] > 0
    assert 0.5 < rep["all_vs_one_trait_cost"] < 2 * len(TRAITS) and rep["mean_prompt_tokens"] > 50


def test_registry_knows_it():
    from engine.scoring.judges import JudgeUnavailable

    with pytest.raises(JudgeUnavailable, match="unknown llm backend"):
        get_judge("llm", backend="onnx", cache=False)


# ------------------------------------------------------------- transformers
def tiny_hf_folder(folder):
    """A 2-layer random Llama with a byte-level tokenizer and a ChatML template."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {s: i for i, s in enumerate(specials)}
    for char in bytes_to_unicode().values():
        vocab[char] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    LlamaForCausalLM(config).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_transformers_backend(tmp_path, q):
    folder = tiny_hf_folder(tmp_path / "tiny")
    j = LLMJudge(questionnaire=q, cache=False, model=str(folder), max_prompt_tokens=1200)
    try:
        assert j.backend.kind == "transformers" and "transformers" in j.judge_id
        prompts = j.prompts(SHORT)
        shared, alone = j.backend.logprobs(prompts), j.backend.logprobs(prompts, shared=False)
        np.testing.assert_allclose(shared, alone, atol=1e-4)
        ratings = j.rate(SHORT)
        assert sorted(ratings) == sorted(TRAITS) and all(1 <= r <= 5 for r in ratings.values())
    finally:
        j.close()
