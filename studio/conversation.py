"""The compare view's conversation as plain data: turns, their two replies, ratings.

Model A and model B each keep their own thread (A's history holds A's own
replies); a turn records on which side A was shown (``a_side``), so the panes
can show each turn's replies on the side they were shown on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SLOTS = ("a", "b")
SIDES = ("left", "right")
FINISHED = ("done", "cancelled")
LIVE = ("waiting", "streaming")


def other_side(side: str) -> str:
    return "right" if side == "left" else "left"


def spec_label(spec: dict | None, adapter_names=None) -> str:
    """A short human name for a model spec: file or folder name plus adapter (its name
    from the store when ``adapter_names``, an engine.results.names.AdapterNames, is given)."""
    spec = spec or {}
    source = spec.get("source") or "bundled"
    name = "SmolLM2-135M-Instruct" if source == "bundled" else Path(source).name or source
    if name.lower().endswith(".gguf"):
        name = name[:-5]
    adapter = spec.get("adapter")
    if adapter:
        name += f" + {adapter_names.name(adapter) if adapter_names else Path(adapter).name or adapter}"
    backend = spec.get("backend") or "auto"
    if backend != "auto":
        name += f" [{'llama.cpp' if backend == 'llamacpp' else backend}]"
    return name


@dataclass
class Reply:
    """One model's reply to one turn, as the studio last saw it."""

    slot: str
    side: str
    model_label: str
    text: str = ""
    status: str = "waiting"  # waiting|streaming|done|cancelled|error|interrupted
    finish_reason: str = ""
    stats: dict = field(default_factory=dict)
    reply_id: str | None = None
    error: str = ""
    request_id: str | None = None
    looping: bool = False  # the engine's loop flag (engine/scoring/loops.py)
    loop_reason: str | None = None

    @property
    def live(self) -> bool:
        return self.status in LIVE

    @property
    def finished(self) -> bool:
        return self.status in FINISHED and bool(self.reply_id)

    def stats_line(self) -> str:
        """TTFT, speed, token count and why it ended, for the line under a reply."""
        if self.status in ("error", "interrupted"):
            return ""  # the error box under the reply says what happened
        if self.live:
            return "waiting for the first token…" if not self.text else "streaming…"
        parts = []
        s = self.stats
        if s.get("ttft_ms") is not None:
            parts.append(f"TTFT {s['ttft_ms']:.0f} ms")
        if s.get("tok_s"):
            parts.append(f"{s['tok_s']:.1f} tok/s")
        if s.get("completion_tokens") is not None:
            parts.append(f"{s['completion_tokens']} tokens")
        reason = {"stop": "finished", "length": "hit max tokens",
                  "cancelled": "stopped by you"}.get(self.finish_reason, self.finish_reason)
        if reason:
            parts.append(reason)
        return "  ·  ".join(parts)


@dataclass
class Turn:
    """One prompt sent to both models, and what each answered."""

    id: str
    idx: int
    prompt: str
    blind: bool
    a_side: str
    replies: dict[str, Reply] = field(default_factory=dict)
    rating: dict | None = None
    sampling: dict = field(default_factory=dict)
    rating_stale: bool = False  # a reply was regenerated after the rating

    def slot_on(self, side: str) -> str:
        return "a" if side == self.a_side else "b"

    def side_of(self, slot: str) -> str:
        return self.a_side if slot == "a" else other_side(self.a_side)

    def reply_on(self, side: str) -> Reply | None:
        return self.replies.get(self.slot_on(side))

    @property
    def revealed(self) -> bool:
        """Names show unless the turn is blind and not yet rated."""
        return not self.blind or self.rating is not None

    @property
    def complete(self) -> bool:
        return all(self.replies.get(s) is not None and self.replies[s].finished for s in SLOTS)

    @property
    def live(self) -> bool:
        return any(r.live for r in self.replies.values())


def thread_for(turns: list[Turn], slot: str, upto: int, prompt: str) -> list[dict]:
    """The message history model ``slot`` sees: its own earlier replies only."""
    messages: list[dict] = []
    for turn in turns[:upto]:
        messages.append({"role": "user", "content": turn.prompt})
        reply = turn.replies.get(slot)
        if reply is not None and reply.status in FINISHED and reply.text:
            messages.append({"role": "assistant", "content": reply.text})
    messages.append({"role": "user", "content": prompt})
    return messages


def turns_from_store(conv: dict) -> list[Turn]:
    """Rebuild a conversation read with ``Store.conversation``."""
    turns = []
    for row in conv.get("turns", []):
        turn = Turn(id=row["id"], idx=row["idx"], prompt=row["prompt"], blind=bool(row["blind"]),
                    a_side=row["a_side"] or "left", rating=row.get("rating"))
        for slot in SLOTS:
            rep = row.get("replies", {}).get(slot)
            if rep is None:
                turn.replies[slot] = Reply(slot=slot, side=turn.side_of(slot),
                                           model_label=spec_label(conv.get(f"model_{slot}")),
                                           status="interrupted")
                continue
            stats = {k: rep.get(k) for k in ("ttft_ms", "tok_s", "completion_tokens",
                                              "prompt_tokens", "total_ms")}
            turn.replies[slot] = Reply(
                slot=slot, side=rep.get("side") or turn.side_of(slot),
                model_label=spec_label(rep.get("model_spec")), text=rep.get("text") or "",
                status=rep.get("status") or "done", finish_reason=rep.get("finish_reason") or "",
                stats=stats, reply_id=rep["id"], error=rep.get("error") or "",
                looping=bool(rep.get("looping")), loop_reason=rep.get("loop_reason"))
            turn.sampling = rep.get("sampling") if isinstance(rep.get("sampling"), dict) else {}
        if turn.rating is not None:  # rated before a reply was regenerated
            current = {r.reply_id for r in turn.replies.values()}
            turn.rating_stale = {turn.rating.get("left_reply_id"),
                                 turn.rating.get("right_reply_id")} != current
        turns.append(turn)
    return turns
