"""Online RL round ("Online RL (GRPO)"): TRL's GRPOTrainer samples a group of
replies per prompt from the current LoRA policy and pushes up those the
human-likeness score prefers (group-relative advantage, PPO's clipped
objective, a KL pull toward the base = the adapter switched off). A length
guard penalises empty and runaway replies so the score's taste for brevity
cannot be gamed by saying nothing, replies cut off before their end (the judge
saw only part of them; they are also masked out of the loss) and looping ones;
a learned reward model can be added.

TRL 1.x ships no PPOTrainer: GRPO is its PPO-style online method (the clipped
policy objective, with a group of replies per prompt as the baseline instead
of a learned value model)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from engine.training import policy
from engine.training import prompts as prompt_sets
from engine.training.config import ConfigError, LoraSettings, from_dict, opt, to_dict, validate
from engine.training.dpo import VerdictSettings
from engine.training.runner import TrainSettings, finish_policy_round

KIND = "online"
TITLE = "Online RL (GRPO)"


@dataclass
class GRPORoundConfig(TrainSettings, LoraSettings, VerdictSettings):
    """An online RL round with GRPO and a LoRA adapter."""

    model: str = opt("bundled", "base model: 'bundled', a .gguf file or a model folder")
    base_gguf: str = opt("", "the base as GGUF, for the GGUF LoRA twin when model is a folder")
    continue_adapter: str = opt("", "adapter id to continue training (empty = a new LoRA)")
    prompts: str = opt("bundled", "prompt set (its train split)")
    n_prompts: int = opt(0, "training prompts (0 = all)", 0, 1_000_000)
    judge: str = opt("auto", "judge for the human-likeness reward")
    weights: str = opt("auto", "trait weights (id, id@version or file); auto = the shipped weights "
                                "fitted on this judge's own ratings, as reply badges use")
    reward_model: str = opt("", "a learned reward model (adapter id or folder) added as a second reward")
    reward_model_weight: float = opt(0.5, "weight of the learned reward against the score", 0.0, 100.0)
    num_generations: int = opt(4, "replies per prompt in a group", 2, 64)
    max_completion_length: int = opt(40, "longest reply in tokens during training", 4, 4096)
    temperature: float = opt(0.9, "sampling temperature during training", 0.05, 5.0)
    kl_beta: float = opt(0.04, "KL penalty toward the base (0 = none, and no KL metric)", 0.0, 10.0)
    min_words: int = opt(1, "length guard: replies shorter than this are penalised", 0, 1000)
    max_words: int = opt(60, "length guard: replies longer than this are penalised", 1, 100000)
    length_penalty: float = opt(1.0, "length guard strength (score units)", 0.0, 100.0)
    truncated_penalty: float = opt(2.0, "a reply cut off at max_completion_length (no end of turn) scores "
                                        "this much lower: the judge only saw part of it", 0.0, 100.0)
    mask_truncated: bool = opt(True, "leave cut-off replies out of the policy loss (TRL "
                                     "mask_truncated_completions)")
    loop_penalty: float = opt(2.0, "a reply the loop detector flags scores this much lower", 0.0, 100.0)
    sampler: str = opt("auto", "what samples verdict replies", choices=("auto", "llamacpp", "transformers"))
    sample_threads: int = opt(0, "llama.cpp threads for the verdict (0 = auto)", 0, 256)
    resume: str = opt("", "id of a cancelled or failed round to resume")

    def check(self) -> None:
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise ConfigError(f"batch_size x grad_accum ({self.batch_size * self.grad_accum}) must be a multiple "
                              f"of num_generations ({self.num_generations})")
        if self.min_words > self.max_words:
            raise ConfigError("min_words must not exceed max_words")


PRESETS = {
    "smoke": dict(n_prompts=4, max_steps=2, batch_size=4, num_generations=2, max_completion_length=8,
                  verdict_prompts=4, verdict_max_tokens=24, canary_dialogues=4, save_steps=100, lora_r=4,
                  lora_alpha=8.0),
    # completions may end on their own: at 32 tokens every one was cut off (clipped_ratio 1.0)
    # and the reward scored half-replies
    "default": dict(n_prompts=48, max_steps=16, batch_size=8, num_generations=4, learning_rate=1e-4,
                    max_completion_length=96, max_length=256),
}


def make_config(preset: str = "default", overrides: dict | None = None) -> GRPORoundConfig:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose {', '.join(PRESETS)}")
    return from_dict(GRPORoundConfig, overrides, dataclasses.replace(GRPORoundConfig(), **PRESETS[preset]))


def _text(completion) -> str:
    if isinstance(completion, list):  # conversational: a list of messages
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def reward_functions(reward, cfg, learned=None, tokenizer=None) -> tuple[list, list[float]]:
    """GRPO reward callables (prompts, completions, **kw) -> list[float], and their weights."""

    def human_likeness(prompts, completions, **kw):
        items = [(list(p) if isinstance(p, list) else [{"role": "user", "content": str(p)}], _text(c))
                 for p, c in zip(prompts, completions)]
        return [j.score for j in reward.judge_many(items)]

    from engine.training.pairs import looping_detector

    looping = looping_detector()
    eos = set()
    if tokenizer is not None:
        eos = {t for t in (getattr(tokenizer, "eos_token_id", None),
                           tokenizer.convert_tokens_to_ids("<|im_end|>") if hasattr(tokenizer, "convert_tokens_to_ids")
                           else None) if isinstance(t, int) and t >= 0}

    def length_guard(prompts, completions, completion_ids=None, **kw):
        """Empty and runaway replies, replies cut off before their end, and loops score lower."""
        out = []
        for i, c in enumerate(completions):
            text = _text(c)
            n = len(text.split())
            over = max(0, n - cfg.max_words) / cfg.max_words
            under = 1.0 if n < cfg.min_words else 0.0
            penalty = cfg.length_penalty * (over + under)
            ids = list(completion_ids[i]) if completion_ids is not None and i < len(completion_ids) else None
            if ids is not None and len(ids) >= cfg.max_completion_length and not (eos & set(ids)):
                penalty += cfg.truncated_penalty
            if looping is not None and looping(text):
                penalty += cfg.loop_penalty
            out.append(-penalty)
        return out

    funcs, weights = [human_likeness, length_guard], [1.0, 1.0]
    if learned is not None:
        def learned_reward(prompts, completions, **kw):
            return learned([(list(p), _text(c)) for p, c in zip(prompts, completions)])
        funcs.append(learned_reward)
        weights.append(cfg.reward_model_weight)
    return funcs, weights


def run(config: GRPORoundConfig, state, store=None) -> dict:
    from engine.store import Store
    from engine.training.rounds import (RoundRecord, check_disk, exclusive, get_adapter, get_round, rounds_dir,
                                        sweep_temp_adapters)

    validate(config)
    store = store or Store()
    with exclusive("online RL round"):
        sweep_temp_adapters()
        if config.resume:
            config = from_dict(GRPORoundConfig, {**get_round(store, config.resume)["config"],
                                                 "resume": config.resume})
        parent = get_adapter(store, config.continue_adapter) if config.continue_adapter else None
        base = policy.resolve(config.model, config.base_gguf)
        pset = prompt_sets.load(config.prompts)
        prompt_sets.report_problems(pset, state)
        train_prompts = pset.split("train")[: config.n_prompts or None]
        heldout = pset.split("heldout")[: config.verdict_prompts or None]
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
    import datasets
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from engine.training.callbacks import JobCallback
    from engine.training.phases import Phases, plan
    from engine.training.reward import load_reward
    from engine.training.runner import summary_metrics, train, training_args

    phases = Phases(state, plan(cfg, base, len(train_prompts), len(heldout), False, KIND))
    policy.set_threads(cfg.threads)
    with phases.phase("load", "loading the base model"):
        model, tok = policy.load(base)
        torch.manual_seed(cfg.seed)
        if parent:
            model = policy.with_adapter(model, parent["peft_path"], cfg)
        reward = load_reward(cfg.judge, cfg.weights)
        learned = None
        if cfg.reward_model:
            from engine.training.reward_model import load_scorer

            learned = load_scorer(store, cfg.reward_model)
    funcs, weights = reward_functions(reward, cfg, learned, tok)
    record.set_lineage({"prompt_set": cfg.prompts, "prompt_ids": [p.id for p in train_prompts],
                        "judge": reward.judge, "weights": reward.weights_ref,
                        "questionnaire": reward.questionnaire, "reward_model": cfg.reward_model or None})
    ds = datasets.Dataset.from_list([{"prompt": p.as_messages()} for p in train_prompts])
    args = training_args(GRPOConfig, cfg, str(record.checkpoint_dir), num_generations=cfg.num_generations,
                         max_completion_length=cfg.max_completion_length, temperature=cfg.temperature,
                         beta=cfg.kl_beta, reward_weights=weights, log_completions=False,
                         mask_truncated_completions=cfg.mask_truncated)
    callback = JobCallback(state, "GRPO", offset=phases.offset["training"], span=phases.span["training"],
                           total_units=phases.units)
    kwargs = {} if parent else {"peft_config": policy.lora_config(cfg)}
    with phases.phase("training", "preparing the trainer"):
        trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=ds,
                              processing_class=tok, callbacks=[callback], **kwargs)
        outcome = train(trainer, record, callback, resume=bool(cfg.resume))
    metrics = summary_metrics(callback, {"n_prompts": len(train_prompts), **outcome})
    record.set(metrics=metrics)
    if outcome["cancelled"]:
        record.finish("cancelled", "cancelled by the researcher; resume to continue")
        return {"round_id": record.id, "cancelled": True, "steps": outcome["steps"],
                "metrics": {k: v for k, v in metrics.items() if k != "history"}}
    return finish_policy_round(cfg, state, store, record, base, trainer.model, tok, heldout, reward,
                               outcome, metrics, phases, KIND, parent)
