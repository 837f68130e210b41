"""Synthetic contrastive games whose differences are known by construction."""

from __future__ import annotations

import json
import random
from pathlib import Path

HUMAN_LINES = ["lol ya its fine", "idk tbh im tired", "nah not really", "just got home from work", "haha same",
               "u play games?", "kinda busy rn", "my dog is asleep lol", "its raining here ugh", "yeah i guess"]
AI_LINES = ["That is a wonderful question. I would be happy to tell you more about my day.",
            "Certainly! I enjoy reading, hiking and exploring new ideas. What about you?",
            "I understand completely. It is important to take time for ourselves. How are you feeling?",
            "Absolutely, I find that fascinating. Could you tell me more about your interests?",
            "Of course. I appreciate your curiosity; furthermore, I am always glad to chat. And you?"]
QUESTIONS = ["hi how are you", "what do you do", "any hobbies?", "where are you from", "are you a bot?"]


def game_rows(n_games: int, seed: int = 0, ai_model: str = "gpt-x") -> list[dict]:
    """JSONL rows: per game one human side (short, lower-case) and one AI side (long, formal, asks back)."""
    rng = random.Random(seed)
    rows = []
    for g in range(n_games):
        for label, pool in (("human", HUMAN_LINES), ("ai", AI_LINES)):
            turns = []
            for q in rng.sample(QUESTIONS, 4):
                turns += [["I", q], ["W", rng.choice(pool)]]
            rows.append({"id": f"g{g}-{label}", "group": f"g{g}", "rated_speaker": "W", "label": label,
                         "turns": turns, "meta": {"ai_model": ai_model}})
    return rows


def write_games(path: Path, n_games: int, seed: int = 0, extra: list[dict] | None = None, **kw) -> Path:
    rows = game_rows(n_games, seed, **kw) + list(extra or [])
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path
