"""kill -9 of the REAL engine process while it scores stored replies (the
lexical judge rating them, the rating cache and the ``scores`` rows being
written): no acknowledged score is lost, no half row exists, both SQLite files
pass integrity_check, and a fresh engine on the same data directory scores
everything, reusing the rows that were written and adding no duplicates."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

from engine.client import EngineProcess
from engine.store import Store

SPEC = {"source": "bundled", "adapter": None, "backend": "llamacpp"}
N_REPLIES, PER_COMMAND = 240, 8
WORDS = ["yeah", "honestly", "lol", "I think", "the weather", "my cat", "tbh", "work was", "so tired",
         "Certainly!", "As an AI", "here are", "three points", "great question", "ok", "hmm"]


def _seed(store: Store) -> list[str]:
    conv = store.create_conversation(SPEC, SPEC, {}, blind=False)
    ids = []
    for i in range(N_REPLIES):
        turn = store.add_turn(conv, f"prompt {i}: how was your day?", blind=False, a_side="left")
        text = " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(3 + i % 9)) + f" ({i})"
        ids.append(store.add_reply(turn, "a", "left", text, "stop", SPEC, {}, {"seed": i}, {}))
    return ids


def _engine(tmp_path) -> EngineProcess:
    eng = EngineProcess(env={"HAL_STUDIO_DATA": str(tmp_path), "HAL_STUDIO_DB": str(tmp_path / "s.db"),
                             "HAL_STUDIO_CACHE": str(tmp_path / "cache")})
    assert eng.request("hello", timeout=60).type == "result"
    return eng


def _integrity_ok(path) -> bool:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_kill_9_mid_scoring_loses_no_acknowledged_score_and_a_fresh_engine_finishes(tmp_path):
    store = Store(tmp_path / "s.db")
    ids = _seed(store)
    store.close()
    eng = _engine(tmp_path)
    try:
        chunks = [ids[i:i + PER_COMMAND] for i in range(0, len(ids), PER_COMMAND)]
        replies = [eng.send("score.reply", {"reply_ids": chunk, "judge": "lexical"}) for chunk in chunks]
        deadline = time.monotonic() + 120
        while sum(r.done.is_set() for r in replies) < 3 and time.monotonic() < deadline:
            time.sleep(0.002)
        os.kill(eng.pid, signal.SIGKILL)  # while the rest are rated and written
        eng.proc.wait(30)
        assert eng.proc.returncode == -signal.SIGKILL
    finally:
        eng.close()
    acked = {s["reply_id"]: s["score_id"] for r in replies if r.final is not None and r.final.type == "result"
             for s in r.final.content["scores"]}
    errors = [r.final.content for r in replies if r.final is not None and r.final.type == "error"]
    assert errors == []  # concurrent scoring commands share one connection without tripping each other
    assert 3 * PER_COMMAND <= len(acked) < N_REPLIES, "the kill did not land mid-scoring"

    assert _integrity_ok(tmp_path / "s.db")
    cache = tmp_path / "cache" / "ratings.sqlite3"
    assert cache.is_file() and _integrity_ok(cache)
    store = Store(tmp_path / "s.db")
    assert store.integrity_ok()
    rows = {r["id"]: r for r in store.db.query("SELECT * FROM scores")}
    assert set(acked.values()) <= set(rows)  # every acknowledged score is there
    for row in rows.values():  # and no row is half written
        assert row["reply_id"] in ids and row["score"] is not None and json.loads(row["traits"])
    written_before = len(rows)
    store.close()

    eng = _engine(tmp_path)
    try:
        final = eng.request("score.reply", {"reply_ids": ids, "judge": "lexical"}, timeout=120)
        assert final.type == "result", final.content
        scores = final.content["scores"]
        assert [s["reply_id"] for s in scores] == ids and all(s.get("score") is not None for s in scores)
        by_reply = {s["reply_id"]: s for s in scores}
        assert all(by_reply[r]["reused"] and by_reply[r]["score_id"] == acked[r] for r in acked)
        assert sum(s["reused"] for s in scores) == written_before
    finally:
        assert eng.close() == 0
    store = Store(tmp_path / "s.db")
    assert store.integrity_ok()
    per_reply = store.db.execute("SELECT reply_id, COUNT(*) FROM scores GROUP BY reply_id").fetchall()
    assert len(per_reply) == N_REPLIES and all(n == 1 for _, n in per_reply)  # no duplicates
    store.close()
