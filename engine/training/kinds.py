"""The round kinds by name, for the CLI, the engine commands and the GUI.

Each kind's module offers ``make_config(preset, overrides)``, ``run(config,
state, store)``, ``PRESETS`` and its config class; imported only when used.
"""

from __future__ import annotations

import importlib

from engine.errors import BadRequest

KINDS = {
    "dpo": ("engine.training.dpo", "DPORoundConfig", "DPO round"),
    "online": ("engine.training.grpo", "GRPORoundConfig", "Online RL (GRPO)"),
    "reward-weights": ("engine.training.reward_weights", "RewardWeightsConfig", "Reward update: trait weights"),
    "reward-model": ("engine.training.reward_model", "RewardModelConfig", "Reward update: learned reward model"),
}


def module(kind: str):
    if kind not in KINDS:
        raise BadRequest(f"unknown round kind {kind!r}; choose one of {', '.join(KINDS)}")
    return importlib.import_module(KINDS[kind][0])


def config_class(kind: str):
    return getattr(module(kind), KINDS[kind][1])


def title(kind: str) -> str:
    return KINDS[kind][2]


def make_config(kind: str, preset: str = "default", overrides: dict | None = None):
    return module(kind).make_config(preset, overrides)


def run(kind: str, config, state, store=None) -> dict:
    return module(kind).run(config, state, store)


# settings that say where a round starts from, not what it trains: a continued or resumed
# default round is still "default"
_NOT_PRESET = {"resume", "continue_adapter", "pair_set"}


def preset_of(kind: str, config: dict) -> str | None:
    """The preset a round's stored config equals (apart from where it starts), or None."""
    import json

    from engine.training.config import to_dict

    mod = module(kind)
    for preset in sorted(getattr(mod, "PRESETS", {})):
        ref = json.loads(json.dumps(to_dict(mod.make_config(preset, {})), default=str))
        if all(config.get(k) == v for k, v in ref.items() if k not in _NOT_PRESET):
            return preset
    return None
