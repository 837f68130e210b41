"""A tiny llama built from a config (with the bundled model's tokenizer), a
matching tiny GGUF base for GGUF LoRA writing, a fresh data dir per test, and
a fake reward that prefers short lowercase replies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from engine.training.reward import Judgement  # noqa: E402

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from engine.models.spec import bundled_gguf_path

    os.environ["HF_HUB_OFFLINE"] = "1"
    gguf = bundled_gguf_path()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, **TINY)
    model = LlamaForCausalLM(cfg)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory, tiny_model_dir) -> Path:
    """A GGUF 'base' with the tiny model's tensor names and shapes (zeros): enough
    for the GGUF LoRA writer, which checks names and shapes against it."""
    import gguf
    import numpy as np

    path = tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf"
    h, f, n_h, n_kv = TINY["hidden_size"], TINY["intermediate_size"], 4, 2
    kv = h // n_h * n_kv
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_head_count(n_h)
    w.add_head_count_kv(n_kv)
    w.add_embedding_length(h)
    shapes = {"attn_q": (h, h), "attn_k": (kv, h), "attn_v": (kv, h), "attn_output": (h, h),
              "ffn_gate": (f, h), "ffn_up": (f, h), "ffn_down": (h, f)}
    for b in range(2):
        for name, shape in shapes.items():
            w.add_tensor(f"blk.{b}.{name}.weight", np.zeros(shape, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "data"
    monkeypatch.setenv("HAL_STUDIO_DATA", str(d))
    monkeypatch.setenv("HAL_STUDIO_CACHE", str(tmp_path / "cache"))
    return d


class FakeReward:
    """Shorter, lowercase replies score higher; deterministic and instant."""

    judge, weights_ref, questionnaire = "fake", "fake@1", "fakeq"

    def judge_many(self, items):
        out = []
        for _, reply in items:
            words = len(reply.split())
            lower = sum(c.islower() for c in reply) / max(1, sum(c.isalpha() for c in reply))
            out.append(Judgement(-0.1 * words + lower, {1: max(1.0, 5 - words / 5), 3: 1 + 4 * lower}))
        return out


@pytest.fixture
def fake_reward(monkeypatch):
    import engine.training.reward as reward

    r = FakeReward()
    monkeypatch.setattr(reward, "load_reward", lambda judge="auto", weights="": r)
    return r


@pytest.fixture
def store(data_dir):
    from engine.store import Store

    s = Store(data_dir / "studio.sqlite3")
    yield s
    s.close()
