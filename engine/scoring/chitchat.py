"""Contrastive dialogues from human chats: the real next turn against the
loaded model's reply to the same context, ready for ``hal fit``.

The human chats come from the ``chitchat-dataset`` package (BYU's Chit-Chat
Challenge, MIT licence: 7,168 two-person chats), which ships its data file
inside the package, so nothing is downloaded at run time. Any JSONL of chats
({"turns": [[speaker, text], ...]} per line) can stand in for it.

Each context yields two dialogues with one ``group`` (so cross-validation keeps
them together): the same earlier turns, then the responder's real message
(label human) or the model's (label ai). The rated speaker is the responder,
so their earlier turns in the context are shared by both sides; the default
context is short (3 messages) so the compared reply is most of what is rated.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from engine.errors import BadRequest, EngineError
from engine.scoring.dialogue import AI, HUMAN

PARTNER, RESPONDER = "A", "B"
SYSTEM = ("You are chatting casually with a stranger in a chat app. Reply with your next message only, "
          "as you would type it.")


def chitchat_file() -> Path:
    """The dataset.json shipped in ``chitchat_dataset``, found without importing it."""
    spec = importlib.util.find_spec("chitchat_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise BadRequest("the chitchat-dataset package is not installed", detail="pip install chitchat-dataset")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "dataset.json"
        if path.is_file():
            return path
    raise BadRequest("the chitchat-dataset package holds no dataset.json")


def chitchat_chats(path: Path | None = None) -> list[tuple[str, list[tuple[str, str]]]]:
    """(chat id, [(sender, message text)]) with each sender's burst of lines joined by spaces."""
    raw = json.loads((path or chitchat_file()).read_text(encoding="utf-8"))
    chats = []
    for chat_id, chat in raw.items():
        turns: list[tuple[str, str]] = []
        for message in chat.get("messages") or []:
            parts = [u for u in message if isinstance(u, dict) and str(u.get("text", "")).strip()]
            if not parts:
                continue
            sender = str(parts[0].get("sender", ""))
            text = " ".join(" ".join(str(u["text"]).split()) for u in parts)
            if turns and turns[-1][0] == sender:  # two bursts in a row: one turn
                turns[-1] = (sender, turns[-1][1] + " " + text)
            else:
                turns.append((sender, text))
        chats.append((str(chat_id), turns))
    return chats


def jsonl_chats(path: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """Chats from a JSONL file: {"id"?, "turns": [[speaker, text], ...]} per line."""
    chats = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                turns = [(str(s), " ".join(str(t).split())) for s, t in obj["turns"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise BadRequest(f"{path}: line {lineno} is not a chat ({exc})") from None
            chats.append((str(obj.get("id") or f"line{lineno}"), [t for t in turns if t[1]]))
    return chats


@dataclass
class Context:
    """Earlier messages (speaker, text) and the responder's real next message."""

    group: str
    turns: list[tuple[str, str]]
    human_reply: str
    source: str


def pick_contexts(chats: list[tuple[str, list[tuple[str, str]]]], n: int, context: int = 3, seed: int = 0,
                  max_reply_chars: int = 400) -> list[Context]:
    """``n`` contexts from distinct chats, drawn reproducibly by ``seed``.

    A cut point needs ``context`` earlier messages ending with the partner's,
    and a real reply short enough to be a chat message.
    """
    rng = random.Random(seed)
    order = list(range(len(chats)))
    rng.shuffle(order)
    out: list[Context] = []
    for index in order:
        chat_id, turns = chats[index]
        cuts = [k for k in range(context, len(turns))
                if turns[k][0] != turns[k - 1][0] and 0 < len(turns[k][1]) <= max_reply_chars]
        if not cuts:
            continue
        k = rng.choice(cuts)
        responder = turns[k][0]
        names = {responder: RESPONDER}
        earlier = [(names.get(s, PARTNER), t) for s, t in turns[k - context:k]]
        out.append(Context(group=f"cc-{chat_id[:8]}-{k}", turns=earlier, human_reply=turns[k][1],
                           source=f"{chat_id}#{k}"))
        if len(out) >= n:
            break
    return out


def _messages(ctx: Context, system: str | None = None) -> list[dict]:
    """The context from the responder's side: the partner is the user."""
    msgs = [{"role": "system", "content": system or SYSTEM}]
    for speaker, text in ctx.turns:
        role = "assistant" if speaker == RESPONDER else "user"
        if msgs[-1]["role"] == role:
            msgs[-1] = {"role": role, "content": msgs[-1]["content"] + "\n" + text}
        else:
            msgs.append({"role": role, "content": text})
    return msgs


def build_contrast(contexts: Iterable[Context], model, *, temperature: float = 0.7, top_p: float = 0.9,
                   max_tokens: int = 60, seed: int = 0, progress: Callable[[int, int], None] | None = None,
                   system: str | None = None):
    """Yield ``(records, problem)`` per context: two JSONL records (human, ai)
    or a reason the context was skipped (an empty or failed generation)."""
    from engine.models.base import Sampling

    contexts = list(contexts)
    info = model.info() if hasattr(model, "info") else {}
    for i, ctx in enumerate(contexts):
        if progress and i:
            progress(i, len(contexts))
        item_seed = (seed * 1_000_003 + int(hashlib.sha256(ctx.group.encode()).hexdigest()[:8], 16)) % (2**31 - 1)
        sampling = Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=item_seed)
        try:
            result = model.generate(_messages(ctx, system), sampling, None, lambda _t: None, lambda: False)
            reply = " ".join(result.text.split())
        except EngineError as exc:
            yield None, f"{ctx.group}: generation failed ({exc.message})"
            continue
        if not reply:
            yield None, f"{ctx.group}: the model's reply was empty"
            continue
        turns = [list(t) for t in ctx.turns]
        meta = {"source": "chitchat", "context": ctx.source, **({"system": system} if system else {})}
        ai_meta = {**meta, "ai_model": info.get("name") or str(getattr(model, "path", "")),
                   "backend": getattr(model, "backend", ""), "sampling": sampling.to_dict(),
                   "chat_template_digest": info.get("chat_template_digest"), "finish_reason": result.finish_reason}
        yield [
            {"id": f"{ctx.group}-human", "turns": turns + [[RESPONDER, ctx.human_reply]], "rated_speaker": RESPONDER,
             "label": HUMAN, "group": ctx.group, "meta": meta},
            {"id": f"{ctx.group}-ai", "turns": turns + [[RESPONDER, reply]], "rated_speaker": RESPONDER,
             "label": AI, "group": ctx.group, "meta": ai_meta},
        ], None
    if progress and contexts:
        progress(len(contexts), len(contexts))


def write_contrast(out: Path, n: int, model, source: str = "chitchat", context: int = 3, seed: int = 0,
                   **sampling) -> dict:
    """Build ``n`` pairs and write them as JSONL; returns counts and the problems."""
    chats = chitchat_chats() if source == "chitchat" else jsonl_chats(Path(source))
    contexts = pick_contexts(chats, n, context=context, seed=seed)
    written, problems = 0, []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".part")
    with open(tmp, "w", encoding="utf-8") as fh:
        for records, problem in build_contrast(contexts, model, seed=seed, **sampling):
            if problem:
                problems.append(problem)
                continue
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            written += 1
    tmp.replace(out)
    return {"out": str(out), "pairs": written, "dialogues": 2 * written, "asked": n,
            "contexts_found": len(contexts), "problems": problems, "source": source}
