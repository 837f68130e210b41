"""The fake chat engine plus the REAL scoring commands, for the studio's score tests.

Generation is fake_engine's (fast, no model); ``score.*``, ``weights.*``,
``questionnaire.*`` and ``fit.run`` go to an in-process ``engine.server.Engine``
with ``engine.scoring.commands`` registered, on the same store. Knobs:
FAKE_SCORE_DELAY (seconds before a score.reply is handled).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))

import fake_engine  # noqa: E402

import engine.scoring.commands  # noqa: E402,F401  (registers the scoring commands)
from engine.server import COMMANDS, Engine  # noqa: E402

SCORE_DELAY = float(os.environ.get("FAKE_SCORE_DELAY", "0"))


class Out:
    """The real engine's writer, sharing the fake engine's lock so lines never interleave."""

    def write(self, data: bytes) -> int:
        with fake_engine.OUT_LOCK:
            sys.stdout.write(data.decode("utf-8"))
            sys.stdout.flush()
        return len(data)

    def flush(self) -> None:
        pass


REAL = Engine(Out(), store_path=os.environ.get("HAL_STUDIO_DB"))
OURS = ("score.", "weights.", "questionnaire.", "fit.")


def handle(msg: dict) -> bool:
    kind = msg["type"]
    if kind == "hello":
        fake_engine.emit("result", {"protocol": 1, "engine_version": "fake+scoring",
                                    "capabilities": ["generate", "load", *sorted(COMMANDS)],
                                    "pid": os.getpid()}, msg["id"])
        return True
    if kind.startswith(OURS) or (kind == "cancel" and (msg.get("content") or {}).get("target") in REAL.active_jobs()):
        line = json.dumps(msg).encode() + b"\n"
        if kind == "score.reply" and SCORE_DELAY:
            threading.Thread(target=lambda: (time.sleep(SCORE_DELAY), REAL.handle_line(line)), daemon=True).start()
        else:
            REAL.handle_line(line)
        return True
    return fake_engine.handle(msg)


def main() -> None:
    print("fake scoring engine ready", file=sys.stderr, flush=True)
    for line in sys.stdin:
        if line.strip() and not handle(json.loads(line)):
            break
    os._exit(0)


if __name__ == "__main__":
    main()
