"""The ratings store: provenance on every row, ratings durable, schema guarded."""

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from engine.store import SCHEMA_VERSION, Store, StoreError

SPEC = {"source": "bundled", "adapter": None, "backend": "llamacpp"}
INFO = {"name": "SmolLM2", "backend": "llamacpp", "path": "/m.gguf", "chat_template_digest": "abc"}
SAMPLING = {"temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "seed": 7, "system_prompt": ""}
STATS = {"prompt_tokens": 10, "completion_tokens": 20, "ttft_ms": 30.0, "tok_s": 100.0, "total_ms": 250.0}


def turn_with_replies(store, blind=False, a_side="left"):
    conv = store.create_conversation(SPEC, SPEC, SAMPLING, blind=blind, title="t")
    turn = store.add_turn(conv, "hi there", blind=blind, a_side=a_side)
    a = store.add_reply(turn, "a", a_side, "hello!", "stop", SPEC, INFO, SAMPLING, STATS)
    b = store.add_reply(turn, "b", "right" if a_side == "left" else "left", "hey", "stop",
                        SPEC, INFO, SAMPLING, STATS)
    return conv, turn, a, b


def test_every_stored_reply_carries_a_loop_flag(tmp_path):
    store = Store(tmp_path / "s.db")
    conv = store.create_conversation(SPEC, SPEC, SAMPLING, blind=False, title="t")
    turn = store.add_turn(conv, "hi", blind=False, a_side="left")
    fine = store.add_reply(turn, "a", "left", "hey! not much, you?", "stop", SPEC, INFO, SAMPLING, STATS)
    loop = store.add_reply(turn, "b", "right", "I see. " * 12, "length", SPEC, INFO,
                           {**SAMPLING, "top_k": 40, "stop": ["User:"]}, STATS)
    assert (store.reply(fine)["looping"], store.reply(fine)["loop_reason"]) == (0, None)
    row = store.reply(loop)
    assert row["looping"] == 1 and row["loop_reason"].startswith("repeated_phrase")
    assert row["sampling"]["top_k"] == 40 and row["sampling"]["stop"] == ["User:"]


def test_replies_inserted_without_a_flag_get_one(tmp_path):
    store = Store(tmp_path / "s.db")
    _, turn, a, _ = turn_with_replies(store)
    store.db.execute("INSERT INTO replies (id, turn_id, slot, side, status, text, superseded) "
                     "VALUES ('raw', ?, 'a', 'left', 'done', 'lol lol lol lol lol lol', 1)", [turn])
    assert store.reply("raw")["looping"] == 1  # a reader computes it
    assert store.db.execute("SELECT looping FROM replies WHERE id='raw'").fetchone()[0] is None
    assert store.flag_loops() == 1  # and the next open (or this call) stores it
    assert store.db.execute("SELECT looping, loop_reason FROM replies WHERE id='raw'").fetchone()[1].startswith(
        "word_run")
    assert store.flag_loops() == 0 and store.reply(a)["looping"] == 0


def test_wal_and_schema_version(tmp_path):
    store = Store(tmp_path / "s.db")
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.schema_version == SCHEMA_VERSION
    assert store.integrity_ok()


def test_reply_rows_record_how_they_were_made(tmp_path):
    store = Store(tmp_path / "s.db")
    _, _, a, _ = turn_with_replies(store)
    row = store.reply(a)
    assert row["model_name"] == "SmolLM2" and row["backend"] == "llamacpp"
    assert row["chat_template_digest"] == "abc" and row["seed"] == 7
    assert row["sampling"]["temperature"] == 0.7 and row["ttft_ms"] == 30.0
    assert row["model_spec"] == SPEC


def test_rating_points_at_replies_and_sides_and_rerating_keeps_history(tmp_path):
    store = Store(tmp_path / "s.db")
    conv, turn, a, b = turn_with_replies(store, blind=True, a_side="right")
    rid = store.rate(turn, b, a, "likely_left", note="b sounds human", blind=True, a_side="right")
    again = store.rate(turn, b, a, "certainly_left", blind=True, a_side="right")
    assert rid == again
    rating = store.rating_for_turn(turn)
    assert (rating["left_reply_id"], rating["right_reply_id"], rating["verdict"]) == (b, a, "certainly_left")
    assert rating["blind"] == 1 and rating["a_side"] == "right"
    history = list(store.db["rating_history"].rows)
    assert len(history) == 1 and '"likely_left"' in history[0]["snapshot"]
    detail = store.conversation(conv)
    assert detail["turns"][0]["rating"]["verdict"] == "certainly_left"
    assert set(detail["turns"][0]["replies"]) == {"a", "b"}


def test_regenerated_reply_supersedes_the_old_one(tmp_path):
    store = Store(tmp_path / "s.db")
    conv, turn, a, _ = turn_with_replies(store)
    a2 = store.add_reply(turn, "a", "left", "second try", "stop", SPEC, INFO, SAMPLING, STATS)
    assert store.conversation(conv)["turns"][0]["replies"]["a"]["id"] == a2
    assert store.reply(a)["superseded"] == 1


def test_bad_verdict_and_unknown_reply_are_refused_and_nothing_changes(tmp_path):
    store = Store(tmp_path / "s.db")
    _, turn, a, b = turn_with_replies(store)
    with pytest.raises(ValueError):
        store.rate(turn, a, b, "meh")
    with pytest.raises(StoreError):
        store.rate(turn, a, "nope", "tie")
    assert store.rating_for_turn(turn) is None


def test_store_from_a_newer_schema_is_refused_untouched(tmp_path):
    path = tmp_path / "s.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer studio"):
        Store(path)
    assert path.read_bytes() == before


def test_a_rating_survives_kill_9_right_after_it_is_saved(tmp_path):
    """The writer is killed the moment rate() returns: the row must be there."""
    path = tmp_path / "s.db"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(tmp_path.parent)!r})
        from engine.store import Store
        s = Store({str(path)!r})
        c = s.create_conversation({{}}, {{}}, {{}}, blind=False)
        t = s.add_turn(c, "p", blind=False, a_side="left")
        spec = {{"source": "bundled"}}
        a = s.add_reply(t, "a", "left", "x", "stop", spec, {{}}, {{"seed": 1}}, {{}})
        b = s.add_reply(t, "b", "right", "y", "stop", spec, {{}}, {{"seed": 1}}, {{}})
        s.rate(t, a, b, "likely_right")
        print(t, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    turn = proc.stdout.strip()
    store = Store(path)
    assert store.integrity_ok()
    assert store.rating_for_turn(turn)["verdict"] == "likely_right"
