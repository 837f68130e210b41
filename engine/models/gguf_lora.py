"""Turn a PEFT LoRA adapter folder into a GGUF LoRA file for llama.cpp.

Training happens in transformers (Hugging Face layout); chat in llama.cpp
(GGUF layout). The two differ in tensor names and, for llama-family models, in
the row order of q/k projections, which the HF->GGUF converter interleaves for
rotary embeddings. The adapter must follow the same renaming and row order.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from engine.errors import AdapterError

# Architectures whose HF->GGUF conversion reorders q_proj/k_proj rows for RoPE.
ROPE_PERMUTED_ARCHS = frozenset({"llama"})
_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[A-Za-z0-9_]+)?\.weight$")


def _rope_rows(b: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder output rows as the converter does: within each head, rows
    [first half | second half] become interleaved pairs (0, h, 1, h+1, ...)."""
    rows, rank = b.shape
    half = rows // n_heads // 2
    return b.reshape(n_heads, 2, half, rank).transpose(0, 2, 1, 3).reshape(rows, rank)


def _base_facts(base_gguf_path: Path) -> tuple[str, dict, dict[str, tuple[int, ...]]]:
    """Architecture, a few hyper-parameters and tensor shapes (GGUF ne order)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(base_gguf_path))

    def field(key: str):
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    arch = field("general.architecture")
    if not arch:
        raise AdapterError(f"{base_gguf_path.name} names no general.architecture.")
    hp = {"n_blocks": field(f"{arch}.block_count"), "n_head": field(f"{arch}.attention.head_count"),
          "n_head_kv": field(f"{arch}.attention.head_count_kv")}
    if hp["n_head_kv"] is None:
        hp["n_head_kv"] = hp["n_head"]
    shapes = {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}
    return arch, hp, shapes


def _load_peft(adapter_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.is_file():
        raise AdapterError(f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json).")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"Only LoRA adapters can be converted, not {config.get('peft_type')}.")
    if config.get("use_dora"):
        raise AdapterError("DoRA adapters cannot be served by llama.cpp; train a plain LoRA.")
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise AdapterError(f"{adapter_dir} has no adapter_model.safetensors.")
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(weights), framework="pt") as fh:  # pt: handles bf16 as well
        for key in fh.keys():
            tensors[key] = fh.get_tensor(key).float().numpy()
    return config, tensors


def _module_scale(config: dict, module: str, rank: int) -> float:
    """PEFT's multiplier for one module: alpha/r, or alpha/sqrt(r) with rsLoRA,
    honouring per-module rank/alpha patterns."""
    alpha = config.get("lora_alpha", 8)
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.search(rf"(^|\.){re.escape(pattern)}$", module) or re.fullmatch(pattern, module):
            alpha = value
    return alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)


def convert_peft_to_gguf(adapter_dir, base_gguf_path, out_path, *, dtype: str = "f32",
                         rope_permute: bool | None = None) -> Path:
    """Write ``out_path``, a GGUF LoRA for the base at ``base_gguf_path``.

    ``rope_permute`` None follows the base architecture; False exists for tests
    that prove the permutation matters. Raises AdapterError on anything that
    does not fit the base model.
    """
    import gguf

    adapter_dir, base_gguf_path, out_path = Path(adapter_dir), Path(base_gguf_path), Path(out_path)
    config, tensors = _load_peft(adapter_dir)
    arch, hp, shapes = _base_facts(base_gguf_path)
    arch_enum = {name: enum for enum, name in gguf.MODEL_ARCH_NAMES.items()}.get(arch)
    if arch_enum is None:
        raise AdapterError(f"The gguf package does not know the architecture {arch!r}.")
    names = gguf.get_tensor_name_map(arch_enum, int(hp["n_blocks"]))
    permute = (arch in ROPE_PERMUTED_ARCHS) if rope_permute is None else rope_permute
    np_dtype = {"f32": np.float32, "f16": np.float16}[dtype]

    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        m = _KEY.match(key)
        if not m:
            raise AdapterError(f"Unexpected tensor {key!r} in the adapter (modules_to_save and "
                               "embedding LoRAs are not supported for llama.cpp).")
        pairs.setdefault(m["module"], {})[m["ab"]] = value

    # The global alpha written to the file; per-module differences are folded into B.
    alpha = float(config.get("lora_alpha", 8))
    out: list[tuple[str, np.ndarray]] = []
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise AdapterError(f"The adapter has lora_A or lora_B missing for {module}.")
        hf_name = module.removeprefix("base_model.model.")
        found = names.get_type_and_name(hf_name)
        if found is None:
            raise AdapterError(f"{hf_name} has no counterpart in a {arch} GGUF model.")
        kind, gguf_name = found
        base_name = gguf_name + ".weight"
        a, b = ab["A"], ab["B"]  # (r, in), (out, r): numpy shape is GGUF ne reversed
        if base_name not in shapes:
            raise AdapterError(f"The base model has no tensor {base_name} for {hf_name}.")
        n_in, n_out = shapes[base_name][:2]
        if a.shape[1] != n_in or b.shape[0] != n_out or a.shape[0] != b.shape[1]:
            raise AdapterError(
                f"{hf_name}: the adapter's shapes A{a.shape} B{b.shape} do not fit the base tensor "
                f"{base_name} ({n_out}x{n_in}); was it trained on another model?")
        rank = a.shape[0]
        b = b * (_module_scale(config, hf_name, rank) / (alpha / rank))
        if permute and kind == gguf.MODEL_TENSOR.ATTN_Q:
            b = _rope_rows(b, int(hp["n_head"]))
        elif permute and kind == gguf.MODEL_TENSOR.ATTN_K:
            b = _rope_rows(b, int(hp["n_head_kv"]))
        out.append((base_name + ".lora_a", np.ascontiguousarray(a, dtype=np_dtype)))
        out.append((base_name + ".lora_b", np.ascontiguousarray(b, dtype=np_dtype)))
    if not out:
        raise AdapterError(f"{adapter_dir} holds no LoRA weights.")

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".part")
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_name(f"LoRA for {config.get('base_model_name_or_path') or base_gguf_path.stem}")
    for name, data in out:
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out_path)
    return out_path
