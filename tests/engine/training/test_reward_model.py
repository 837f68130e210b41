"""Learned reward update on a tiny BERT built here: trains, reports held-out accuracy, scores replies."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import EngineError
from engine.jobs import RecordingState
from engine.training import reward_model as RM

from .helpers import seed_votes


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from .helpers import ASSISTANT, HUMAN

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w for t in HUMAN + ASSISTANT + ["hey"] for w in t.lower().replace("!", " ").replace(
        ".", " ").replace(",", " ").replace("?", " ").replace(":", " ").split()})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words,
                                                 *[str(i) for i in range(40)], "!", ".", ",", "?", ":"]))
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def test_reward_model_learns_votes(tiny_bert, store):
    seed_votes(store, 16)
    cfg = RM.make_config("smoke", {"encoder": str(tiny_bert), "max_steps": 30, "learning_rate": 1e-3,
                                   "threads": 1, "save_steps": 100})
    state = RecordingState()
    out = RM.run(cfg, state, store)
    m = out["metrics"]
    assert m["n_heldout"] >= 1 and 0.0 <= m["heldout_accuracy"] <= 1.0
    assert m["fit_accuracy"] >= 0.75
    assert "accuracy" in {c["name"] for c in state.of_type("metric")}
    scorer = RM.load_scorer(store, out["round_id"])
    hi, lo = scorer([([{"role": "user", "content": "hey"}], "lol yeah"),
                     ([{"role": "user", "content": "hey"}],
                      "As an AI language model, I do not have personal experiences, but I can help.")])
    assert hi > lo


def test_reward_model_refuses_without_pairs(tiny_bert, store):
    with pytest.raises(EngineError, match="pair"):
        RM.run(RM.make_config("smoke", {"encoder": str(tiny_bert)}), RecordingState(), store)
