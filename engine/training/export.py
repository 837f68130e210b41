"""A round as a self-contained folder for a bigger machine: its pairs as a
``datasets`` folder and JSONL, its TRL/LoRA settings, a training script and an
``accelerate launch`` line. Nothing in it imports the studio."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from engine.errors import BadRequest

TRAIN_SCRIPT = '''"""DPO with LoRA on the exported pairs (written by HAL studio; needs trl, peft, datasets)."""
import argparse
import json

import datasets
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

p = argparse.ArgumentParser()
p.add_argument("--model", required=True, help="base model: a local folder or a hub id")
p.add_argument("--data", default="dataset")
p.add_argument("--config", default="trl_config.json")
p.add_argument("--output", default="output")
a = p.parse_args()
spec = json.load(open(a.config))
gpu = torch.cuda.is_available()
args = DPOConfig(output_dir=a.output, bf16=gpu and torch.cuda.is_bf16_supported(), use_cpu=not gpu,
                 activation_checkpointing=False, report_to="none", **spec["dpo"])
tok = AutoTokenizer.from_pretrained(a.model)
if tok.pad_token is None:
    tok.pad_token = tok.eos_token
model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16 if args.bf16 else torch.float32)
trainer = DPOTrainer(model=model, args=args, train_dataset=datasets.load_from_disk(a.data),
                     processing_class=tok, peft_config=LoraConfig(task_type="CAUSAL_LM", **spec["lora"]))
trainer.train()
trainer.save_model(a.output + "/adapter")
'''

LAUNCH = '''#!/bin/sh
# Run on a multi-GPU box: NUM_GPUS=8 MODEL=/path/or/hub-id ./launch.sh
cd "$(dirname "$0")"
exec accelerate launch --multi_gpu --num_processes "${NUM_GPUS:-2}" train.py --model "${MODEL:-%s}" "$@"
'''


def _losses(cfg: dict) -> dict:
    if cfg.get("loss_type") == "rpo":
        return {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, cfg.get("sft_weight", 1.0)]}
    return {"loss_type": [cfg.get("loss_type", "sigmoid")]}


def export_round(store, round_id: str, folder: str | Path) -> dict:
    from engine.training import pairs as P
    from engine.training.rounds import get_round

    row = get_round(store, round_id)
    cfg, lineage = row["config"], row["lineage"] or {}
    if not lineage.get("pair_set"):
        raise BadRequest(f"round {round_id} has no preference pairs to export (kind {row['kind']})")
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise BadRequest(f"{folder} exists and is not empty; choose a new folder")
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        pairs = P.load(store, lineage["pair_set"])
        repeat = int(cfg.get("rating_repeat", 1))
        P.export_datasets(pairs, tmp / "dataset", repeat)
        P.export_jsonl(pairs, tmp / "pairs.jsonl", repeat)
        spec = {"dpo": {"beta": cfg.get("beta", 0.1), "learning_rate": cfg.get("learning_rate", 5e-5),
                        "num_train_epochs": cfg.get("epochs", 1.0),
                        "max_steps": cfg.get("max_steps") or -1,
                        "per_device_train_batch_size": cfg.get("batch_size", 4),
                        "gradient_accumulation_steps": cfg.get("grad_accum", 1),
                        "max_length": cfg.get("max_length", 256), "seed": cfg.get("seed", 0),
                        **_losses(cfg), "logging_steps": 1},
                "lora": {"r": cfg.get("lora_r", 16), "lora_alpha": cfg.get("lora_alpha", 32.0),
                         "lora_dropout": cfg.get("lora_dropout", 0.1),
                         "target_modules": cfg.get("lora_targets")},
                "studio": {"round_id": round_id, "kind": row["kind"], "base_model": cfg.get("model"),
                           "lineage": lineage}}
        (tmp / "trl_config.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
        (tmp / "train.py").write_text(TRAIN_SCRIPT, encoding="utf-8")
        model_hint = "HuggingFaceTB/SmolLM2-135M-Instruct" if cfg.get("model") == "bundled" else cfg.get("model")
        launch = tmp / "launch.sh"
        launch.write_text(LAUNCH % model_hint, encoding="utf-8")
        launch.chmod(0o755)
        (tmp / "README.txt").write_text(
            f"Round {round_id} ({row['kind']}) exported by HAL studio.\n"
            f"{len(pairs)} preference pairs in dataset/ (datasets.load_from_disk) and pairs.jsonl.\n"
            "Run: NUM_GPUS=8 MODEL=<base model folder or hub id> ./launch.sh\n"
            "The LoRA adapter lands in output/adapter (PEFT format).\n", encoding="utf-8")
        if folder.exists():
            folder.rmdir()
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"folder": str(folder), "files": sorted(p.name for p in folder.iterdir()), "pairs": len(pairs)}
