"""Train one HAL studio DPO round's LoRA on any machine: ``accelerate launch train.py``.

``hal round export`` copies this file into the exported folder as ``train.py``,
beside the round's pairs (``dataset/``) and settings (``trl_config.json``). It
imports nothing from the studio; it needs torch, transformers, trl, peft and
datasets (``requirements.txt``), and the chitchat-dataset package when the round
used the human-chat anchor.

It trains what the round trained: the same base weights, the same LoRA (or the
adapter the round continued from), TRL's DPOTrainer with the round's loss, beta,
learning rate, warm-up and schedule, and the round's human-chat anchor (the
next-token loss of real human replies from the Chit-Chat corpus, chosen as the
studio chooses them, with the same weight). With N processes each one trains on
its share of the pairs, so the effective batch is N x per_device_train_batch_size
x gradient_accumulation_steps.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


# -- the human-chat anchor (the studio's engine/training/anchor.py, rebuilt without the studio) --
def chitchat_chats(path: str | Path | None = None) -> list:
    """(chat id, [(sender, text)]) from the chitchat-dataset package's dataset.json, each
    sender's burst of lines joined into one turn (as the studio reads it)."""
    if path is None:
        spec = importlib.util.find_spec("chitchat_dataset")
        folders = list(spec.submodule_search_locations or []) if spec else []
        found = [Path(f) / "dataset.json" for f in folders if (Path(f) / "dataset.json").is_file()]
        if not found:
            raise SystemExit("train.py: this round adds the human-chat anchor, which reads the "
                             "chitchat-dataset package: pip install -r requirements.txt")
        path = found[0]
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    chats = []
    for chat_id, chat in raw.items():
        turns: list = []
        for message in chat.get("messages") or []:
            parts = [u for u in message if isinstance(u, dict) and str(u.get("text", "")).strip()]
            if not parts:
                continue
            sender = str(parts[0].get("sender", ""))
            text = " ".join(" ".join(str(u["text"]).split()) for u in parts)
            if turns and turns[-1][0] == sender:
                turns[-1] = (sender, turns[-1][1] + " " + text)
            else:
                turns.append((sender, text))
        chats.append((str(chat_id), turns))
    return chats


def is_heldout(chat_id: str, share: int) -> bool:
    """The studio never trains on these chats (its second drift canary reads them)."""
    return int(hashlib.sha256(chat_id.encode()).hexdigest()[:8], 16) % share == 0


def human_exchanges(chats: list, n: int, seed: int, context: int, max_chars: int, share: int) -> list:
    """``n`` snippets from the training chats: ``context`` earlier turns, then the replier's
    real next message as the last assistant turn."""
    pool = [c for c in chats if not is_heldout(c[0], share)]
    rng = random.Random(seed)
    rng.shuffle(pool)
    out: list = []
    for _chat_id, turns in pool:
        cuts = [k for k in range(context, len(turns))
                if turns[k][0] != turns[k - 1][0] and 0 < len(turns[k][1]) <= max_chars
                and all(len(t[1]) <= max_chars for t in turns[k - context:k])]
        if not cuts:
            continue
        k = rng.choice(cuts)
        replier = turns[k][0]
        msgs = [{"role": "assistant" if s == replier else "user", "content": t}
                for s, t in turns[k - context:k + 1]]
        while msgs and msgs[0]["role"] == "assistant":
            msgs.pop(0)
        if len(msgs) >= 2:
            out.append(msgs)
        if len(out) >= n:
            break
    return out


class Anchor:
    """Endless shuffled batches of tokenised human replies (loss on the last reply only).

    Process ``rank`` of ``world`` takes the rank-th batch of every ``world`` in the
    shuffled order, so one process draws exactly the studio's batches and N processes
    together draw the studio's next N."""

    def __init__(self, tokenizer, chats: list, n: int, batch_size: int, max_length: int, seed: int,
                 context: int, max_chars: int, heldout_share: int, rank: int = 0, world: int = 1):
        self.tok = tokenizer
        self.batch_size = max(1, int(batch_size))
        self.rank, self.world = int(rank), max(1, int(world))
        self.rng = random.Random(seed)
        snippets = human_exchanges(chats, n, seed, context, max_chars, heldout_share)
        self.rows = [r for r in (self.encode(m, max_length) for m in snippets) if r]
        if len(self.rows) < self.batch_size * self.world:
            raise SystemExit("train.py: the human chat corpus gave too few anchor examples")
        self.order: list = []

    def encode(self, msgs: list, max_length: int):
        prefix = self.tok.apply_chat_template(msgs[:-1], add_generation_prompt=True, tokenize=False)
        p_ids = self.tok(prefix, add_special_tokens=False)["input_ids"]
        r_ids = self.tok(msgs[-1]["content"], add_special_tokens=False)["input_ids"]
        eos = self.tok.convert_tokens_to_ids("<|im_end|>")
        if isinstance(eos, int) and eos >= 0 and eos != self.tok.unk_token_id:
            r_ids = r_ids + [eos]
        keep = max_length - len(r_ids)
        if keep < 8:
            return None
        p_ids = p_ids[-keep:]
        return p_ids + r_ids, [-100] * len(p_ids) + r_ids

    def take(self) -> list:
        need = self.batch_size * self.world
        if len(self.order) < need:
            self.order = list(range(len(self.rows)))
            self.rng.shuffle(self.order)
        drawn = [self.rows[self.order.pop()] for _ in range(need)]
        return drawn[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def next(self, device):
        import torch

        take = self.take()
        width = max(len(ids) for ids, _ in take)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        ids = torch.full((len(take), width), pad, dtype=torch.long)
        labels = torch.full((len(take), width), -100, dtype=torch.long)
        mask = torch.zeros((len(take), width), dtype=torch.long)
        for i, (row, lab) in enumerate(take):
            ids[i, :len(row)] = torch.tensor(row)
            labels[i, :len(lab)] = torch.tensor(lab)
            mask[i, :len(row)] = 1
        return ids.to(device), mask.to(device), labels.to(device)


def anchored(trainer_class):
    """``trainer_class`` with the anchor's weighted next-token loss added to every training loss."""

    class Anchored(trainer_class):
        def __init__(self, *args, anchor=None, anchor_weight: float = 0.0, **kwargs):
            super().__init__(*args, **kwargs)
            self.anchor, self.anchor_weight = anchor, float(anchor_weight)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                       num_items_in_batch=num_items_in_batch)
            if self.anchor is None or self.anchor_weight <= 0 or not model.training:
                return out
            ids, mask, labels = self.anchor.next(next(model.parameters()).device)
            nll = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            self._metrics["train"]["anchor_nll"].append(float(nll.detach()))
            if return_outputs:
                loss, outputs = out
                return loss + self.anchor_weight * nll, outputs
            return out + self.anchor_weight * nll

    Anchored.__name__ = f"Anchored{trainer_class.__name__}"
    return Anchored


