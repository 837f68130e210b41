"""The held-out opener set of `hal bench loops`: our own writing, no overlap
with the training openers or the canary text, and read by no round."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ROOT / "resources" / "prompts"


def rows(name):
    return [json.loads(line) for line in (PROMPTS / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def norm(text):
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def other_texts():
    texts = []
    for row in rows("openers.jsonl"):
        texts += [row[k] for k in ("text", "system") if isinstance(row.get(k), str)]
    for row in rows("canary.jsonl"):
        texts += [m["content"] for m in row["messages"]]
    return texts


def jaccard(a, b):
    a, b = set(norm(a).split()), set(norm(b).split())
    return len(a & b) / max(1, len(a | b))


def test_blind_openers_are_well_formed_and_enough():
    blind = rows("blind_openers.jsonl")
    assert len(blind) >= 80
    assert all(set(r) == {"id", "text"} and r["text"].strip() for r in blind)
    assert len({r["id"] for r in blind}) == len(blind)
    assert len({norm(r["text"]) for r in blind}) == len(blind)


def test_no_overlap_with_training_openers_or_canary():
    others = other_texts()
    assert len(others) > 150
    seen = {norm(t) for t in others}
    for row in rows("blind_openers.jsonl"):
        assert norm(row["text"]) not in seen, row
        near = max(others, key=lambda t: jaccard(row["text"], t))
        assert jaccard(row["text"], near) < 0.7, (row["text"], near)  # shared frames ("do you like") only
        assert not any(norm(row["text"]) in norm(t) or norm(t) in norm(row["text"])
                       for t in others if len(norm(t)) > 12), row


def test_no_training_code_reads_the_blind_set():
    """Only evaluation reads it: the loop benchmark and the blind eval (hal eval)."""
    readers = {"bench_loops.py", "blind.py", "evaluate.py", "cli.py"}
    for path in (ROOT / "engine").rglob("*.py"):
        if path.name not in readers or path.parent.name not in ("engine", "training"):
            assert "blind_openers" not in path.read_text(encoding="utf-8"), path
