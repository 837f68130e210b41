"""A rating or a reply is never lost to a lock: a long import in another process lets
other writers in, and a store that stays locked queues the write on disk instead of
failing, and writes it, in order, once it is free."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.store import Store, StoreQueued

SPEC = {"source": "bundled", "adapter": None, "backend": "llamacpp"}
INFO = {"name": "SmolLM2", "backend": "llamacpp", "path": "/m.gguf", "chat_template_digest": "abc"}
SAMPLING = {"temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "seed": 7, "system_prompt": ""}
ROOT = Path(__file__).resolve().parents[2]


def a_turn(store):
    conv = store.create_conversation(SPEC, SPEC, SAMPLING, blind=False, title="t")
    turn = store.add_turn(conv, "hi there", blind=False, a_side="left")
    a = store.add_reply(turn, "a", "left", "hello!", "stop", SPEC, INFO, SAMPLING, {})
    b = store.add_reply(turn, "b", "right", "hey", "stop", SPEC, INFO, SAMPLING, {})
    return turn, a, b


def someone_writes(db) -> bool:
    """True while another connection holds the store's write lock."""
    conn = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def count(db, table):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def test_a_rating_and_a_reply_get_in_while_another_process_imports(tmp_path):
    db = tmp_path / "studio.sqlite3"
    store = Store(db)
    turn, a, b = a_turn(store)
    votes = tmp_path / "big.jsonl"
    n = 12000
    with votes.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"model_left": "HAL", "model_right": "Base", "verdict": "likely_left",
                                 "id": f"v{i}", "left_text": "hey " * 20, "right_text": "Hello. " * 20})
                     + "\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "ratings", "import", "--db", str(db),
                             str(votes)], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:  # until the import writes
            if someone_writes(db):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the import finished before the test could write beside it"
        t0 = time.monotonic()
        rating = store.rate(turn, a, b, "likely_left")
        rated_s = time.monotonic() - t0
        t0 = time.monotonic()
        reply = store.add_reply(turn, "a", "left", "regenerated", "stop", SPEC, INFO, SAMPLING, {})
        reply_s = time.monotonic() - t0
        still_importing = proc.poll() is None
        _out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert still_importing, "the import ended while we wrote: make the file larger"
    assert rated_s < 2.0 and reply_s < 2.0, (rated_s, reply_s)
    assert store.db["ratings"].get(rating)["verdict"] == "likely_left"
    assert store.db["replies"].get(reply)["text"] == "regenerated"
    assert count(db, "ratings") == n + 1 and store.pending_writes() == 0
    store.close()


@pytest.fixture
def locked(tmp_path):
    """A store and a second connection that holds its write lock until released."""
    store = Store(tmp_path / "studio.sqlite3")
    other = sqlite3.connect(store.path, isolation_level=None)

    class Lock:
        def take(self):
            other.execute("BEGIN IMMEDIATE")

        def free(self):
            other.execute("ROLLBACK")
    yield store, Lock()
    other.close()
    store.close()


def test_a_rating_the_store_cannot_take_is_queued_on_disk_then_written(locked):
    store, lock = locked
    turn, a, b = a_turn(store)
    lock.take()
    t0 = time.monotonic()
    with pytest.raises(StoreQueued, match="queue"):
        store.rate(turn, a, b, "certainly_left", note="keep me", wait_s=0.4)
    assert time.monotonic() - t0 < 3
    assert store.pending_writes() == 1 and store.rating_for_turn(turn) is None
    # the queue is on disk: another process (here a second Store) can write it
    other = Store(store.path.parent / "elsewhere.sqlite3")  # an unrelated store is untouched
    assert other.pending_writes() == 0
    other.close()
    lock.free()
    assert store.flush_pending() == (1, 0)
    row = store.rating_for_turn(turn)
    assert (row["verdict"], row["note"]) == ("certainly_left", "keep me")
    assert store.flush_pending() == (0, 0)


def test_a_reply_is_queued_and_a_rating_of_it_waits_behind_it(locked):
    store, lock = locked
    turn, a, b = a_turn(store)
    lock.take()
    with pytest.raises(StoreQueued) as got:
        store.add_reply(turn, "b", "right", "late reply", "stop", SPEC, INFO, SAMPLING, {}, wait_s=0.3)
    new_b = got.value.row_id
    assert new_b and store.pending_writes() == 1
    lock.free()
    # the store is free again, but the reply is still queued: the rating must not overtake it
    second = Store(store.path)  # the studio's own connection, as in the real app
    rating = second.rate(turn, a, new_b, "likely_right")
    assert second.db["replies"].get(new_b)["text"] == "late reply"
    assert second.db["ratings"].get(rating)["right_reply_id"] == new_b
    assert store.pending_writes() == 0
    second.close()


def test_a_later_rating_never_lands_before_an_earlier_queued_one(locked):
    store, lock = locked
    turn, a, b = a_turn(store)
    lock.take()
    with pytest.raises(StoreQueued):
        store.rate(turn, a, b, "tie", wait_s=0.2)
    lock.free()
    store.rate(turn, a, b, "certainly_right")  # written after the queued one: it wins
    assert store.rating_for_turn(turn)["verdict"] == "certainly_right"
    history = [json.loads(r["snapshot"])["verdict"] for r in store.db["rating_history"].rows]
    assert history == ["tie"]


def test_a_queued_write_that_can_never_go_in_is_kept_aside_not_dropped(locked):
    store, lock = locked
    turn, a, b = a_turn(store)
    lock.take()
    with pytest.raises(StoreQueued):
        store.rate(turn, a, "no-such-reply-id", "tie", wait_s=0.2)
    lock.free()
    assert store.flush_pending() == (0, 0)
    aside = (store.path.parent / (store.path.name + ".pending-failed.jsonl")).read_text()
    assert "no-such-reply-id" in aside and "not in the store" in aside
