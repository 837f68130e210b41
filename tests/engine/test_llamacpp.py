"""The llama.cpp backend on the bundled SmolLM2: streaming, seeds, batching of
concurrent panes, cancelling, prefix caching, adapters and errors."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engine.errors import AdapterError, EngineError, PromptTooLong  # noqa: E402
from engine.models.base import Sampling, template_digest  # noqa: E402
from engine.models.spec import bundled_gguf_path  # noqa: E402

llamacpp = pytest.importorskip("engine.models.llamacpp")

HELLO = [{"role": "user", "content": "Name three fruits."}]
OTHER = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def model():
    m = llamacpp.LlamaCppModel(bundled_gguf_path(), n_ctx_per_seq=2048, max_seqs=2, n_threads=2)
    yield m
    m.close()


def run(model, messages, adapter=None, cancelled=lambda: False, **sampling):
    pieces: list[str] = []
    sampling.setdefault("max_tokens", 24)
    result = model.generate(messages, Sampling(**sampling), adapter, pieces.append, cancelled)
    return result, pieces


def two_at_once(model, jobs):
    """Run (messages, sampling) jobs from separate threads, as two panes do."""
    out: list = [None] * len(jobs)

    def go(i):
        out[i] = run(model, jobs[i][0], **jobs[i][1])[0]

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def write_lora(path, base_names, rank=4, scale=0.05, shape_fix=None, seed=0):
    """A random GGUF LoRA on the attention q/v tensors of the bundled model."""
    import gguf

    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank))
    for name, (n_in, n_out) in base_names.items():
        if shape_fix:
            n_in = shape_fix
        w.add_tensor(name + ".lora_a", rng.normal(0, scale, (rank, n_in)).astype(np.float32))
        w.add_tensor(name + ".lora_b", rng.normal(0, scale, (n_out, rank)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


ATTN = {f"blk.{i}.{t}.weight": (576, 576 if t == "attn_q" else 192) for i in range(30)
        for t in ("attn_q", "attn_v")}


def test_info_fields(model):
    info = model.info()
    assert info["backend"] == "llamacpp" == model.backend
    assert info["name"] and info["path"].endswith(".gguf")
    assert info["n_ctx"] == 2048
    assert info["chat_template_source"] == "gguf"
    assert info["chat_template_digest"] == template_digest(model.chat_template)
    assert 100_000_000 < info["n_params"] < 200_000_000
    assert info["file_bytes"] == bundled_gguf_path().stat().st_size
    assert isinstance(info["adapters"], list)


def test_template_and_tokens(model):
    text = model.render(HELLO)
    assert text.endswith("<|im_start|>assistant\n") and "Name three fruits." in text
    tokens = model.tokenize(text)
    assert tokens[0] == 1 and tokens.count(1) == 3  # <|im_start|> parsed as special, BOS not doubled
    fallback = llamacpp._compile_template(llamacpp.FALLBACK_TEMPLATE)
    assert fallback.render(messages=HELLO, add_generation_prompt=True) == (
        "<|im_start|>user\nName three fruits.<|im_end|>\n<|im_start|>assistant\n")


def test_streaming_and_limits(model):
    result, pieces = run(model, HELLO, temperature=0.7, seed=1, max_tokens=12)
    assert "".join(pieces) == result.text and len(pieces) > 1
    assert result.finish_reason == "length" and result.completion_tokens == 12
    assert result.prompt_tokens == len(model.tokenize(model.render(HELLO)))
    assert 0 < result.ttft_s <= result.total_s
    assert result.tok_s > 0
    short, _ = run(model, [{"role": "user", "content": "Say only: yes"}], temperature=0, max_tokens=200)
    assert short.finish_reason == "stop" and short.completion_tokens < 200


def test_same_seed_same_text(model):
    a, _ = run(model, HELLO, temperature=0.9, seed=7)
    b, _ = run(model, HELLO, temperature=0.9, seed=7)
    assert a.text == b.text
    others = {run(model, HELLO, temperature=0.9, seed=s)[0].text for s in (8, 9, 10)}
    assert len(others | {a.text}) > 1


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_concurrent_panes_match_single_runs(model, temperature):
    jobs = [(HELLO, {"temperature": temperature, "seed": 3}), (OTHER, {"temperature": temperature, "seed": 4})]
    single = [run(model, m, **s)[0].text for m, s in jobs]
    both = two_at_once(model, jobs)
    assert [r.text for r in both] == single
    # Each pane had a context of its own (the weights are shared), so they ran side by side.
    assert sorted(r.extra["context"] for r in both) == [0, 1]


def test_batched_panes_match_single_runs():
    m = llamacpp.LlamaCppModel(bundled_gguf_path(), n_ctx_per_seq=1024, max_seqs=2, n_threads=2,
                               lane_per_seq=False)
    try:
        jobs = [(HELLO, {"temperature": 0.8, "seed": 3}), (OTHER, {"temperature": 0.8, "seed": 4})]
        single = [run(m, msgs, **s)[0].text for msgs, s in jobs]
        both = two_at_once(m, jobs)
        assert [r.text for r in both] == single
        assert {r.extra["context"] for r in both} == {0}
        assert sorted(r.extra["seq"] for r in both) == [0, 1]
    finally:
        m.close()


def test_more_requests_than_sequences_wait_their_turn(model):
    jobs = [(HELLO, {"temperature": 0, "max_tokens": 8})] * 3
    results = two_at_once(model, jobs)
    assert all(r is not None and r.completion_tokens == 8 for r in results)
    assert len({r.text for r in results}) == 1


def test_cancel_mid_stream_keeps_partial_text(model):
    seen: list[str] = []
    result = model.generate(HELLO, Sampling(temperature=0, max_tokens=200), None, seen.append,
                            lambda: len(seen) >= 3)
    assert result.finish_reason == "cancelled"
    assert result.text == "".join(seen) and result.text
    assert result.completion_tokens < 10


def test_failing_callback_ends_only_its_request(model):
    def explode(_):
        raise RuntimeError("pipe closed")

    out = {}

    def other():
        out["r"] = run(model, OTHER, temperature=0, max_tokens=16)[0]

    t = threading.Thread(target=other)
    t.start()
    with pytest.raises(RuntimeError, match="pipe closed"):
        model.generate(HELLO, Sampling(temperature=0, max_tokens=50), None, explode, lambda: False)
    t.join(60)
    assert out["r"].completion_tokens == 16
    assert run(model, HELLO, temperature=0, max_tokens=4)[0].completion_tokens == 4


def test_prompt_too_long(model):
    long = [{"role": "user", "content": "apple " * 2100}]
    with pytest.raises(PromptTooLong) as err:
        run(model, long)
    assert "2048" in str(err.value) and "tokens" in str(err.value)


def test_prefix_cache_reuses_the_growing_history(model):
    first, _ = run(model, HELLO, temperature=0, max_tokens=30)
    history = HELLO + [{"role": "assistant", "content": first.text},
                       {"role": "user", "content": "Which one is the sweetest?"}]
    second, _ = run(model, history, temperature=0, max_tokens=30)
    assert second.extra["reused_tokens"] >= first.prompt_tokens
    assert second.extra["prefill_tokens"] < second.prompt_tokens
    fresh = llamacpp.LlamaCppModel(bundled_gguf_path(), n_ctx_per_seq=2048, n_threads=2)
    try:
        cold, _ = run(fresh, history, temperature=0, max_tokens=30)
    finally:
        fresh.close()
    assert cold.extra["prefill_tokens"] == cold.prompt_tokens
    assert cold.text == second.text  # caching changes the work, not the answer


@pytest.fixture(scope="module")
def batched():
    """One context holding both sequences (the mode training's samplers use)."""
    m = llamacpp.LlamaCppModel(bundled_gguf_path(), n_ctx_per_seq=2048, max_seqs=2, n_threads=2,
                               lane_per_seq=False)
    yield m
    m.close()


def test_a_pane_starting_late_copies_the_shared_prefix(batched):
    model = batched
    story = "A lighthouse keeper on a small island keeps a diary about the weather and the ships. " * 6
    first = [{"role": "user", "content": story + "Summarise the diary."}]
    second = [{"role": "user", "content": story + "Who might read it?"}]
    seen: list[str] = []
    started = threading.Event()
    out = {}

    def early():
        out["a"] = model.generate(first, Sampling(temperature=0, max_tokens=40), None,
                                  lambda t: (seen.append(t), started.set()), lambda: False)

    t = threading.Thread(target=early)
    t.start()
    assert started.wait(60)
    late, _ = run(model, second, temperature=0, max_tokens=16)
    t.join(60)
    assert late.extra["reused_tokens"] >= llamacpp.SHARE_MIN
    assert late.extra["prefill_tokens"] < late.prompt_tokens - llamacpp.SHARE_MIN
    fresh = llamacpp.LlamaCppModel(bundled_gguf_path(), n_ctx_per_seq=2048, n_threads=2)
    try:
        assert run(fresh, second, temperature=0, max_tokens=16)[0].text == late.text
    finally:
        fresh.close()


def test_utf8_is_never_split(model):
    text = "🙂🎉 café 日本語"
    pieces = [model.piece(t) for t in model.tokenize(text)]
    assert any(not p.decode("utf-8", "ignore") == p.decode("utf-8", "replace") for p in pieces)
    result, streamed = run(model, [{"role": "user", "content": "Reply with three emoji about the sea: 🌊"}],
                           temperature=0, max_tokens=20)
    assert result.text and all("\ufffd" not in p for p in streamed)
    assert any(ord(ch) > 0xFFFF for ch in result.text)


def test_adapter_errors_are_clear(model, tmp_path):
    with pytest.raises(AdapterError, match="not found"):
        model.check_adapter(str(tmp_path / "missing.gguf"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all")
    with pytest.raises(AdapterError, match="not a GGUF"):
        run(model, HELLO, adapter=str(junk))
    with pytest.raises(AdapterError, match="is not a LoRA adapter"):
        model.check_adapter(str(bundled_gguf_path()))  # a model, not an adapter
    wrong = write_lora(tmp_path / "wrong.gguf", ATTN, shape_fix=100)
    with pytest.raises(AdapterError, match="shapes that do not match") as err:
        model.check_adapter(wrong)
    assert "shape" in err.value.detail
    assert run(model, HELLO, temperature=0, max_tokens=4)[0].completion_tokens == 4


def test_adapter_changes_output_and_runs_beside_base(model, tmp_path):
    lora = write_lora(tmp_path / "lora.gguf", ATTN, scale=0.2)
    base = model.next_token_logits(HELLO)
    tuned = model.next_token_logits(HELLO, lora)
    assert not np.allclose(base, tuned)
    assert os.path.realpath(lora) in model.info()["adapters"]
    alone = [run(model, HELLO, temperature=0, max_tokens=16)[0].text,
             run(model, HELLO, adapter=lora, temperature=0, max_tokens=16)[0].text]
    out: list = [None, None]

    def go(i):
        out[i] = run(model, HELLO, adapter=lora if i else None, temperature=0, max_tokens=16)[0].text

    threads = [threading.Thread(target=go, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert out == alone


def test_native_logs_stay_off_stdout(capfd):
    m = llamacpp.LlamaCppModel(bundled_gguf_path(), n_ctx_per_seq=256, n_threads=1)
    try:
        run(m, HELLO, max_tokens=2)
    finally:
        m.close()
    assert capfd.readouterr().out == ""


def test_closed_model_refuses_work():
    m = llamacpp.LlamaCppModel(bundled_gguf_path(), n_ctx_per_seq=256, n_threads=1)
    m.close()
    m.close()
    with pytest.raises(EngineError):
        run(m, HELLO)


def test_unloading_mid_generation_fails_cleanly():
    m = llamacpp.LlamaCppModel(bundled_gguf_path(), n_ctx_per_seq=256, n_threads=1)
    first = threading.Event()
    out = {}

    def go():
        try:
            m.generate(HELLO, Sampling(temperature=0, max_tokens=200), None, lambda t: first.set(), lambda: False)
        except EngineError as exc:
            out["error"] = exc

    t = threading.Thread(target=go)
    t.start()
    assert first.wait(60)
    m.close()
    t.join(60)
    assert "unloaded" in str(out["error"])


def test_threads_are_shared_between_busy_contexts(monkeypatch):
    lanes = pytest.importorskip("engine.models.llama_lanes")
    monkeypatch.setattr(lanes, "_CPUS", 2)
    monkeypatch.setattr(lanes._cpu_watch, "others", lambda: 0.0)
    monkeypatch.setattr(lanes, "_busy", {1})
    assert lanes.threads_for(2) == 2
    monkeypatch.setattr(lanes, "_busy", {1, 2})  # base and adapter decoding at once
    assert lanes.threads_for(2) == 1
    monkeypatch.setattr(lanes, "_busy", {1})
    monkeypatch.setattr(lanes._cpu_watch, "others", lambda: 1.0)  # a training round on one core
    assert lanes.threads_for(2) == 1
