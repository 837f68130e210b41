"""A DPO round as a self-contained folder for a bigger machine (``hal round export``,
``round.export``): its pairs, its settings, its base weights, the adapter it
continued from, a training script that imports nothing from the studio, an
``accelerate launch`` script for one GPU or many, and pinned requirements.

The folder trains what the round trained. Every setting of the round is either
carried into ``trl_config.json`` (built by the same functions the round builds
its trainer with) or named in ``NOT_CARRIED`` with the reason it does not
belong in training (pair building happened already: the pairs are the data;
the verdict runs back in the studio).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
from pathlib import Path

from engine.errors import BadRequest

# The same pins as pyproject.toml (a test checks they match).
REQUIREMENTS = ["torch==2.13.0", "transformers==5.23.0", "trl==1.16.0", "peft==0.21.2",
                "accelerate==1.15.0", "datasets==5.2.0", "safetensors>=0.5"]
ANCHOR_REQUIREMENT = "chitchat-dataset==0.9.0"

_PAIRS = "pair building (done in the studio; its pairs are dataset/)"
_VERDICT = "the verdict (run it back in the studio: hal eval --adapter output/adapter)"
NOT_CARRIED = {
    **{k: _PAIRS for k in ("prompts", "n_prompts", "k", "margin", "margin_std", "max_pairs_per_prompt",
                           "judge", "weights", "use_ratings", "likely_weight", "certainly_weight",
                           "pair_set", "sampler", "sample_temperature", "sample_top_p",
                           "sample_max_tokens", "sample_threads", "min_pairs", "human_pairs",
                           "length_ratio_max")},
    **{k: _VERDICT for k in ("verdict", "verdict_prompts", "verdict_seeds", "verdict_max_tokens", "canary",
                             "evaluator_judge", "evaluator_weights", "canary_dialogues")},
    "threads": "CPU threads of this machine (the target box sets its own)",
    "resume": "this machine's checkpoints (train.py --resume continues the export's own)",
    "base_gguf": "the GGUF LoRA twin the studio writes for llama.cpp (the export trains the PEFT adapter)",
}

LAUNCH = '''#!/bin/sh
# Train round %(round)s's LoRA with accelerate (written by HAL studio; see README.txt).
#   one GPU:            ./launch.sh
#   N GPUs:             NUM_GPUS=8 ./launch.sh
#   another base:       MODEL=/path/to/model/folder ./launch.sh
#   round settings:     ./launch.sh --set max_steps=200 --set learning_rate=1e-4
#   accelerate flags:   ACCELERATE_ARGS="--main_process_port 29600" ./launch.sh
# Without CUDA, NUM_GPUS=N runs N CPU processes (gloo).
set -e
cd "$(dirname "$0")"
NUM_GPUS="${NUM_GPUS:-1}"
MODEL="${MODEL:-%(model)s}"
case "$NUM_GPUS" in
  ''|*[!0-9]*|0) echo "launch.sh: NUM_GPUS must be a whole number, 1 or more (not '$NUM_GPUS')" >&2; exit 2;;
esac
if [ "$NUM_GPUS" -gt 1 ]; then MULTI="--multi_gpu"; else MULTI=""; fi
# shellcheck disable=SC2086
exec accelerate launch $MULTI --num_processes "$NUM_GPUS" --num_machines 1 --mixed_precision no \\
  --dynamo_backend no $ACCELERATE_ARGS train.py --model "$MODEL" "$@"
'''


def _defaults(func) -> dict:
    return {k: p.default for k, p in inspect.signature(func).parameters.items()
            if p.default is not inspect.Parameter.empty}


def round_spec(cfg, round_id: str, lineage: dict, base_path: str, start_adapter: str | None) -> dict:
    """What ``trl_config.json`` holds: the round's trainer, LoRA and anchor settings, built by
    the same functions the round used, plus the base and the adapter it starts from."""
    from engine.training import anchor as A
    from engine.training.dpo import anchor_settings, dpo_settings
    from engine.training.policy import lora_settings
    from engine.training.runner import training_kwargs

    anchor = anchor_settings(cfg)
    if anchor:
        words, take = _defaults(A.human_exchanges), _defaults(A.Anchor.__init__)
        anchor = {"source": "chitchat", **anchor, "n": take["n"], "context": words["context"],
                  "max_chars": words["max_chars"], "heldout_share": A.HELDOUT_SHARE}
    return {
        "dpo": training_kwargs(cfg, **dpo_settings(cfg)),
        "lora": lora_settings(cfg),
        "anchor": anchor,
        "base": {"path": base_path, "source": cfg.model},
        "start_adapter": start_adapter,
        "data": {"rating_repeat": cfg.rating_repeat},
        "studio": {"round_id": round_id, "kind": "dpo", "round_config": dataclasses.asdict(cfg),
                   "lineage": lineage, "not_carried": {k: NOT_CARRIED[k] for k in sorted(NOT_CARRIED)}},
    }


def _link_or_copy(src, dst):
    """A hard link where the file system allows (no second copy of the weights), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _round_config(row: dict):
    from engine.training.config import from_dict
    from engine.training.dpo import DPORoundConfig

    known = {f.name for f in dataclasses.fields(DPORoundConfig)}
    return from_dict(DPORoundConfig, {k: v for k, v in (row["config"] or {}).items() if k in known})