# -- settings ------------------------------------------------------------------------------------
def parse_overrides(items: list) -> dict:
    """``--set key=value`` pairs (values read as JSON when they parse, else as text)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"train.py: --set wants key=value, not {item!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def dpo_config(spec: dict, output_dir: str, cpu: bool, bf16: bool = False, overrides: dict | None = None):
    """The round's DPOConfig (``spec["dpo"]``) for this machine."""
    from trl import DPOConfig

    kwargs = {**spec["dpo"], **(overrides or {})}
    if bf16:
        kwargs.update(bf16=True, fp16=False)
    return DPOConfig(output_dir=output_dir, use_cpu=cpu, **kwargs)


def lora_config(spec: dict):
    from peft import LoraConfig

    return LoraConfig(**spec["lora"])


def make_anchor(spec: dict, tokenizer, rank: int = 0, world: int = 1):
    a = spec.get("anchor")
    if not a:
        return None
    return Anchor(tokenizer, chitchat_chats(), a["n"], a["batch_size"], a["max_length"], a["seed"],
                  a["context"], a["max_chars"], a["heldout_share"], rank, world)


def resolve(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else (HERE / p)


def main(argv: list | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="trl_config.json", help="the round's settings")
    ap.add_argument("--model", default=None, help="base model folder (default: the round's own base)")
    ap.add_argument("--data", default="dataset", help="the pairs (datasets.load_from_disk)")
    ap.add_argument("--output", default="output", help="checkpoints and the adapter land here")
    ap.add_argument("--bf16", action="store_true", help="train in bf16 (the round trained in fp32)")
    ap.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change a DPOConfig value of the round (e.g. max_steps=200)")
    a = ap.parse_args(argv)
    spec = json.loads(resolve(a.config).read_text(encoding="utf-8"))

    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer

    model_path = resolve(a.model or spec["base"]["path"])
    if not model_path.is_dir():
        raise SystemExit(f"train.py: no base model folder at {model_path}; pass --model (see README.txt)")
    output = resolve(a.output)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    gpu = torch.cuda.is_available()
    args = dpo_config(spec, str(output / "checkpoints"), cpu=not gpu, bf16=a.bf16,
                      overrides=parse_overrides(a.set))
    tok = AutoTokenizer.from_pretrained(str(model_path), trust_remote_code=False)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32,
                                                 trust_remote_code=False)
    torch.manual_seed(args.seed)  # the LoRA's initial weights, as in the round
    kwargs = {}
    if spec.get("start_adapter"):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(resolve(spec["start_adapter"])), is_trainable=True)
    else:
        kwargs["peft_config"] = lora_config(spec)
    trainer_class = DPOTrainer
    anchor = make_anchor(spec, tok, rank, world)
    if anchor is not None:
        trainer_class = anchored(DPOTrainer)
        kwargs.update(anchor=anchor, anchor_weight=spec["anchor"]["weight"])
    dataset = datasets.load_from_disk(str(resolve(a.data)))
    trainer = trainer_class(model=model, args=args, train_dataset=dataset, processing_class=tok, **kwargs)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if a.resume else None)
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        peft_model = trainer.accelerator.unwrap_model(trainer.model)
        # only the trained adapter: TRL adds a frozen "ref" copy when continuing one
        peft_model.save_pretrained(str(output / "adapter"), selected_adapters=["default"])
        run = {"round_id": spec.get("studio", {}).get("round_id"), "base": str(model_path),
               "num_processes": trainer.accelerator.num_processes,
               "distributed_type": str(trainer.accelerator.distributed_type),
               "steps": int(trainer.state.global_step), "seconds": round(time.perf_counter() - t0, 2),
               "anchor": bool(anchor), "start_adapter": spec.get("start_adapter"),
               "overrides": parse_overrides(a.set), "bf16": bool(args.bf16),
               "log_history": trainer.state.log_history}
        (output / "run.json").write_text(json.dumps(run, indent=1, default=str), encoding="utf-8")
        print(f"train.py: the adapter is in {output / 'adapter'}", file=sys.stderr)
    trainer.accelerator.wait_for_everyone()
    return 0


if __name__ == "__main__":
    sys.exit(main())
