"""A rating given while another program holds the store (a long import, say) is not
lost and does not freeze the window for 30 s: it is queued on disk, the bar says so,
and it lands in the store by itself once the store is free."""

import sqlite3
import time

import pytest
from PySide6.QtCore import Qt

from engine import store as store_module
from engine.store import Store

pytestmark = pytest.mark.timeout(90)


def test_a_rating_during_a_locked_store_is_queued_then_saved(qtbot, make_window, store, monkeypatch):
    monkeypatch.setattr(store_module, "RATE_WAIT_S", 0.5)
    window = make_window()
    window.prompt.setFocus()
    window.prompt.setPlainText("hi there")
    qtbot.keyClick(window.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.session.latest is not None and not window.session.latest.live,
                    timeout=15000)
    turn = window.session.latest
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program writing
    try:
        t0 = time.monotonic()
        qtbot.mouseClick(window.rating.buttons["likely_left"], Qt.MouseButton.LeftButton)
        assert time.monotonic() - t0 < 3  # not the old 30 s freeze
        assert window.rating.saved.text().startswith("⏳ queued") and "not saved" not in window.rating.saved.text()
        assert store.pending_writes() == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    qtbot.waitUntil(lambda: window.rating.saved.text().startswith("✓ saved"), timeout=10000)
    fresh = Store(store.path)
    assert fresh.rating_for_turn(turn.id)["verdict"] == "likely_left"
    assert fresh.pending_writes() == 0
    fresh.close()
