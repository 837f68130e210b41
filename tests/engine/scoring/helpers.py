"""Small hand-made inputs shared by the scoring tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

SLANGY = ["lol ya its fine", "idk tbh, im kinda tired rn", "nah i dont think so lmao", "u play valo?"]
FORMAL = ["Thank you for asking. I am doing quite well today.",
          "However, I would certainly prefer to consider the various options carefully.",
          "That is a fascinating question; furthermore, it deserves a thorough answer.",
          "I appreciate your patience. Overall, the experience was wonderful."]


def turing_row(game, human_side="A", a_lines=None, b_lines=None, ratings=True, ai_model="gpt-4o_minimal"):
    a_lines = a_lines or SLANGY
    b_lines = b_lines or FORMAL
    transcript = lambda lines: "\n".join(f"I: question {i}?\nW: {t}" for i, t in enumerate(lines))  # noqa: E731
    return {
        "game_id": str(game),
        "conversation_A_transcript": transcript(a_lines),
        "conversation_B_transcript": transcript(b_lines),
        "label_A": "Human" if human_side == "A" else ai_model,
        "label_B": "Human" if human_side == "B" else ai_model,
        "who_is_human": human_side,
        "ai_model": ai_model,
        "likert_evaluation_A": json.dumps([5 if i < 4 else 3 for i in range(32)]) if ratings else "",
        "likert_evaluation_B": json.dumps([1 if i < 4 else 3 for i in range(32)]) if ratings else "",
    }


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path
