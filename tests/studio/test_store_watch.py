"""The studio says at once when its store's WAL is deleted or its file replaced (issue 11)."""

from __future__ import annotations

from pathlib import Path


def test_a_deleted_wal_shows_at_once_and_the_next_rating_is_not_acknowledged(qtbot, make_window, store):
    window = make_window()
    cid = store.create_conversation({"source": "a"}, {"source": "b"}, {}, False)
    store.add_turn(cid, "hi", False, "left")
    assert window.check_store_files() == ""
    Path(str(store.path) + "-wal").unlink()
    qtbot.waitUntil(lambda: "not saved" in window.rating.saved.text(), timeout=6000)  # the watch timer
    assert "was deleted" in window.rating.saved.text()
    assert "was deleted" in window.statusBar().currentMessage()
