"""The transformers + PEFT backend, on tiny models built here from a config.

One slow test dequantizes the bundled SmolLM2 GGUF into the cache.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from engine.errors import AdapterError, ModelFileError, PromptTooLong  # noqa: E402
from engine.models import hf_adapters, hf_load  # noqa: E402
from engine.models.base import Sampling, template_digest  # noqa: E402
from engine.models.hf import HFModel, TextStream, pick_token  # noqa: E402
from engine.models.spec import bundled_gguf_path, resolve_source  # noqa: E402

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
N_CTX = 160
HI = [{"role": "user", "content": "Hello there"}]
GREEDY = Sampling(temperature=0.0, max_tokens=24)


@pytest.fixture(autouse=True)
def _studio_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("HAL_STUDIO_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HAL_STUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def byte_tokenizer():
    """A byte-level BPE tokenizer with no merges: 259 ids, and every multi-byte
    character spans several tokens (good for testing UTF-8 streaming)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for char in bytes_to_unicode().values():
        vocab[char] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(SPECIALS)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.chat_template = CHATML
    return tok


def tiny_model(hidden: int = 32, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(SPECIALS) + 256, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=N_CTX, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                         tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


def save_tiny(folder: Path, hidden: int = 32) -> Path:
    tiny_model(hidden).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return folder


def make_lora(base_folder: Path, out: Path, targets=("q_proj", "v_proj"), seed: int = 1) -> Path:
    """A LoRA with random (non-zero) B, so it visibly changes the output."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_folder, use_safetensors=True)
    torch.manual_seed(seed)
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=16, target_modules=list(targets),
                                           init_lora_weights=False))
    peft.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def lora_dir(tiny_dir, tmp_path_factory) -> Path:
    return make_lora(tiny_dir, tmp_path_factory.mktemp("lora") / "good")


@pytest.fixture
def model(tiny_dir):
    m = HFModel(tiny_dir, source_kind="hf")
    yield m
    m.close()


def run(model, sampling=GREEDY, adapter=None, messages=HI, cancelled=lambda: False):
    pieces: list[str] = []
    result = model.generate(messages, sampling, adapter, pieces.append, cancelled)
    return result, pieces


def test_info(model, tiny_dir):
    info = model.info()
    assert info["backend"] == "transformers" and info["path"] == str(tiny_dir)
    assert info["n_ctx"] == N_CTX and info["dtype"] == "float32"
    assert info["chat_template_digest"] == template_digest(CHATML)
    assert info["n_params"] > 0 and info["adapters"] == []
    assert model.stop_ids >= {2}


def test_streaming_matches_result(model):
    result, pieces = run(model, Sampling(temperature=1.0, top_p=0.95, max_tokens=40, seed=3))
    assert result.finish_reason == "length" and result.completion_tokens == 40
    assert "".join(pieces) == result.text and len(pieces) > 1
    assert result.prompt_tokens == len(model.encode(HI))
    assert 0 < result.ttft_s <= result.total_s


def test_text_stream_holds_back_split_characters():
    tok = byte_tokenizer()
    text = "héllo 🙂 wörld ✓"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text)  # multi-byte characters span several tokens
    stream = TextStream(tok, threading.Lock())
    pieces = [stream.step(ids[: i + 1]) for i in range(len(ids))]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == text


def test_pick_token_top_p():
    logits = torch.tensor([3.0, 2.0, 0.0, -1.0] + [-10.0] * 300)  # p = .70, .25, .03, ...
    gen = torch.Generator().manual_seed(0)
    assert {pick_token(logits, Sampling(temperature=1.0, top_p=0.5), gen) for _ in range(50)} == {0}
    assert {pick_token(logits, Sampling(temperature=1.0, top_p=0.9), gen) for _ in range(200)} == {0, 1}
    assert pick_token(logits, Sampling(temperature=0.0), gen) == 0
    flat = torch.zeros(1000)  # the nucleus reaches past the top 256: full sort
    assert max(pick_token(flat, Sampling(temperature=1.0, top_p=0.99), gen) for _ in range(300)) >= 256


def test_seed_determinism(model):
    s = Sampling(temperature=1.0, top_p=0.9, max_tokens=20, seed=5)
    a, _ = run(model, s)
    b, _ = run(model, s)
    c, _ = run(model, Sampling(temperature=1.0, top_p=0.9, max_tokens=20, seed=6))
    assert a.text == b.text and a.text != c.text
    g1, _ = run(model)
    g2, _ = run(model, Sampling(temperature=0.0, max_tokens=24, seed=99))
    assert g1.text == g2.text  # greedy ignores the seed


def test_stops_at_end_of_turn(model):
    lm_head = model._model.lm_head
    biased = torch.nn.Linear(lm_head.in_features, lm_head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.zero_()
        biased.bias.zero_()
        biased.bias[2] = 10.0  # <|im_end|> always wins
    model._model.lm_head = biased
    result, pieces = run(model)
    assert result.finish_reason == "stop" and result.text == "" and result.completion_tokens == 0


def test_cancel_keeps_partial_text(model):
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 3

    result, pieces = run(model, Sampling(temperature=1.0, max_tokens=50, seed=1), cancelled=cancelled)
    assert result.finish_reason == "cancelled" and result.completion_tokens == 3
    assert "".join(pieces) == result.text


def test_cancel_while_waiting_for_the_model(model):
    with model._lock:  # another pane is generating
        start = time.perf_counter()
        result, _ = run(model, cancelled=lambda: True)
    assert result.finish_reason == "cancelled" and result.text == ""
    assert time.perf_counter() - start < 2


def test_prompt_too_long(model):
    with pytest.raises(PromptTooLong) as err:
        run(model, messages=[{"role": "user", "content": "x" * 200}])
    assert str(N_CTX) in err.value.message and "tokens" in err.value.message
    # a prompt that fits stops at the context limit with "length"
    result, _ = run(model, Sampling(temperature=1.0, max_tokens=500), messages=[
        {"role": "user", "content": "y" * 100}])
    assert result.finish_reason == "length"
    assert result.prompt_tokens + result.completion_tokens == N_CTX


def test_adapter_changes_output_only_when_selected(model, lora_dir):
    base, _ = run(model)
    model.check_adapter(str(lora_dir))
    model.check_adapter(str(lora_dir))  # loading twice is a no-op
    assert model.info()["adapters"] == [str(lora_dir.resolve())]
    tuned, pieces = run(model, adapter=str(lora_dir))
    assert tuned.text != base.text and "".join(pieces) == tuned.text
    again, _ = run(model)
    assert again.text == base.text
    # loading on first use works too
    fresh = HFModel(model.path, "hf")
    assert run(fresh, adapter=str(lora_dir))[0].text == tuned.text
    fresh.close()


def test_mismatched_adapter_is_refused_and_model_still_works(model, lora_dir, tmp_path):
    wide = save_tiny(tmp_path / "wide", hidden=48)
    bad = make_lora(wide, tmp_path / "bad")
    base, _ = run(model)
    model.check_adapter(str(lora_dir))
    tuned, _ = run(model, adapter=str(lora_dir))
    with pytest.raises(AdapterError) as err:
        model.check_adapter(str(bad))
    assert "does not fit" in err.value.message and "48" in err.value.message
    assert run(model)[0].text == base.text
    assert run(model, adapter=str(lora_dir))[0].text == tuned.text
    with pytest.raises(AdapterError):
        run(model, adapter=str(bad))


def test_failed_peft_load_leaves_no_layers_behind(model, lora_dir, tmp_path):
    """Weights fit but the config targets a module the base lacks: PEFT fails
    after our shape check, and the rebuild must leave a clean model."""
    broken = make_lora(model.path, tmp_path / "broken")
    cfg_path = broken / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["target_modules"] = ["no_such_proj"]
    cfg_path.write_text(json.dumps(cfg))
    base, _ = run(model)
    with pytest.raises(AdapterError):
        model.check_adapter(str(broken))
    assert not hf_adapters.has_adapter_layers(model._model) and model._peft is None
    assert run(model)[0].text == base.text
    # with a good adapter loaded first, the failure keeps it working
    model.check_adapter(str(lora_dir))
    tuned, _ = run(model, adapter=str(lora_dir))
    with pytest.raises(AdapterError):
        model.check_adapter(str(broken))
    names = {n for m in model._model.modules() for n in getattr(m, "lora_A", {})}
    assert names == {hf_adapters.adapter_name(lora_dir)}
    assert run(model, adapter=str(lora_dir))[0].text == tuned.text
    assert run(model)[0].text == base.text


def test_adapter_folder_problems(model, tmp_path):
    with pytest.raises(AdapterError):
        model.check_adapter(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(AdapterError, match="no adapter_model.safetensors"):
        model.check_adapter(str(empty))
    (empty / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(AdapterError, match="only LoRA"):
        model.check_adapter(str(empty))


def test_concurrent_calls_are_serialised(model, lora_dir):
    model.check_adapter(str(lora_dir))
    s = Sampling(temperature=0.9, max_tokens=16, seed=2)
    want = {None: run(model, s)[0].text, "lora": run(model, s, adapter=str(lora_dir))[0].text}
    got: dict = {}

    def worker(key):
        got[key] = run(model, s, adapter=str(lora_dir) if key else None)[0].text

    threads = [threading.Thread(target=worker, args=(k,)) for k in (None, "lora")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert got == want


def test_next_token_logprobs_match_a_plain_forward(model, lora_dir):
    digits = ["1", "2", "3", "4", "5"]
    scores = model.next_token_logprobs(HI, digits)
    ids = model.encode(HI)
    with torch.inference_mode():
        logp = torch.log_softmax(model._model(input_ids=torch.tensor([ids])).logits[0, -1], -1)
    for d in digits:
        assert scores[d] == pytest.approx(float(logp[model.encode(d)[0]]), abs=1e-4)

    suffixes = ["Rating: ", "Score:\n"]
    shared = model.suffix_logprobs(HI, suffixes, ["3", "12"])
    for suffix, got in zip(suffixes, shared):
        full = ids + model.encode(suffix) + model.encode("1")
        with torch.inference_mode():
            lp = torch.log_softmax(model._model(input_ids=torch.tensor([full])).logits[0], -1)
        n = len(full) - 1
        assert got["3"] == pytest.approx(float(lp[n - 1, model.encode("3")[0]]), abs=1e-4)
        want12 = float(lp[n - 1, model.encode("1")[0]] + lp[n, model.encode("2")[0]])
        assert got["12"] == pytest.approx(want12, abs=1e-4)
    with_adapter = model.next_token_logprobs(HI, digits, adapter=str(lora_dir))
    assert with_adapter != scores
    assert model.next_token_logprobs(HI, digits) == pytest.approx(scores, abs=1e-5)


def test_remote_code_and_broken_folders_are_refused(tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps(
        {"model_type": "llama", "auto_map": {"AutoModelForCausalLM": "modeling_evil.Evil"}}))
    (remote / "model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(ModelFileError) as err:
        resolve_source(str(remote))
    assert err.value.kind == "model_refused"
    with pytest.raises(ModelFileError):
        HFModel(remote, "hf")

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    byte_tokenizer().save_pretrained(broken)
    assert resolve_source(str(broken)) == ("hf", broken)
    with pytest.raises(ModelFileError, match="cannot be loaded"):
        HFModel(broken, "hf")


# ------------------------------------------------------------- GGUF cache


def _fake_gguf_loader(calls):
    """Stands in for transformers' GGUF reader: a tiny model marked quantized."""

    def load(path, dtype):
        calls.append(path)
        m = tiny_model()
        m.hf_quantizer = object()
        m.config.quantization_config = {"quant_method": "gguf"}
        return m, byte_tokenizer()

    return load


def test_gguf_cache_is_atomic_and_keyed_by_file(tmp_path, monkeypatch):
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF" + b"\0" * 60)
    monkeypatch.setattr(hf_load, "check_gguf_file", lambda p: None)
    calls: list = []
    monkeypatch.setattr(hf_load, "_load_gguf_direct", _fake_gguf_loader(calls))

    # a kill mid-write (here: an error while saving) leaves no usable cache
    from transformers import PreTrainedTokenizerBase

    def boom(*a, **k):
        raise OSError("disk full")

    with monkeypatch.context() as mp:
        mp.setattr(PreTrainedTokenizerBase, "save_pretrained", boom)
        with pytest.raises(OSError):
            hf_load.dequantize_gguf(fake)
    root = hf_load.dequantized_dir(fake).parent
    assert not hf_load.is_cached(hf_load.dequantized_dir(fake)) and list(root.iterdir()) == []
    stale = root / f".tmp-x-{2**22 + 12345}-abc"  # a temp folder of a process that died
    stale.mkdir()
    (stale / "config.json").write_text("{}")

    model, tok = hf_load.load_base(fake, "gguf")
    folder = hf_load.dequantized_dir(fake)
    assert hf_load.is_cached(folder) and not stale.exists()
    assert getattr(model, "hf_quantizer", None) is None
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert tok.chat_template == CHATML
    hf_load.load_base(fake, "gguf")
    assert len(calls) == 2  # the failed attempt and the conversion; the reload read the cache

    key = hf_load.gguf_cache_key(fake)
    fake.write_bytes(b"GGUF" + b"\1" * 80)  # a changed file gets a new key
    os.utime(fake, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert hf_load.gguf_cache_key(fake) != key

    served = HFModel(fake, "gguf")
    assert served.info()["cache_path"] == str(hf_load.dequantized_dir(fake))
    served.close()


@pytest.fixture(scope="session")
def bundled_cache(tmp_path_factory) -> Path:
    """One cache folder for the bundled model, shared by the slow tests."""
    return tmp_path_factory.mktemp("bundled-cache")


@pytest.mark.slow
def test_bundled_gguf_dequantizes_once_and_trains(bundled_cache, monkeypatch):
    from peft import LoraConfig, get_peft_model

    monkeypatch.setenv("HAL_STUDIO_CACHE", str(bundled_cache))
    gguf = bundled_gguf_path()
    start = time.perf_counter()
    folder = hf_load.dequantize_gguf(gguf)
    convert_s = time.perf_counter() - start
    assert hf_load.is_cached(folder) and (folder / "model.safetensors").is_file()
    assert not list(folder.parent.glob(".tmp-*"))

    def no_gguf(*a, **k):
        raise AssertionError("the second load must read the cache, not the GGUF")

    monkeypatch.setattr(hf_load, "_load_gguf_direct", no_gguf)
    start = time.perf_counter()
    model, tok = hf_load.load_base(gguf, "gguf")
    load_s = time.perf_counter() - start
    print(f"\ndequantize {convert_s:.1f}s, load from cache {load_s:.1f}s")
    assert getattr(model, "hf_quantizer", None) is None
    assert getattr(model.config, "quantization_config", None) is None
    assert model.dtype == torch.float32
    assert "<|im_start|>" in (tok.chat_template or "")

    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft.train()
    batch = tok(["Hello, how are you today?"], return_tensors="pt")
    loss = peft(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    grads = [p.grad for n, p in peft.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    del peft, model

    served = HFModel(gguf, "gguf")
    result, pieces = run(served, Sampling(temperature=0.0, max_tokens=8),
                         messages=[{"role": "user", "content": "What is the capital of France?"}])
    print(f"bundled fp32: ttft {result.ttft_s:.2f}s, {result.tok_s:.1f} tok/s")
    assert "Paris" in result.text and "".join(pieces) == result.text
    served.close()
