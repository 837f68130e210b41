"""The verdict on its own: an existing adapter against the base on held-out prompts."""

from __future__ import annotations

import time
from dataclasses import dataclass

from engine.training.config import from_dict, opt, validate


@dataclass
class EvalConfig:
    adapter: str = opt("", "adapter id (from the adapter list) or a PEFT adapter folder")
    model: str = opt("bundled", "the base model the adapter was trained on")
    base_gguf: str = opt("", "the base as GGUF, so llama.cpp can sample (when model is a folder)")
    prompts: str = opt("bundled", "prompt set; its held-out split is used")
    verdict_prompts: int = opt(0, "held-out prompts used (0 = all)", 0, 1_000_000)
    verdict_seeds: int = opt(1, "replies per prompt and model, same seeds for both", 1, 64)
    verdict_max_tokens: int = opt(48, "longest verdict reply in tokens", 4, 4096)
    judge: str = opt("auto", "judge for the score")
    weights: str = opt("auto", "trait weights (id, id@version or file); auto = the shipped weights "
                                "fitted on this judge's own ratings, as reply badges use")
    evaluator_judge: str = opt("auto", "judge that grades the headline (auto: distilled if present, else "
                                       "lexical with the published weights; none: off)")
    evaluator_weights: str = opt("auto", "the evaluator's weights (auto: its own default)")
    sampler: str = opt("auto", "what samples replies", choices=("auto", "llamacpp", "transformers"))
    sample_threads: int = opt(0, "llama.cpp threads (0 = auto)", 0, 256)
    threads: int = opt(0, "torch threads (0 = auto)", 0, 256)
    canary: bool = opt(True, "measure drift on held-out human-like chat")
    canary_dialogues: int = opt(0, "dialogues in the drift canary (0 = all)", 0, 100_000)
    seed: int = opt(0, "seed offset for the replies", 0, 2**31 - 1)
    # blind pairwise evaluation (hal eval --rater api, hal eval sheet): engine/training/blind.py
    blind_prompts: str = opt("blind", "blind prompt set: 'blind' (resources/prompts/blind_openers.jsonl, every "
                                      "line), 'bundled' (its held-out split) or a JSONL file")
    blind_max_tokens: int = opt(160, "longest blind reply in tokens", 4, 4096)
    # the blind replies sample as a newcomer's chat does (engine.models.base.CHAT_DEFAULTS)
    blind_temperature: float = opt(0.7, "temperature of the blind replies", 0.0, 5.0)
    blind_top_p: float = opt(1.0, "top-p of the blind replies (1 = off)", 0.0, 1.0)
    blind_top_k: int = opt(40, "top-k of the blind replies (0 = off)", 0, 1_000_000)
    blind_min_p: float = opt(0.05, "min-p of the blind replies (0 = off)", 0.0, 1.0)
    blind_repeat_penalty: float = opt(1.15, "repetition penalty of the blind replies (1 = off)", 0.5, 3.0)
    rater_timeout: float = opt(120.0, "seconds the rater may take for one answer", 1.0, 3600.0)
    rater_retries: int = opt(2, "retries of one rater question (timeouts, 5xx, malformed answers)", 0, 10)
    rater_concurrency: int = opt(2, "rater questions in flight at once", 1, 32)
    rater_format: str = opt("auto", "answer format asked of the rater", choices=(
        "auto", "json_schema", "json_object+schema", "json_object", "none"))


def make_config(preset: str = "default", overrides: dict | None = None) -> EvalConfig:
    return from_dict(EvalConfig, overrides)


def run(config: EvalConfig, state, store=None) -> dict:
    from engine.errors import BadRequest
    from engine.store import Store
    from engine.training import policy, prompts as PS
    from engine.training.phases import Phases, load_estimate, verdict_estimate
    from engine.training.reward import load_evaluator, load_reward
    from engine.training.rounds import get_adapter
    from engine.training.verdict import canary_perplexity, chat_settings, run_verdict

    validate(config)
    if not config.adapter:
        raise BadRequest("eval needs an adapter (id or folder)")
    store = store or Store()
    row = get_adapter(store, config.adapter)
    heldout = PS.load(config.prompts).split("heldout")[: config.verdict_prompts or None]
    PS.require(heldout, 2, "held-out split")
    t0 = time.perf_counter()
    policy.set_threads(config.threads)
    base = policy.resolve(config.model, config.base_gguf)
    phases = Phases(state, {"load": load_estimate(base), **verdict_estimate(config, len(heldout), False)})
    with phases.phase("load", "loading the base model and the adapter"):
        model, tok = policy.load(base)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, row["peft_path"])
        reward = load_reward(config.judge, config.weights)
    with phases.phase("verdict_sampling", "verdict: loading the sampler"):
        sampler, new = policy.verdict_sampler(config.sampler, base, row.get("gguf_path"), model, tok,
                                              config.sample_threads, state.log)
    dialogues = PS.canary_dialogues()[: config.canary_dialogues or None]

    def ppl(on: bool) -> float:
        return canary_perplexity(model, tok, dialogues, on, progress=lambda d, t: phases.progress(
            "canary", (d + (t if on else 0)) / (2 * t), f"verdict: drift canary {d}/{t}"))

    try:
        verdict = run_verdict(heldout, sampler, reward, None, new, config.verdict_seeds, 1234 + config.seed,
                              chat_settings(config.verdict_max_tokens),
                              ppl if config.canary else None, state.cancelled,
                              lambda d, t: phases.progress("verdict_sampling", d / t, f"verdict {d}/{t}"),
                              phase=lambda name: phases.phase(name),
                              evaluator=load_evaluator(config.evaluator_judge, config.evaluator_weights, reward))
    finally:
        policy.close(sampler)
    verdict["timings"] = phases.timings()["phases"]
    verdict["adapter"] = row.get("id") or row["peft_path"]
    verdict["seconds"] = round(time.perf_counter() - t0, 2)
    return verdict
