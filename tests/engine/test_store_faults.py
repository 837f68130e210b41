"""The store under faults and across versions: a store from every released
schema opens with its rows intact; a read-only or full store says so in a
StoreError and is never corrupted; a newer schema is refused untouched."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from engine.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stores"


def test_a_fixture_is_kept_for_every_schema_version():
    """A new migration needs a new store_vN.sqlite (tests/fixtures/stores/build.py N)."""
    assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))
    for v in MIGRATIONS:
        assert (FIXTURES / f"store_v{v}.sqlite").is_file(), f"store_v{v}.sqlite missing"


@pytest.mark.parametrize("version", sorted(MIGRATIONS))
def test_an_old_store_opens_in_the_current_schema_with_its_rows(tmp_path, version):
    path = tmp_path / "old.sqlite"
    shutil.copy(FIXTURES / f"store_v{version}.sqlite", path)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(version)
    raw.close()
    store = Store(path)
    assert store.schema_version == SCHEMA_VERSION
    assert store.integrity_ok()
    conv = store.conversation("c1")
    assert conv["title"] == "old chat" and conv["sampling"] == {"seed": 7}
    turn = conv["turns"][0]
    assert turn["prompt"] == "hello there" and turn["a_side"] == "right"
    assert {s: r["text"] for s, r in turn["replies"].items()} == {"a": "hi!", "b": "hey, you"}
    rating = turn["rating"]
    assert (rating["verdict"], rating["note"], rating["left_reply_id"]) == ("likely_left", "sounds human", "r2")
    assert store.db["rating_history"].count == 1
    if version >= 2:
        assert store.db["scores"].get("s1")["score"] == 3.5
        assert store.db["adapters"].get("a1")["usable"] == 1
    if version >= 3:
        assert turn["prompt_set"] == "casual"
        assert store.db["repeat_ratings"].get("p1")["verdict"] == "likely_right"
    # every reply carries a loop flag and the sampling settings added in schema 4
    for row in store.db.query("SELECT * FROM replies"):
        sampling = json.loads(row["sampling"])
        assert row["looping"] in (0, 1) and sampling["seed"] == 7
        assert {k: sampling[k] for k in ("top_k", "repeat_penalty", "stop")} == (
            {"top_k": 40, "repeat_penalty": 1.2, "stop": ["User:"]} if row["id"] == "r3"
            else {"top_k": 0, "repeat_penalty": 1.0, "stop": []})
        assert row["looping"] == (row["text"] == "no no no no no")
    # schema 5: ratings carry their rater (NULL: the researcher); an LLM's rating of the
    # same turn sits beside the researcher's and is not "the turn's rating"
    assert store.db["ratings"].get("g1")["rater"] is None
    if version >= 5:
        assert store.db["ratings"].get("g2")["rater"] == "llm:qwen"
        assert store.rating_for_turn("t1", "llm:qwen")["id"] == "g2"
        assert store.db["blind_pairs"].get("p0a1b2c3d4e")["adapter_side"] == "B"
    # and the upgraded store takes new ratings
    store.rate("t1", "r1", "r2", "tie", blind=True, a_side="right")
    assert store.rating_for_turn("t1")["verdict"] == "tie"
    store.close()


def test_a_newer_schema_fixture_is_refused_untouched(tmp_path):
    path = tmp_path / "new.sqlite"
    shutil.copy(FIXTURES / f"store_v{SCHEMA_VERSION}.sqlite", path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", [str(SCHEMA_VERSION + 1)])
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer studio"):
        Store(path)
    assert path.read_bytes() == before
    assert not Path(str(path) + "-wal").exists() or Path(str(path) + "-wal").stat().st_size == 0


def _rated(store: Store) -> tuple[str, str, str, str]:
    conv = store.create_conversation({}, {}, {}, blind=False)
    turn = store.add_turn(conv, "p", blind=False, a_side="left")
    a = store.add_reply(turn, "a", "left", "x", "stop", {}, {}, {"seed": 1}, {})
    b = store.add_reply(turn, "b", "right", "y", "stop", {}, {}, {"seed": 1}, {})
    store.rate(turn, a, b, "tie", note="first")
    return conv, turn, a, b


def _every_write(store, conv, turn, a, b):
    rating_id = store.rating_for_turn(turn)["id"]
    big = "z" * 200_000
    return {
        "new conversation": lambda: store.create_conversation({}, {}, {"system_prompt": big}, blind=False),
        "new turn": lambda: store.add_turn(conv, big, blind=False, a_side="left"),
        "regenerated reply": lambda: store.add_reply(turn, "a", "left", big, "stop", {}, {}, {"seed": 1}, {}),
        "re-rating": lambda: store.rate(turn, b, a, "certainly_left", note=big),
        "note": lambda: store.set_note(rating_id, big),
    }


def _unchanged(store, turn, a, b):
    assert store.integrity_ok()
    rating = store.rating_for_turn(turn)
    assert (rating["verdict"], rating["note"], rating["left_reply_id"]) == ("tie", "first", a)
    current = {r["slot"]: r["id"] for r in store.db["replies"].rows_where("turn_id=? AND superseded=0", [turn])}
    assert current == {"a": a, "b": b}  # a failed regenerate must not hide the old reply


def test_disk_full_is_a_clear_store_error_and_nothing_is_corrupted(tmp_path):
    """SQLite's max_page_count stands in for a full disk (SQLITE_FULL)."""
    store = Store(tmp_path / "s.db")
    conv, turn, a, b = _rated(store)
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count={pages}")
    for what, write in _every_write(store, conv, turn, a, b).items():
        with pytest.raises(StoreError, match="disk is full"):
            write()
        _unchanged(store, turn, a, b)
    store.db.execute("PRAGMA max_page_count=1073741823")  # space freed: writing works again
    store.rate(turn, b, a, "likely_left")
    assert store.rating_for_turn(turn)["verdict"] == "likely_left"
    store.close()


def test_read_only_store_is_a_clear_store_error_and_nothing_changes(tmp_path):
    """query_only makes every write fail as on a read-only file (chmod cannot stop root)."""
    path = tmp_path / "s.db"
    store = Store(path)
    conv, turn, a, b = _rated(store)
    store.db.execute("PRAGMA query_only=ON")
    for what, write in _every_write(store, conv, turn, a, b).items():
        with pytest.raises(StoreError, match="read-only"):
            write()
    store.db.execute("PRAGMA query_only=OFF")
    _unchanged(store, turn, a, b)
    store.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod; the query_only test covers writes")
def test_read_only_data_dir_refuses_to_open_with_a_store_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="Cannot open"):
            Store(folder / "s.db")
    finally:
        folder.chmod(0o755)


def test_a_data_dir_that_cannot_be_made_is_a_store_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreError, match="Cannot open"):
        Store(tmp_path / "file" / "sub" / "s.db")
