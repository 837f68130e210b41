"""The compare window on a fake engine: prompt, stream, rate, blind mode, crash, reopen."""

import os
import signal

import pytest
from PySide6.QtCore import Qt

from engine.store import Store

pytestmark = pytest.mark.timeout(60)


def send(qtbot, window, text):
    window.prompt.setFocus()
    window.prompt.setPlainText(text)
    qtbot.keyClick(window.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)


def wait_turn_done(qtbot, window, timeout=15000):
    qtbot.waitUntil(lambda: window.session.latest is not None
                    and not window.session.latest.live, timeout=timeout)
    return window.session.latest


def focus_away_from_text(qtbot, window):
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=3000)
    window.panes["left"].stop_button.setFocus()  # not a text field


def test_prompt_streams_to_both_panes_and_a_rating_lands_at_once(qtbot, make_window, store):
    window = make_window()
    send(qtbot, window, "How was your weekend?")
    assert window.prompt.toPlainText() == ""
    turn = wait_turn_done(qtbot, window)
    assert turn.complete
    for side in ("left", "right"):
        view = window.panes[side].views[0]
        assert "How was your weekend?" in view.reply.text()
        assert "TTFT 12 ms" in view.stats.text() and "tok/s" in view.stats.text()
    assert "Model A" in window.panes["left"].model_label.text()
    # the turn row and both reply rows exist, with the same seed for both panes
    conv = Store(store.path).conversation(window.session.conversation_id)
    assert [t["prompt"] for t in conv["turns"]] == ["How was your weekend?"]
    replies = conv["turns"][0]["replies"]
    assert replies["a"]["seed"] == replies["b"]["seed"]
    assert replies["a"]["side"] == "left" and replies["b"]["side"] == "right"
    focus_away_from_text(qtbot, window)
    qtbot.keyClick(window.panes["left"].stop_button, Qt.Key.Key_4)
    fresh = Store(store.path)  # another connection: it is on disk, no waiting
    rating = fresh.rating_for_turn(turn.id)
    assert rating["verdict"] == "likely_right" and rating["blind"] == 0
    assert rating["left_reply_id"] == turn.replies["a"].reply_id
    assert window.rating.saved.text().startswith("✓ saved")
    # re-rating replaces the verdict and keeps the old one in history
    qtbot.mouseClick(window.rating.buttons["tie"], Qt.MouseButton.LeftButton)
    assert fresh.rating_for_turn(turn.id)["verdict"] == "tie"
    assert fresh.db.execute("SELECT COUNT(*) FROM rating_history").fetchone()[0] == 1
    fresh.close()


def test_each_model_keeps_its_own_thread(qtbot, make_window):
    window = make_window()
    window.pickers["b"].set_spec({"source": "/models/other.gguf"}, emit=True)
    send(qtbot, window, "first")
    wait_turn_done(qtbot, window)
    send(qtbot, window, "second")
    turn = wait_turn_done(qtbot, window)
    assert turn.replies["a"].text.startswith("bundled answers (1 before): second")
    assert turn.replies["b"].text.startswith("other.gguf answers (1 before): second")
    from studio.conversation import thread_for

    thread_b = thread_for(window.session.turns, "b", 1, "second")
    assert [m["role"] for m in thread_b] == ["user", "assistant", "user"]
    assert thread_b[1]["content"].startswith("other.gguf answers")


def test_blind_mode_hides_names_until_rated_then_reveals(qtbot, make_window, store, monkeypatch):
    window = make_window()
    window.pickers["b"].set_spec({"source": "/models/other.gguf"}, emit=True)
    window.blind_toggle.setChecked(True)
    monkeypatch.setattr("studio.session.random.choice", lambda seq: "right")  # A goes right
    send(qtbot, window, "Tell me about your day")
    turn = wait_turn_done(qtbot, window)
    assert turn.a_side == "right"
    assert Store(store.path).conversation(window.session.conversation_id)["turns"][0]["a_side"] \
        == "right"
    left, right = window.panes["left"], window.panes["right"]
    assert left.views[0].reply.text().startswith("other.gguf answers")  # B shown left
    for pane in (left, right):
        shown = pane.model_label.text() + pane.views[0].model_caption.text()
        assert "Model ?" in shown and "other" not in shown and "SmolLM2" not in shown
    qtbot.mouseClick(window.rating.buttons["certainly_left"], Qt.MouseButton.LeftButton)
    rating = Store(store.path).rating_for_turn(turn.id)
    assert rating["verdict"] == "certainly_left" and rating["blind"] == 1
    assert rating["a_side"] == "right"
    assert rating["left_reply_id"] == turn.replies["b"].reply_id  # left was B
    assert left.views[0].model_caption.text().startswith("Model B · other")
    assert right.views[0].model_caption.text().startswith("Model A · SmolLM2")
    assert "Model B" in left.model_label.text()


def test_bad_model_and_too_long_prompt_show_the_engines_message(qtbot, make_window):
    window = make_window()
    picker = window.pickers["b"]
    picker.set_spec({"source": "/models/broken.gguf"}, emit=True)
    qtbot.waitUntil(lambda: picker.status.property("state") == "error", timeout=10000)
    assert "not a GGUF model file" in picker.status.text()
    send(qtbot, window, "TOO LONG " * 5)
    turn = wait_turn_done(qtbot, window)
    view = window.panes["left"].views[0]
    assert "context holds 4096" in view.error.text() and view.error.isVisible()
    assert turn.replies["a"].status == "error"
    assert not window.rating.is_enabled_for_rating()
    assert window.client.state == "ready"


