"""Alignment rounds: preference pairs, DPO, online RL (GRPO), reward updates, verdicts.

Importing this package is cheap on purpose; the heavy modules (torch, trl)
load only when a round starts. ``engine.training.commands`` registers the
engine commands; ``engine.training.cli`` adds ``hal round`` and ``hal eval``.
"""
