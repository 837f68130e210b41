"""The DPO round: sample and score pairs from the policy, train a LoRA with
TRL's DPOTrainer (reference = the adapter switched off), write the adapter,
judge it on held-out prompts."""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass

from engine.store import Store
from engine.training import pairs as P
from engine.training import policy, prompts as prompt_sets
from engine.training.config import ConfigError, LoraSettings, from_dict, opt, to_dict, validate
from engine.training.rounds import (RoundRecord, check_disk, exclusive, get_adapter, get_round, rounds_dir,
                                    sweep_temp_adapters)
from engine.training.runner import TrainSettings, finish_policy_round

KIND = "dpo"


@dataclass
class PairSettings:
    """How the policy's replies become pairs."""

    prompts: str = opt("bundled", "prompt set: 'bundled' or a JSONL file (only its train split is used)")
    n_prompts: int = opt(0, "training prompts to sample from (0 = all)", 0, 1_000_000)
    k: int = opt(4, "replies sampled per prompt", 2, 32)
    margin: float | None = opt(None, "absolute score gap a pair needs (empty = margin_std x std)", 0.0, 1e6)
    margin_std: float = opt(0.5, "the gap in standard deviations of all scores (the paper: 0.5)", 0.0, 10.0)
    max_pairs_per_prompt: int = opt(0, "keep at most this many pairs per prompt, widest gaps first (0 = all)",
                                    0, 1000)
    judge: str = opt("auto", "judge for the score: auto (the reply badges' judge, lexical), lexical, distilled, surface")
    weights: str = opt("auto", "trait weights (id, id@version or file); auto = the shipped weights "
                                "fitted on this judge's own ratings, as reply badges use")
    length_ratio_max: float = opt(0.0, "keep a pair only when the longer reply has at most this many times "
                                       "the words of the shorter (0 = off): length alone cannot decide it",
                                  0.0, 100.0)
    human_pairs: float = opt(0.0, "human-anchored pairs (a real Chit-Chat reply as chosen, the policy's "
                                  "own reply as rejected) per score-ranked pair (0 = off)", 0.0, 10.0)
    use_ratings: bool = opt(True, "add the researcher's decisive ratings as pairs")
    likely_weight: float = opt(0.5, "weight of a 'likely' verdict", 0.0, 10.0)
    certainly_weight: float = opt(1.0, "weight of a 'certainly' verdict", 0.0, 10.0)
    rating_repeat: int = opt(2, "a rating pair is repeated round(weight x this) times", 1, 100)
    pair_set: str = opt("", "train on a stored pair set instead of sampling new pairs")
    sampler: str = opt("auto", "what samples replies", choices=("auto", "llamacpp", "transformers"))
    sample_temperature: float = opt(0.9, "sampling temperature for pair replies", 0.0, 5.0)
    sample_top_p: float = opt(0.95, "nucleus sampling for pair replies", 0.01, 1.0)
    sample_max_tokens: int = opt(48, "longest sampled reply in tokens", 4, 4096)
    sample_threads: int = opt(0, "llama.cpp threads for sampling (0 = all cores, or one when the machine "
                              "is busy)", 0, 256)


@dataclass
class VerdictSettings:
    verdict: bool = opt(True, "judge the new adapter against the base on held-out prompts")
    verdict_prompts: int = opt(0, "held-out prompts used (0 = all)", 0, 1_000_000)
    verdict_seeds: int = opt(1, "replies per held-out prompt and model (same seeds for both)", 1, 64)
    verdict_max_tokens: int = opt(48, "longest verdict reply in tokens", 4, 4096)
    canary: bool = opt(True, "measure drift: perplexity of held-out human-like chat vs the base")
    evaluator_judge: str = opt("auto", "judge that grades the verdict's headline, not the one the round "
                                       "trained on: auto (distilled if present, else lexical with the "
                                       "published weights), a judge name, or none")
    evaluator_weights: str = opt("auto", "the evaluator's weights (auto: its own default)")
    canary_dialogues: int = opt(0, "dialogues in each drift canary (0 = all: 30 of ours, 60 real chats)",
                                0, 100_000)


@dataclass
class DPORoundConfig(PairSettings, TrainSettings, LoraSettings, VerdictSettings):
    """A DPO round (defaults follow the paper: LoRA r16/a32/dropout 0.1, beta 0.1)."""

    model: str = opt("bundled", "base model: 'bundled', a .gguf file or a model folder")
    base_gguf: str = opt("", "the base as GGUF, for the GGUF LoRA twin when model is a folder")
    continue_adapter: str = opt("", "adapter id to continue training (empty = a new LoRA on the base)")
    beta: float = opt(0.1, "DPO beta: how far the policy may move from the reference", 1e-4, 10.0)
    loss_type: str = opt("sigmoid", "TRL DPO loss; 'rpo' adds an SFT term on the chosen replies "
                         "(sigmoid + sft), which holds the language model closer to its start",
                         choices=("sigmoid", "ipo", "hinge", "robust", "rpo"))
    sft_weight: float = opt(1.0, "weight of the SFT term when loss_type is rpo", 0.0, 100.0)
    anchor: str = opt("off", "language-model anchor added to every step: 'chitchat' = next-token loss "
                      "on real human chat replies (Chit-Chat corpus, its held-out tenth never used), "
                      "which holds the model near how people write", choices=("off", "chitchat"))
    anchor_weight: float = opt(1.0, "weight of the anchor's loss", 0.0, 100.0)
    anchor_batch: int = opt(4, "human replies in each step's anchor batch", 1, 256)
    min_pairs: int = opt(4, "refuse to train on fewer pairs than this", 1, 1_000_000)
    resume: str = opt("", "id of a cancelled or failed round to resume from its last checkpoint")

    def check(self) -> None:
        if self.lora_alpha <= 0:
            raise ConfigError("lora_alpha must be above 0")
        if not self.lora_targets:
            raise ConfigError("lora_targets must name at least one module")