def test_regenerate_replaces_one_pane(qtbot, make_window, store):
    window = make_window()
    send(qtbot, window, "hi")
    turn = wait_turn_done(qtbot, window)
    old_left, old_right = turn.reply_on("left").reply_id, turn.reply_on("right").reply_id
    qtbot.mouseClick(window.panes["left"].regen_button, Qt.MouseButton.LeftButton)
    turn = wait_turn_done(qtbot, window)
    assert turn.reply_on("left").reply_id != old_left
    assert turn.reply_on("right").reply_id == old_right
    rows = Store(store.path).db.execute("SELECT superseded FROM replies WHERE id=?",
                                        [old_left]).fetchone()
    assert rows[0] == 1


def test_stop_cancels_one_pane(qtbot, make_window):
    window = make_window(FAKE_TOKEN_DELAY="0.05")
    window.sampling.max_tokens.setValue(400)
    send(qtbot, window, "long one")
    qtbot.waitUntil(lambda: window.panes["right"].stop_button.isEnabled(), timeout=10000)
    qtbot.mouseClick(window.panes["right"].stop_button, Qt.MouseButton.LeftButton)
    turn = wait_turn_done(qtbot, window)
    assert turn.reply_on("right").finish_reason == "cancelled"
    assert "stopped by you" in window.panes["right"].views[0].stats.text()


def test_engine_crash_keeps_everything_and_restarts(qtbot, make_window, store):
    window = make_window(FAKE_TOKEN_DELAY="0.2")
    window.sampling.temperature.setValue(1.3)
    send(qtbot, window, "tell me a long story")
    qtbot.waitUntil(lambda: window.session.latest.replies["a"].status == "streaming",
                    timeout=10000)
    window.prompt.setPlainText("an unsent follow-up")
    os.kill(window.client.pid(), signal.SIGKILL)
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=10000)
    assert "The engine stopped (signal 9)." in window.banner.message.text()
    assert "Everything saved is kept" in window.banner.message.text()
    assert "Last engine output: fake engine ready" in window.banner.message.text()
    assert window.docks["log"].isVisible()
    assert "crashed" in window.engine_status.text()
    turn = window.session.latest
    assert {r.status for r in turn.replies.values()} == {"interrupted"}
    assert "Interrupted" in window.panes["left"].views[0].error.text()
    assert window.prompt.toPlainText() == "an unsent follow-up"
    assert window.sampling.temperature.value() == pytest.approx(1.3)
    assert Store(store.path).conversation(window.session.conversation_id)["turns"]
    window.on_submit()  # refused while down, text kept
    assert window.prompt.toPlainText() == "an unsent follow-up"
    qtbot.mouseClick(window.banner.restart_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.client.state == "ready", timeout=15000)
    assert not window.banner.isVisible()
    window.sampling.max_tokens.setValue(3)
    qtbot.mouseClick(window.panes["left"].regen_button, Qt.MouseButton.LeftButton)
    turn = wait_turn_done(qtbot, window, timeout=30000)
    assert turn.reply_on("left").status == "done"


def test_history_lists_and_reopens_a_conversation(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "remember me")
    turn = wait_turn_done(qtbot, window)
    qtbot.mouseClick(window.rating.buttons["likely_left"], Qt.MouseButton.LeftButton)
    conv_id = window.session.conversation_id
    window.on_new_conversation()
    assert window.session.turns == [] and window.panes["left"].views == []
    window.refresh_history()
    prompt, meta = window.history.row_texts(0)
    assert prompt == "remember me" and "1 turn  ·  1 rated" in meta
    window.history.sig_open_requested.emit(conv_id)
    assert window.session.conversation_id == conv_id
    assert window.panes["left"].views[0].reply.text() == turn.replies["a"].text
    assert window.rating.buttons["likely_left"].isChecked()
    send(qtbot, window, "and again")  # continuable
    turn2 = wait_turn_done(qtbot, window)
    assert turn2.idx == 1 and "(1 before)" in turn2.replies["a"].text


def test_regenerating_a_rated_turn_asks_for_a_new_rating(qtbot, make_window, store):
    window = make_window()
    send(qtbot, window, "hi")
    turn = wait_turn_done(qtbot, window)
    qtbot.mouseClick(window.rating.buttons["tie"], Qt.MouseButton.LeftButton)
    qtbot.mouseClick(window.panes["right"].regen_button, Qt.MouseButton.LeftButton)
    turn = wait_turn_done(qtbot, window)
    assert "rate again" in window.rating.saved.text()
    assert not window.rating.buttons["tie"].isChecked()
    qtbot.mouseClick(window.rating.buttons["likely_left"], Qt.MouseButton.LeftButton)
    rating = Store(store.path).rating_for_turn(turn.id)
    assert rating["verdict"] == "likely_left"
    assert rating["right_reply_id"] == turn.reply_on("right").reply_id  # the new reply


def test_digits_typed_in_settings_or_prompt_do_not_rate(qtbot, make_window, store):
    window = make_window()
    send(qtbot, window, "hi")
    turn = wait_turn_done(qtbot, window)
    focus_away_from_text(qtbot, window)
    window.sampling.max_tokens.setFocus()
    window.sampling.max_tokens.lineEdit().selectAll()
    qtbot.keyClicks(window.sampling.max_tokens, "64")
    window.prompt.setFocus()
    qtbot.keyClicks(window.prompt, "12345")
    assert window.sampling.max_tokens.value() == 64
    assert window.prompt.toPlainText() == "12345"
    assert Store(store.path).rating_for_turn(turn.id) is None
    qtbot.keyClick(window.prompt, Qt.Key.Key_3, Qt.KeyboardModifier.AltModifier)
    assert Store(store.path).rating_for_turn(turn.id)["verdict"] == "tie"
