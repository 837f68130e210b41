"""PEFT LoRA adapters on a transformers base: checking fit before loading,
and stripping every adapter layer off again when a load goes wrong.

PEFT injects layers into the base model in place before it reads the weights,
so a bad adapter can leave half-built layers behind; we check shapes first to
give a clear sentence, and rebuild from a clean base if PEFT still fails.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from engine.errors import AdapterError

WEIGHTS = "adapter_model.safetensors"
_LORA_PARTS = {  # key suffix -> (which dim of the saved tensor, what it must equal)
    ".lora_A.weight": (1, "in"),
    ".lora_B.weight": (0, "out"),
    ".lora_embedding_A": (1, "in"),
    ".lora_embedding_B": (0, "out"),
}


def adapter_name(path: Path) -> str:
    """A PEFT adapter name for a folder: stable per path, safe as a module key."""
    digest = hashlib.sha1(str(Path(path).resolve()).encode("utf-8")).hexdigest()[:12]
    return f"a{digest}"


def read_adapter_config(path: Path) -> dict:
    """adapter_config.json as a dict, or AdapterError saying what is wrong."""
    cfg_path = Path(path) / "adapter_config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdapterError(f"{path} is not a PEFT adapter folder (no adapter_config.json).") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{cfg_path} cannot be read: {exc}") from None
    if not isinstance(cfg, dict):
        raise AdapterError(f"{cfg_path} does not hold a PEFT adapter config.")
    return cfg


def _module_dims(module) -> dict | None:
    """in/out sizes of a layer LoRA can wrap (Linear, Embedding, GPT-2 Conv1D)."""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return {"in": module.in_features, "out": module.out_features}
    if hasattr(module, "num_embeddings") and hasattr(module, "embedding_dim"):
        return {"in": module.num_embeddings, "out": module.embedding_dim}
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and weight is not None:
        return {"in": weight.shape[0], "out": weight.shape[1]}
    return None


def check_fit(path: Path, model) -> dict:
    """Check a LoRA folder against ``model`` without touching the model.

    Returns the adapter config; raises AdapterError naming the first layer
    that is missing or has the wrong size.
    """
    from safetensors import safe_open

    path = Path(path)
    cfg = read_adapter_config(path)
    kind = str(cfg.get("peft_type", "")).upper()
    if kind != "LORA":
        raise AdapterError(f"{path.name} is a {kind or 'unknown'} adapter; only LoRA adapters are supported.")
    made_for = cfg.get("base_model_name_or_path") or "an unnamed base model"
    weights = path / WEIGHTS
    if not weights.is_file():
        if (path / "adapter_model.bin").is_file():
            raise AdapterError(
                f"{path.name} holds only pickle weights (adapter_model.bin), which can run code "
                "when loaded; save it again as safetensors.", kind="adapter_refused")
        raise AdapterError(f"{path.name} has no {WEIGHTS}.")
    try:
        with safe_open(str(weights), framework="pt") as fh:
            shapes = {key: list(fh.get_slice(key).get_shape()) for key in fh.keys()}
    except Exception as exc:
        raise AdapterError(f"{weights} cannot be read: {exc}") from None
    modules = dict(model.named_modules())
    params = {name: list(p.shape) for name, p in model.named_parameters()}
    found = 0
    for key, shape in shapes.items():
        name = key.removeprefix("base_model.model.")
        part = next((s for s in _LORA_PARTS if name.endswith(s)), None)
        if part is None:  # a fully saved module (modules_to_save): sizes must match exactly
            if name in params and params[name] != shape:
                raise AdapterError(
                    f"{path.name} does not fit this base model: its {name} is {shape}, the base "
                    f"has {params[name]}. It was made for {made_for}.")
            continue
        layer = name[: -len(part)]
        dims = _module_dims(modules[layer]) if layer in modules else None
        if dims is None:
            raise AdapterError(
                f"{path.name} does not fit this base model: it adapts layer {layer}, which this "
                f"base model lacks. It was made for {made_for}.")
        axis, side = _LORA_PARTS[part]
        if len(shape) != 2 or shape[axis] != dims[side]:
            raise AdapterError(
                f"{path.name} does not fit this base model: layer {layer} has {dims['in']} inputs "
                f"and {dims['out']} outputs, but the adapter's {part.strip('.')} is {shape}. "
                f"It was made for {made_for}.")
        found += 1
    if found == 0:
        raise AdapterError(f"{path.name} holds no LoRA weights.")
    return cfg


def strip_adapter_layers(model) -> int:
    """Put every original layer back in place of PEFT's wrappers, in place.

    This is PEFT's ``unload()`` done without a PeftModel, so it also cleans a
    model whose first adapter failed halfway. Returns how many were replaced.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    try:
        from peft.utils.other import AuxiliaryTrainingWrapper
    except ImportError:  # older PEFT
        AuxiliaryTrainingWrapper = ()  # noqa: N806

    def original_of(module):
        if isinstance(module, BaseTunerLayer):
            return module.get_base_layer()
        if AuxiliaryTrainingWrapper and isinstance(module, AuxiliaryTrainingWrapper):
            return module.original_module
        return None

    replaced = 0
    while True:  # wrappers may nest; each pass unwraps the outermost ones
        outer: list[str] = []
        for name, module in model.named_modules():  # parents come before children
            if name and original_of(module) is not None and not any(
                    name.startswith(o + ".") for o in outer):
                outer.append(name)
        if not outer:
            break
        for name in outer:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, original_of(getattr(parent, child)))
            replaced += 1
    if hasattr(model, "peft_config"):
        del model.peft_config
    return replaced


def has_adapter_layers(model) -> bool:
    """True while any PEFT layer is still inside ``model``."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in model.modules())
