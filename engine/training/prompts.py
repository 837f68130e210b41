"""Prompt sets: the bundled openers and personas, a fixed held-out split, imports.

A prompt is a list of chat messages ending with the user's turn. The held-out
split is part of the file, so no training run can ever see those prompts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from engine import paths
from engine.errors import BadRequest

SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class Prompt:
    id: str
    messages: tuple  # tuple of {"role", "content"} dicts
    split: str = "train"

    def as_messages(self) -> list[dict]:
        return [dict(m) for m in self.messages]

    @property
    def user_text(self) -> str:
        return self.messages[-1]["content"]


@dataclass
class PromptSet:
    name: str
    prompts: list[Prompt]
    problems: list[dict]  # {"line", "reason"} for rows that were skipped

    def split(self, which: str) -> list[Prompt]:
        return [p for p in self.prompts if p.split == which]

    def digest(self) -> str:
        raw = json.dumps([[p.id, p.messages, p.split] for p in self.prompts], sort_keys=True)
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]


def bundled_path() -> Path:
    return paths.resources_dir() / "prompts" / "openers.jsonl"


def canary_path() -> Path:
    return paths.resources_dir() / "prompts" / "canary.jsonl"


def _messages_of(row: dict, personas: dict[str, str]) -> list[dict]:
    """A row is {text, persona?, system?} or {messages: [...]}; returns checked messages."""
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise ValueError("'messages' must be a non-empty list")
        for m in msgs:
            if (not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant")
                    or not isinstance(m.get("content"), str)):
                raise ValueError("each message needs role system/user/assistant and string content")
        if msgs[-1]["role"] != "user":
            raise ValueError("the last message must be the user's")
        if not msgs[-1]["content"].strip():
            raise ValueError("the user's message is empty")
        return [{"role": m["role"], "content": m["content"]} for m in msgs]
    text = row.get("text", row.get("prompt"))
    if not isinstance(text, str) or not text.strip():
        raise ValueError("needs a non-empty 'text' (or 'prompt', or 'messages')")
    system = row.get("system")
    if row.get("persona"):
        if row["persona"] not in personas:
            raise ValueError(f"unknown persona {row['persona']!r}")
        system = personas[row["persona"]]
    if system is not None and not isinstance(system, str):
        raise ValueError("'system' must be a string")
    out = [{"role": "system", "content": system}] if system else []
    return out + [{"role": "user", "content": text.strip()}]


def parse_jsonl(lines, name: str, default_split: str = "train") -> PromptSet:
    """Read prompt rows; bad rows are listed with their line number and reason."""
    rows, problems, personas = [], [], {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append({"line": n, "reason": f"not JSON: {exc.msg}"})
            continue
        if not isinstance(row, dict):
            problems.append({"line": n, "reason": "not a JSON object"})
            continue
        if row.get("kind") == "persona":
            if not isinstance(row.get("system"), str) or not row.get("id"):
                problems.append({"line": n, "reason": "a persona needs 'id' and 'system'"})
            else:
                personas[str(row["id"])] = row["system"]
            continue
        rows.append((n, row))
    prompts, seen = [], set()
    for n, row in rows:
        try:
            msgs = _messages_of(row, personas)
            split = row.get("split", default_split)
            if split not in SPLITS:
                raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        except ValueError as exc:
            problems.append({"line": n, "reason": str(exc)})
            continue
        pid = str(row.get("id") or f"{name}-{n}")
        if pid in seen:
            problems.append({"line": n, "reason": f"duplicate id {pid!r}"})
            continue
        seen.add(pid)
        prompts.append(Prompt(pid, tuple(msgs), split))
    return PromptSet(name, prompts, problems)


def load(source: str | Path | None = None, default_split: str = "train") -> PromptSet:
    """``None`` or "bundled" is the bundled set; anything else is a JSONL path."""
    if source in (None, "", "bundled"):
        path, name = bundled_path(), "bundled"
    else:
        path, name = Path(source), Path(source).stem
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL in the path
        raise BadRequest(f"cannot read prompt set {str(path)[:300]}: {exc}") from None
    return parse_jsonl(text.splitlines(), name, default_split)


def require(prompts: list[Prompt], minimum: int, what: str) -> None:
    """Refuse an empty or tiny prompt set before any work starts."""
    if len(prompts) < minimum:
        raise BadRequest(f"the {what} has {len(prompts)} prompt(s); this round needs at least "
                         f"{minimum}. Import more prompts or lower the setting that asks for them.")


def report_problems(pset: PromptSet, state) -> None:
    """Skipped lines are not silent: one log line each (the first 20) and a count."""
    if not pset.problems:
        return
    state.log(f"{len(pset.problems)} line(s) of prompt set {pset.name} skipped", "warning")
    for p in pset.problems[:20]:
        state.log(f"  line {p['line']}: {p['reason']}", "warning")


def summary(pset: PromptSet) -> dict:
    return {"name": pset.name, "digest": pset.digest(), "n_train": len(pset.split("train")),
            "n_heldout": len(pset.split("heldout")), "problems": pset.problems}


def canary_dialogues() -> list[list[dict]]:
    """Held-out human-like chats (written by us) whose perplexity tracks drift."""
    out = []
    for line in canary_path().read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line)["messages"])
    return out