PRESETS = {
    # smoke: under a minute on the bundled model (llama.cpp samples pairs and the verdict; a few
    # held-out prompts and canary dialogues keep the verdict's figures real but small; no
    # checkpoint unless cancelled, since the adapter is written at the end anyway).
    "smoke": dict(n_prompts=4, k=2, margin=0.0, max_steps=2, batch_size=2, sample_max_tokens=12,
                  max_length=96, verdict_prompts=4, verdict_max_tokens=24, canary_dialogues=4, save_steps=100,
                  lora_r=4, lora_alpha=8.0, min_pairs=1),
    # The anchor keeps the 135M model near real human chat: without it five default rounds
    # raised the canary's perplexity by up to +147% (README, "Alignment rounds").
    "default": dict(n_prompts=32, k=4, max_pairs_per_prompt=2, max_steps=24, batch_size=4,
                    learning_rate=5e-4, sample_max_tokens=32, max_length=128, save_steps=8,
                    verdict_prompts=0, verdict_seeds=1, anchor="chitchat", anchor_weight=0.25),
}


def make_config(preset: str = "default", overrides: dict | None = None) -> DPORoundConfig:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose {', '.join(PRESETS)}")
    base = dataclasses.replace(DPORoundConfig(), **PRESETS[preset])
    return from_dict(DPORoundConfig, overrides, base)


def run(config: DPORoundConfig, state, store: Store | None = None) -> dict:
    """The job. Returns {round_id, adapter, seconds, steps, metrics, verdict}."""
    validate(config)
    store = store or Store()
    with exclusive("DPO round"):
        sweep_temp_adapters()
        if config.resume:
            row = get_round(store, config.resume)
            config = from_dict(DPORoundConfig, {**row["config"], "resume": config.resume})
        parent = get_adapter(store, config.continue_adapter) if config.continue_adapter else None
        base = policy.resolve(config.model, config.base_gguf)
        pset = prompt_sets.load(config.prompts)
        prompt_sets.report_problems(pset, state)
        train_prompts = pset.split("train")[: config.n_prompts or None]
        heldout = pset.split("heldout")[: config.verdict_prompts or None]
        if not config.pair_set and not config.resume:
            prompt_sets.require(train_prompts, 2, "training split")
        if config.verdict:
            prompt_sets.require(heldout, 2, "held-out split")
        check_disk(rounds_dir(), 300)
        record = RoundRecord(store, KIND, to_dict(config), parent and parent["id"], config.resume or None)
        try:
            return _run(config, state, store, record, base, parent, train_prompts, heldout)
        except BaseException as exc:
            record.fail_from(exc)
            raise


