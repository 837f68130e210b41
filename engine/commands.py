"""The engine's chat commands: load a model, generate a reply, list models."""

from __future__ import annotations

from engine.errors import BadRequest
from engine.jobs import JobState
from engine.models.base import Sampling, build_messages
from engine.models.spec import ModelSpec, bundled_gguf_path
from engine.protocol import Message
from engine.scoring.loops import loop_reason
from engine.server import Engine, command
from engine.store import StoreQueued


@command("load")
def load(engine: Engine, msg: Message, state: JobState) -> dict:
    """Check and load a pane's model (and adapter) before the first prompt."""
    spec = ModelSpec.from_dict(msg.content.get("model"))
    state.progress(0, 1, "loading model", force=True)
    model, adapter = engine.models.get(spec)
    state.progress(1, 1, "loaded", force=True)
    return {"info": model.info(), "adapter": adapter}


@command("generate")
def generate(engine: Engine, msg: Message, state: JobState) -> dict:
    """Stream one reply; with ``persist`` the reply row is written with its provenance."""
    content = msg.content
    spec = ModelSpec.from_dict(content.get("model"))
    sampling = Sampling.from_dict(content.get("sampling"))
    messages = build_messages(content.get("messages"), sampling.system_prompt)
    persist = _persist_target(engine, content.get("persist"))
    model, adapter = engine.models.get(spec)
    info = model.info()
    result = model.generate(messages, sampling, adapter, state.token, state.cancelled)
    stats = {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
             "ttft_ms": round(result.ttft_s * 1000, 1), "tok_s": round(result.tok_s, 2),
             "total_ms": round(result.total_s * 1000, 1), **result.extra}
    reason = loop_reason(result.text)
    reply_id, queued = None, None
    if persist:
        try:
            reply_id = engine.store.add_reply(
                persist["turn_id"], str(persist.get("slot", "a")), str(persist.get("side", "left")),
                result.text, result.finish_reason, spec.to_dict(), info, sampling.to_dict(), stats,
                status="cancelled" if result.finish_reason == "cancelled" else "done")
        except StoreQueued as exc:  # another writer held the store: kept in its queue, not lost
            reply_id, queued = exc.row_id, str(exc)
            state.log(queued, "warning")
    out = {"text": result.text, "finish_reason": result.finish_reason, "reply_id": reply_id,
           "stats": stats, "model": info, "sampling": sampling.to_dict(),
           "looping": reason is not None, "loop_reason": reason}
    if queued:
        out["queued"] = queued
    return out


def _persist_target(engine: Engine, persist) -> dict | None:
    """Check where a reply will be written before any token is generated."""
    if persist is None:
        return None
    if not isinstance(persist, dict) or not isinstance(persist.get("turn_id"), str) or not persist["turn_id"]:
        raise BadRequest("persist needs turn_id, slot and side")
    if persist.get("slot", "a") not in ("a", "b") or persist.get("side", "left") not in ("left", "right"):
        raise BadRequest("persist.slot must be a or b, and persist.side left or right")
    if not engine.store.db.execute("SELECT 1 FROM turns WHERE id=?", [persist["turn_id"]]).fetchone():
        raise BadRequest(f"persist.turn_id {persist['turn_id'][:80]!r} is not a turn in the store")
    return persist


@command("models")
def models(engine: Engine, msg: Message, state: JobState) -> dict:
    try:
        bundled = str(bundled_gguf_path())
    except BadRequest:
        bundled = None
    except Exception as exc:
        bundled = None
        state.log(f"bundled model not found: {exc}", "warning")
    return {"bundled": bundled, "loaded": engine.models.loaded()}