def _base_weights(cfg) -> tuple[Path, str]:
    """The folder of weights the round trained on, and what it is."""
    from engine.training import policy

    base = policy.resolve(cfg.model, cfg.base_gguf)
    if base.kind == "gguf":
        from engine.models.hf_load import dequantize_gguf

        return dequantize_gguf(base.path), (
            f"the transformers backend's dequantized safetensors copy of {base.path.name} "
            "(what the round loaded and trained on)")
    return base.path, "the model folder the round trained on"


def _check_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise BadRequest(f"{folder} is a file; give a new folder to export into")
    if folder.is_dir() and any(folder.iterdir()):
        raise BadRequest(f"{folder} exists and is not empty; give a new folder to export into")
    parent = folder.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadRequest(f"cannot create the export folder {folder}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK):
        raise BadRequest(f"cannot write into {parent}; give a folder you can write to")


def export_round(store, round_id: str, folder: str | Path, copy_base: bool = True) -> dict:
    """Write round ``round_id`` into the new folder ``folder``; returns what was written."""
    from engine.training import pairs as P
    from engine.training.rounds import get_adapter, get_round

    row = get_round(store, round_id)
    lineage = row["lineage"] or {}
    if row["kind"] != "dpo":
        raise BadRequest(f"round {round_id} is a {row['kind']} round; only DPO rounds export "
                         "(their preference pairs are the training data)")
    if not lineage.get("pair_set"):
        raise BadRequest(f"round {round_id} stopped before it had preference pairs; nothing to export")
    folder = Path(folder)
    _check_folder(folder)
    cfg = _round_config(row)
    parent_id = cfg.continue_adapter or row.get("parent_adapter_id")
    parent = get_adapter(store, parent_id) if parent_id else None
    if parent and not Path(parent["peft_path"]).is_dir():
        raise BadRequest(f"the adapter round {round_id} continued from is gone from disk ({parent['peft_path']})")
    pairs = P.load(store, lineage["pair_set"])
    weights, weights_are = _base_weights(cfg)

    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        rows = P.export_datasets(pairs, tmp / "dataset", cfg.rating_repeat)
        P.export_jsonl(pairs, tmp / "pairs.jsonl", cfg.rating_repeat)
        if copy_base:
            shutil.copytree(weights, tmp / "base", copy_function=_link_or_copy)
            base_path = "base"
        else:
            base_path = str(Path(weights).resolve())
        start = None
        if parent:
            shutil.copytree(parent["peft_path"], tmp / "start_adapter", copy_function=_link_or_copy,
                            ignore=shutil.ignore_patterns("*.gguf"))
            start = "start_adapter"
        spec = round_spec(cfg, round_id, lineage, base_path, start)
        (tmp / "trl_config.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
        from engine.training import export_train

        (tmp / "train.py").write_text(Path(export_train.__file__).read_text(encoding="utf-8"), encoding="utf-8")
        launch = tmp / "launch.sh"
        launch.write_text(LAUNCH % {"round": round_id, "model": base_path}, encoding="utf-8")
        launch.chmod(0o755)
        reqs = REQUIREMENTS + ([ANCHOR_REQUIREMENT] if spec["anchor"] else [])
        (tmp / "requirements.txt").write_text(
            "# the versions HAL studio trains with (its pyproject.toml)\n" + "\n".join(reqs) + "\n",
            encoding="utf-8")
        (tmp / "README.txt").write_text(
            _readme(round_id, cfg, spec, len(pairs), rows, weights, weights_are, copy_base, parent),
            encoding="utf-8")
        if folder.exists():  # an empty folder the researcher made for it
            folder.rmdir()
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"folder": str(folder), "files": sorted(p.name for p in folder.iterdir()), "pairs": len(pairs),
            "rows": rows, "round_id": round_id,
            "base": {"path": base_path, "copied": copy_base, "from": str(weights), "what": weights_are},
            "start_adapter": ({"path": start, "adapter_id": parent.get("id"), "from": parent["peft_path"]}
                              if parent else None),
            "anchor": spec["anchor"], "requirements": reqs,
            "run": f"cd {folder} && pip install -r requirements.txt && NUM_GPUS=1 ./launch.sh"}


def _readme(round_id, cfg, spec, n_pairs, rows, weights, weights_are, copied, parent) -> str:
    d, lora, anchor = spec["dpo"], spec["lora"], spec["anchor"]
    steps = (f"{d['max_steps']} optimiser steps" if d["max_steps"] > 0
             else f"{d['num_train_epochs']:g} epoch(s)")
    base = (f"base/ holds a copy (hard-linked where the file system allows) of {weights_are}:\n  {weights}\n"
            if copied else
            f"The base is not copied: launch.sh points at {weights_are} on the machine that exported it:\n"
            f"  {weights}\nCopy that folder along, or set MODEL=<its path on this machine>.\n")
    lines = [
        f"HAL studio round {round_id} (DPO), exported to train on a bigger machine.",
        "",
        "Run:  pip install -r requirements.txt",
        "      ./launch.sh                 # one GPU",
        "      NUM_GPUS=8 ./launch.sh      # eight (without CUDA: eight CPU processes, gloo)",
        "The LoRA adapter lands in output/adapter (PEFT format, only the trained adapter);",
        "output/run.json holds the log and the process count. In the studio:",
        "  hal eval --adapter output/adapter        (the verdict against the base)",
        "  hal chat --backend transformers --adapter output/adapter \"hi\"",
        "",
        "What it trains (the round's own settings, trl_config.json):",
        (f"- pairs: {n_pairs} preference pairs as {rows} training rows (a rating pair is repeated "
         f"round(weight x {cfg.rating_repeat}) times, as in the round): dataset/ and pairs.jsonl"),
        f"- base: {base.rstrip()}",
        "- start: " + (f"the adapter the round continued from ({parent.get('id') or parent['peft_path']}), "
                        "copied into start_adapter/ and trained further" if parent else
                        f"a new LoRA r={lora['r']} alpha={lora['lora_alpha']:g} dropout={lora['lora_dropout']:g} "
                        f"on {', '.join(lora['target_modules'])}"),
        f"- DPO: loss {'+'.join(d['loss_type'])}"
        + (f" (weights {d['loss_weights']})" if d.get("loss_weights") else "")
        + f", beta {d['beta']:g}, learning rate {d['learning_rate']:g}, warm-up {d['warmup_steps']:g}"
        f" (a share of the steps when below 1), {steps}, {d['per_device_train_batch_size']} pairs per "
        f"step and process x {d['gradient_accumulation_steps']} accumulation, max length {d['max_length']}, "
        f"seed {d['seed']}, fp32 like the round (--bf16 for bf16)",
        "- human-chat anchor: " + (
            f"on: each training batch adds {anchor['weight']:g} x the next-token loss of {anchor['batch_size']} real "
            "human replies from the Chit-Chat corpus (the chitchat-dataset package; the same chats the "
            "studio picks, its held-out tenth never used)" if anchor else "off"),
        "",
        "With N processes each trains on its share of the pairs: the effective batch is N x",
        (f"{d['per_device_train_batch_size']} x {d['gradient_accumulation_steps']}, and max_steps counts "
         "steps of that batch. Change a setting with --set, e.g."),
        "  NUM_GPUS=8 ./launch.sh --set max_steps=500 --set per_device_train_batch_size=16",
        "Resume after a stop: ./launch.sh --resume",
        "",
        "Not carried (they happen in the studio): pair building (sampling, judge, weights, margin) and",
        "the verdict; trl_config.json lists each such setting with its reason.",
        "",
    ]
    return "\n".join(lines)
