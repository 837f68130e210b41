"""PEFT LoRA -> GGUF LoRA: llama.cpp with the converted adapter must move the
logits the way PEFT moves them, and a zero adapter must change nothing."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")

from engine.errors import AdapterError  # noqa: E402
from engine.models.gguf_lora import _rope_rows, convert_peft_to_gguf  # noqa: E402
from engine.models.spec import bundled_gguf_path  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")]

CHATS = [[{"role": "user", "content": "Name three fruits."}],
         [{"role": "user", "content": "What do you do on a rainy Sunday?"}]]


@pytest.fixture(scope="module")
def hf_model():
    from transformers import AutoModelForCausalLM

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny forwards; spinning threads crawl on a shared 2-core box
    g = bundled_gguf_path()
    model = AutoModelForCausalLM.from_pretrained(str(g.parent), gguf_file=g.name, dtype=torch.float32)
    yield model.eval()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def llama():
    from engine.models.llamacpp import LlamaCppModel

    m = LlamaCppModel(bundled_gguf_path(), n_ctx_per_seq=512, max_seqs=1)
    yield m
    m.close()


def peft_adapter(hf_model, folder, targets, std):
    """A rank-4 PEFT LoRA; std=0 keeps PEFT's zero B (no effect)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(hf_model, LoraConfig(r=4, lora_alpha=8, target_modules=targets,
                                                     lora_dropout=0.0))
    for name, param in peft_model.named_parameters():
        if std and ("lora_A" in name or "lora_B" in name):
            torch.nn.init.normal_(param, std=std)
    peft_model.save_pretrained(str(folder), save_embedding_layers=False)
    return peft_model


def hf_logits(model, llama, chat):
    ids = torch.tensor([llama.tokenize(llama.render(chat))])
    with torch.no_grad():
        return model(ids).logits[0, -1].numpy()


def delta_correlation(hf_model, llama, peft_model, gguf):
    """Correlation between PEFT's and llama.cpp's logit shifts, over CHATS."""
    with peft_model.disable_adapter():
        base_hf = [hf_logits(peft_model, llama, c) for c in CHATS]
    tuned_hf = [hf_logits(peft_model, llama, c) for c in CHATS]
    base_ll = [llama.next_token_logits(c) for c in CHATS]
    tuned_ll = [llama.next_token_logits(c, gguf) for c in CHATS]
    d_hf = np.concatenate([t - b for t, b in zip(tuned_hf, base_hf)])
    d_ll = np.concatenate([t - b for t, b in zip(tuned_ll, base_ll)])
    return float(np.corrcoef(d_hf, d_ll)[0, 1])


def test_rope_rows_interleaves_halves_per_head():
    b = np.arange(8, dtype=np.float32).reshape(8, 1)  # 2 heads of 4 rows
    assert _rope_rows(b, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_qk_adapter_shifts_logits_like_peft_and_needs_the_permutation(hf_model, llama, tmp_path):
    peft_model = peft_adapter(hf_model, tmp_path / "qk", ["q_proj", "k_proj"], std=0.15)
    try:
        good = convert_peft_to_gguf(tmp_path / "qk", bundled_gguf_path(), tmp_path / "qk.gguf")
        wrong = convert_peft_to_gguf(tmp_path / "qk", bundled_gguf_path(), tmp_path / "qk_wrong.gguf",
                                     rope_permute=False)
        right = delta_correlation(hf_model, llama, peft_model, str(good))
        unpermuted = delta_correlation(hf_model, llama, peft_model, str(wrong))
    finally:
        peft_model.unload()
    assert right > 0.9, right
    assert unpermuted < right - 0.2, (right, unpermuted)


def test_all_linear_adapter_matches_peft(hf_model, llama, tmp_path):
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = peft_adapter(hf_model, tmp_path / "all", targets, std=0.05)
    try:
        gguf = convert_peft_to_gguf(tmp_path / "all", bundled_gguf_path(), tmp_path / "all.gguf",
                                    dtype="f16")
        corr = delta_correlation(hf_model, llama, peft_model, str(gguf))
    finally:
        peft_model.unload()
    assert corr > 0.9, corr
    import gguf as gg

    reader = gg.GGUFReader(str(gguf))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == 8.0
    assert reader.fields["general.architecture"].contents() == "llama"
    names = {t.name for t in reader.tensors}
    assert {"blk.0.attn_q.weight.lora_a", "blk.29.ffn_down.weight.lora_b"} <= names


def test_zero_adapter_changes_nothing(hf_model, llama, tmp_path):
    from engine.models.base import Sampling

    peft_model = peft_adapter(hf_model, tmp_path / "zero", ["q_proj", "v_proj"], std=0)
    peft_model.unload()
    gguf = str(convert_peft_to_gguf(tmp_path / "zero", bundled_gguf_path(), tmp_path / "zero.gguf"))
    chat = CHATS[0]
    assert np.array_equal(llama.next_token_logits(chat), llama.next_token_logits(chat, gguf))
    s = Sampling(temperature=0, max_tokens=16)
    texts = [llama.generate(chat, s, a, lambda t: None, lambda: False).text for a in (None, gguf)]
    assert texts[0] == texts[1]


def test_refuses_what_does_not_fit(tmp_path):
    with pytest.raises(AdapterError, match="adapter_config.json"):
        convert_peft_to_gguf(tmp_path, bundled_gguf_path(), tmp_path / "x.gguf")
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA", "lora_alpha": 8, "r": 4}')
    from safetensors.numpy import save_file

    save_file({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.zeros((4, 100), np.float32),
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": np.zeros((576, 4), np.float32)},
              str(folder / "adapter_model.safetensors"))
    with pytest.raises(AdapterError, match="do not fit"):
        convert_peft_to_gguf(folder, bundled_gguf_path(), tmp_path / "odd.gguf")
    assert not (tmp_path / "odd.gguf").exists()
