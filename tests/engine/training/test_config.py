"""Round settings: help on every field, presets, clear refusals before any work."""

from __future__ import annotations

import dataclasses

import pytest

from engine.training import dpo, reward_weights
from engine.training.config import ConfigError, describe


@pytest.mark.parametrize("cls", [dpo.DPORoundConfig, reward_weights.RewardWeightsConfig])
def test_every_field_has_help(cls):
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f.name
    assert all(d["help"] for d in describe(cls))


def test_defaults_follow_the_paper():
    c = dpo.make_config("default")
    assert (c.lora_r, c.lora_alpha, c.lora_dropout, c.beta) == (16, 32.0, 0.1, 0.1)
    assert set(c.lora_targets) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert c.margin is None and c.margin_std == 0.5
    # beyond the paper: the default round anchors the small model to real human chat
    assert (c.anchor, c.anchor_weight) == ("chitchat", 0.25)
    assert dpo.DPORoundConfig().anchor == "off"  # an explicit choice, not the class default


@pytest.mark.parametrize("over, msg", [
    ({"beta": 0}, "beta=0"),
    ({"lora_r": 0}, "lora_r=0"),
    ({"k": 1}, "k=1"),
    ({"learning_rate": 5}, "learning_rate"),
    ({"sampler": "gpu"}, "sampler"),
    ({"batch_size": 2.5}, "whole number"),
    ({"nonsense": 1}, "unknown setting"),
    ({"use_ratings": "yes"}, "true or false"),
    ({"anchor": "wikipedia"}, "anchor"),
    ({"lora_targets": []}, "lora_targets"),
])
def test_out_of_range_is_refused(over, msg):
    with pytest.raises(ConfigError, match=msg):
        dpo.make_config("smoke", over)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="preset"):
        dpo.make_config("huge")


def test_tiny_prompt_set_refused_before_work(tmp_path, store):
    from engine.errors import BadRequest
    from engine.jobs import RecordingState

    f = tmp_path / "one.jsonl"
    f.write_text('{"text": "hi"}\n')
    with pytest.raises(BadRequest, match="training split"):
        dpo.run(dpo.make_config("smoke", {"prompts": str(f)}), RecordingState(), store)
    assert store.db["rounds"].count == 0  # nothing started
