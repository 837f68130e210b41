"""A tiny stand-in engine speaking the wire protocol, for the studio's tests.

Run as a script. It answers hello, load, generate (streaming words, honouring
cancel, writing the reply row when ``persist`` is given), cancel and shutdown.
Knobs (environment): FAKE_PROTOCOL (hello's protocol number), FAKE_TOKEN_DELAY
(seconds between tokens), FAKE_ENVELOPE_V (the envelope's ``v``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from engine.scoring.loops import loop_reason
from engine.store import Store

OUT_LOCK = threading.Lock()
CANCELS: dict[str, threading.Event] = {}
DELAY = float(os.environ.get("FAKE_TOKEN_DELAY", "0.005"))
ENVELOPE_V = int(os.environ.get("FAKE_ENVELOPE_V", "1"))
_store: Store | None = None


def emit(type_: str, content: dict, parent: str | None) -> None:
    line = json.dumps({"v": ENVELOPE_V, "id": os.urandom(6).hex(), "type": type_,
                       "parent": parent, "content": content})
    with OUT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def store() -> Store:
    global _store
    if _store is None:
        _store = Store(os.environ.get("HAL_STUDIO_DB"))
    return _store


def model_name(spec: dict) -> str:
    source = (spec or {}).get("source") or "bundled"
    return "bundled" if source == "bundled" else os.path.basename(source)


def generate(msg: dict) -> None:
    content = msg["content"]
    spec = content.get("model") or {}
    messages = content.get("messages") or []
    sampling = content.get("sampling") or {}
    prompt = messages[-1]["content"] if messages else ""
    if "TOO LONG" in prompt:
        emit("error", {"kind": "prompt_too_long", "message": "The prompt needs 9000 tokens but "
                       "the model's context holds 4096.", "detail": ""}, msg["id"])
        return
    n_assistant = sum(1 for m in messages if m["role"] == "assistant")
    words = f"{model_name(spec)} answers ({n_assistant} before): {prompt}".split(" ")
    limit = max(1, min(int(sampling.get("max_tokens", 256)), 40))
    words = (words + ["more"] * limit)[:limit]
    cancel = CANCELS.setdefault(msg["id"], threading.Event())
    start = time.monotonic()
    text, finish = "", "stop"
    for i, word in enumerate(words):
        if cancel.is_set():
            finish = "cancelled"
            break
        piece = word if i == 0 else " " + word
        text += piece
        emit("token", {"text": piece}, msg["id"])
        time.sleep(DELAY)
    total = time.monotonic() - start
    stats = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
             "ttft_ms": 12.0, "tok_s": 99.0, "total_ms": round(total * 1000, 1)}
    info = {"name": model_name(spec), "backend": "fake", "path": spec.get("source", "")}
    reply_id = None
    persist = content.get("persist")
    if persist:
        reply_id = store().add_reply(persist["turn_id"], persist["slot"], persist["side"], text,
                                     finish, spec, info, sampling, stats,
                                     status="cancelled" if finish == "cancelled" else "done")
    reason = loop_reason(text)  # as the real engine does (engine/commands.py)
    emit("result", {"text": text, "finish_reason": finish, "reply_id": reply_id,
                    "stats": stats, "model": info, "looping": reason is not None,
                    "loop_reason": reason}, msg["id"])


def handle(msg: dict) -> bool:
    kind, mid, content = msg["type"], msg["id"], msg.get("content") or {}
    if kind == "hello":
        emit("result", {"protocol": int(os.environ.get("FAKE_PROTOCOL", "1")),
                        "engine_version": "fake", "capabilities": ["generate", "load"],
                        "pid": os.getpid()}, mid)
    elif kind == "load":
        source = (content.get("model") or {}).get("source") or "bundled"
        if "broken" in source:
            emit("error", {"kind": "model_invalid", "message": f"{os.path.basename(source)} is "
                           "not a GGUF model file (it does not start with the GGUF signature).",
                           "detail": ""}, mid)
        else:
            emit("result", {"info": {"name": model_name(content.get("model")), "backend": "fake",
                                     "n_ctx": 2048}}, mid)
    elif kind == "generate":
        CANCELS[mid] = threading.Event()
        threading.Thread(target=generate, args=(msg,), daemon=True).start()
    elif kind == "cancel":
        event = CANCELS.get(content.get("target"))
        if event:
            event.set()
        emit("result", {"found": event is not None}, mid)
    elif kind == "shutdown":
        emit("result", {}, mid)
        return False
    else:
        emit("error", {"kind": "unknown_type", "message": kind, "detail": ""}, mid)
    return True


def main() -> None:
    print("fake engine ready", file=sys.stderr, flush=True)
    for line in sys.stdin:
        if line.strip() and not handle(json.loads(line)):
            break
    os._exit(0)


if __name__ == "__main__":
    main()
