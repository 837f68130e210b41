"""Build a tiny llama (2 layers, width 32) with the bundled model's tokenizer, so
a round through the real engine trains in seconds. Run as a script in its own
process (``python tiny_model.py OUT``): the studio's test process stays free of torch."""

from __future__ import annotations

import os
import sys

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=True)


def build(out: str) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from engine.models.spec import bundled_gguf_path

    os.environ["HF_HUB_OFFLINE"] = "1"
    gguf = bundled_gguf_path()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, **TINY)
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


if __name__ == "__main__":
    build(sys.argv[1])
