"""Score badges and the breakdown, on the fake chat engine with the real scoring commands."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from studio.breakdown_view import BreakdownDialog, breakdown_rows

pytestmark = pytest.mark.timeout(240)
SCORING_ENGINE = Path(__file__).with_name("fake_score_engine.py")
BADGE = re.compile(r"^HL -?\d+\.\d\d · p [01]\.\d\d$")


@pytest.fixture
def score_window(qtbot, store, data_dir):
    from studio.engine_client import EngineClient
    from studio.main_window import MainWindow
    from studio.prefs import Prefs

    made = []

    def make(engine_script=SCORING_ENGINE, **env):
        client = EngineClient(command=[sys.executable, str(engine_script)],
                              env={"HAL_STUDIO_DB": str(store.path), **env}, hello_timeout_s=30)
        window = MainWindow(client, store, Prefs(data_dir / "prefs.json"))
        qtbot.addWidget(window)
        window.show()
        client.start()
        qtbot.waitUntil(lambda: client.state == "ready", timeout=60000)
        made.append(window)
        return window

    yield make
    for window in made:
        window.client.shutdown(wait_ms=2000)


def send_and_wait(qtbot, window, text):
    window.prompt.setPlainText(text)
    window.on_submit()
    qtbot.waitUntil(lambda: window.session.latest is not None and not window.session.latest.live, timeout=45000)
    return window.session.latest


def badges(window, idx=-1):
    return {side: window.panes[side].views[idx].badge for side in ("left", "right")}


def wait_scored(qtbot, window, idx=-1):
    qtbot.waitUntil(lambda: all(BADGE.match(b.text()) for b in badges(window, idx).values()), timeout=60000)
    return badges(window, idx)


def test_finished_replies_get_a_badge_and_a_stored_score(qtbot, score_window, store):
    window = score_window(FAKE_SCORE_DELAY="0.3")
    send_and_wait(qtbot, window, "hey, what's up?")
    qtbot.waitUntil(lambda: badges(window)["left"].text() in ("HL …",) or BADGE.match(badges(window)["left"].text()),
                    timeout=5000)
    found = wait_scored(qtbot, window)
    for side, badge in found.items():
        assert badge.isVisible() and badge.isEnabled()
        # a fresh machine with no reference data: the shipped fit on the judge's own ratings, not amber
        assert badge.property("tone") == "ok"
        assert "hal16_published@1" in badge.toolTip() and "distilled to reproduce" in badge.toolTip()
    turn = window.session.latest
    ids = {r.reply_id for r in turn.replies.values()}
    rows = store.db.execute("SELECT reply_id, judge, weights FROM scores").fetchall()
    assert {r[0] for r in rows} == ids and all(r[1] == "distilled:gpt5-turing" for r in rows)
    assert "TTFT 12 ms" in window.panes["left"].views[0].stats.text()  # the stats line is intact


def test_a_click_opens_the_breakdown_with_both_replies_and_the_difference(qtbot, score_window):
    window = score_window()
    send_and_wait(qtbot, window, "Tell me about your weekend plans")
    found = wait_scored(qtbot, window)
    qtbot.mouseClick(found["left"], Qt.MouseButton.LeftButton)
    dialog = window.findChild(BreakdownDialog)
    assert dialog is not None and dialog.isVisible()
    view = dialog.view
    tracker = window.session.scores
    turn = window.session.latest
    left, right = (tracker.get(turn.reply_on(s).reply_id) for s in ("left", "right"))
    # the default weights' questionnaire is the paper's 16 traits, each rated and weighted
    assert len(view.rows) == 16 and view.table.rowCount() == 16
    assert sum(r["diff"] for r in view.rows) == pytest.approx(left["score"] - right["score"], abs=1e-6)
    assert all(r["weight"] is not None and r["rating_left"] is not None for r in view.rows)
    assert "hal16_published@1" in view.note.text() and "Model A" in view.cards["left"].text()
    assert "Score gap" in view.gap.text()
    view.order.setCurrentIndex(2)  # by trait id
    assert [r["id"] for r in view.rows][:3] == ["1", "2", "3"]
    # the same dialog is reused for another turn
    send_and_wait(qtbot, window, "and after that?")
    wait_scored(qtbot, window)
    qtbot.mouseClick(badges(window)["right"], Qt.MouseButton.LeftButton)
    assert window.findChildren(BreakdownDialog) == [dialog] and dialog.idx == 1


def test_blind_turns_hide_the_score_until_rated(qtbot, score_window):
    window = score_window()
    window.blind_toggle.setChecked(True)
    turn = send_and_wait(qtbot, window, "hi there")
    qtbot.waitUntil(lambda: all(r.reply_id in window.session.scores.entries for r in turn.replies.values()),
                    timeout=60000)
    for badge in badges(window).values():
        assert badge.text() == "HL after rating" and not badge.isEnabled()
    window.on_rated("tie", "")
    for badge in wait_scored(qtbot, window).values():
        assert badge.isEnabled()


def test_reopened_conversations_are_scored_from_stored_rows(qtbot, score_window, store):
    window = score_window()
    send_and_wait(qtbot, window, "first")
    wait_scored(qtbot, window)
    conv_id = window.session.conversation_id
    window.session.new_conversation()
    window.session.scores.entries.clear()
    window.on_open_conversation(conv_id)
    wait_scored(qtbot, window, 0)
    entries = [window.session.scores.get(r.reply_id) for r in window.session.turns[0].replies.values()]
    assert all(e["reused"] for e in entries)
    assert store.db.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 2


def test_an_engine_without_scoring_shows_no_badges(qtbot, score_window):
    window = score_window(Path(__file__).with_name("fake_engine.py"))
    send_and_wait(qtbot, window, "hello")
    qtbot.wait(200)
    assert not any(b.isVisible() for b in badges(window).values())


def test_breakdown_rows_from_hand_made_scores():
    left = {"score": 1.0, "probability": 0.73, "traits": {"1": 5.0, "2": None, "3": 2.0},
            "weights_used": {"1": 0.5, "2": 1.0}, "contributions": {"1": 2.5, "2": 3.0},
            "shares": {"1": 0.45, "2": 0.55}, "missing": [2]}
    right = {"score": 0.0, "probability": 0.5, "traits": {"1": 1.0, "2": 4.0, "3": 4.0},
             "weights_used": {"1": 0.5, "2": 1.0}, "contributions": {"1": 0.5, "2": 4.0},
             "shares": {"1": 0.11, "2": 0.89}, "missing": []}
    names = {"1": {"name": "brevity", "theme": "form"}}
    rows = breakdown_rows(left, right, names)
    assert [r["id"] for r in rows] == ["1", "2", "3"]  # |Δ| 2.0, then 1.0, then no weight
    assert rows[0]["diff"] == pytest.approx(2.0) and rows[0]["name"] == "brevity"
    assert rows[1]["imputed_left"] and not rows[1]["imputed_right"] and rows[1]["rating_left"] is None
    assert rows[2]["weight"] is None and rows[2]["diff"] is None and rows[2]["name"] == "trait 3"
    failed = breakdown_rows(left, {"error": {"message": "empty"}}, names)
    assert all(r["diff"] is None and r["rating_right"] is None for r in failed)