def _run(cfg, state, store, record, base, parent, train_prompts, heldout) -> dict:
    from engine.training.phases import Phases, plan
    from engine.training.reward import load_reward
    from engine.training.runner import summary_metrics, train
    from engine.training.sampling import SampleSettings

    samples_pairs = not (record.lineage.get("pair_set") or cfg.pair_set)
    phases = Phases(state, plan(cfg, base, len(train_prompts), len(heldout), samples_pairs, KIND))
    policy.set_threads(cfg.threads)
    with phases.phase("load", "loading the base model"):
        model, tok = policy.load(base)
        import torch
        torch.manual_seed(cfg.seed)  # the LoRA's initial weights
        if parent:
            model = policy.with_adapter(model, parent["peft_path"], cfg)
        reward = load_reward(cfg.judge, cfg.weights)
    sampler = None
    try:
        # 1. pairs (reused on resume)
        if record.lineage.get("pair_set"):
            pair_set = record.lineage["pair_set"]
            pairs = P.load(store, pair_set)
        elif cfg.pair_set:
            pair_set, pairs = cfg.pair_set, P.load(store, cfg.pair_set)
            record.set_lineage(P.lineage(pair_set, pairs, reward, {"reused": True}))
        else:
            with phases.phase("pairs", "sampling replies for pairs"):
                sampler = policy.pick_sampler(cfg.sampler, base, model, tok, cfg.sample_threads)
                adapter = None
                if parent:
                    adapter = parent.get("gguf_path") if sampler.name == "llamacpp" else "default"
                settings = SampleSettings(cfg.sample_temperature, cfg.sample_top_p, cfg.sample_max_tokens)
                pool = P.sample_and_score(train_prompts, sampler, reward, cfg.k, adapter, settings, cfg.seed,
                                          state.cancelled,
                                          lambda d, t: phases.progress("pairs", d / t, f"sampling {d}/{t}"))
            if state.cancelled():
                record.finish("cancelled", "cancelled while building pairs")
                return {"round_id": record.id, "cancelled": True}
            scores = pool.all_scores()
            margin = P.margin_of(scores, cfg.margin, cfg.margin_std)
            looping = P.looping_detector()
            pairs = P.pairs_from_pool(train_prompts, pool, margin, cfg.max_pairs_per_prompt, looping,
                                      cfg.length_ratio_max)
            n_looping = sum(1 for v in pool.replies.values() for t in v if looping and looping(t))
            if cfg.human_pairs > 0:
                pairs += P.human_pairs(round(cfg.human_pairs * len(pairs)), sampler, adapter, settings,
                                       cfg.seed, state.cancelled,
                                       lambda d, t: phases.progress("pairs", 1.0, f"human pairs {d}/{t}"))
            if cfg.use_ratings:
                pairs += P.rating_pairs(store, cfg.likely_weight, cfg.certainly_weight)
            pair_set = P.save(store, pairs, record.id, reward)
            record.set_lineage(P.lineage(pair_set, pairs, reward, {
                "prompt_set": cfg.prompts, "margin": margin, "score_mean": statistics.fmean(scores),
                "score_std": statistics.pstdev(scores), "n_replies": len(scores),
                "n_looping_replies": n_looping if looping else None,
                "sampler": sampler.name}))
        if len(pairs) < cfg.min_pairs:
            from engine.errors import EngineError
            raise EngineError(
                f"Only {len(pairs)} pair(s) cleared the margin (min_pairs={cfg.min_pairs}). Lower the "
                "margin (margin or margin_std), sample more replies (k) or use more prompts.",
                kind="no_pairs")
        if sampler is not None and sampler.name == "llamacpp":
            policy.close(sampler)
            sampler = None
        # 2. DPO
        with phases.phase("training", "preparing the trainer"):
            dataset = P.to_dataset(pairs, cfg.rating_repeat)
            trainer, callback = _trainer(cfg, state, record, model, tok, parent, dataset, phases)
            outcome = train(trainer, record, callback, resume=bool(cfg.resume))
        metrics = summary_metrics(callback, {"n_pairs": len(pairs), "n_rows": len(dataset), **outcome})
        record.set(metrics=metrics)
        if outcome["cancelled"]:
            record.finish("cancelled", "cancelled by the researcher; resume to continue")
            return {"round_id": record.id, "cancelled": True, "steps": outcome["steps"],
                    "checkpoint": outcome.get("resumed_from"), "metrics": _public(metrics)}
        del dataset
        return finish_policy_round(cfg, state, store, record, base, trainer.model, tok, heldout, reward,
                                   outcome, metrics, phases, KIND, parent)
    finally:
        if sampler is not None:
            policy.close(sampler)


def _public(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "history"}


def dpo_settings(cfg) -> dict:
    """The DPOConfig values a round sets beyond the shared trainer settings (the export uses them too)."""
    losses = (dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, cfg.sft_weight]) if cfg.loss_type == "rpo"
              else dict(loss_type=[cfg.loss_type]))
    return dict(beta=cfg.beta, **losses, max_length=cfg.max_length, precompute_ref_log_probs=False)


def anchor_settings(cfg) -> dict | None:
    """The human-chat anchor a round adds (None when off); the export carries the same."""
    if cfg.anchor != "chitchat" or cfg.anchor_weight <= 0:
        return None
    return {"weight": cfg.anchor_weight, "batch_size": cfg.anchor_batch, "max_length": cfg.max_length,
            "seed": cfg.seed}


def _trainer(cfg, state, record, model, tok, parent, dataset, phases):
    from trl import DPOConfig, DPOTrainer

    from engine.training.callbacks import JobCallback
    from engine.training.runner import training_args

    args = training_args(DPOConfig, cfg, str(record.checkpoint_dir), **dpo_settings(cfg))
    callback = JobCallback(state, "DPO", offset=phases.offset["training"], span=phases.span["training"],
                           total_units=phases.units)
    kwargs = {} if parent else {"peft_config": policy.lora_config(cfg)}
    trainer_class = DPOTrainer
    anchor = anchor_settings(cfg)
    if anchor:
        from engine.training.anchor import Anchor, anchored

        trainer_class = anchored(DPOTrainer)
        kwargs.update(anchor=Anchor(tok, batch_size=anchor["batch_size"], max_length=anchor["max_length"],
                                    seed=anchor["seed"]), anchor_weight=anchor["weight"])
    trainer = trainer_class(model=model, args=args, train_dataset=dataset, processing_class=tok,
                            callbacks=[callback], **kwargs)
    return trainer, callback
