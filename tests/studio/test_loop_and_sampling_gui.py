"""The compare view: the sampling panel's new settings reach the reply rows,
and a looping reply carries a small marker, live and after reopening."""

import pytest

from engine.store import Store
from tests.studio.test_compare_window import send, wait_turn_done

pytestmark = pytest.mark.timeout(60)


def test_sampling_panel_defaults_are_the_engines():
    from engine.models.base import CHAT_DEFAULTS
    from studio.sampling_panel import DEFAULTS

    for key in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens"):
        assert DEFAULTS[key] == CHAT_DEFAULTS[key], key


def test_new_settings_are_sent_and_stored(qtbot, make_window, store):
    window = make_window()
    panel = window.sampling
    panel.top_k.setValue(40)
    panel.min_p.setValue(0.05)
    panel.repeat_penalty.setValue(1.25)
    panel.max_tokens.setValue(8)
    panel.stop.setPlainText("User:\nthe end\\n")
    send(qtbot, window, "hi there")
    turn = wait_turn_done(qtbot, window)
    rows = Store(store.path).conversation(window.session.conversation_id)["turns"][0]["replies"]
    for slot in ("a", "b"):
        sampling = rows[slot]["sampling"]
        assert sampling["top_k"] == 40 and sampling["min_p"] == 0.05 and sampling["repeat_penalty"] == 1.25
        assert sampling["stop"] == ["User:", "the end\n"]
    assert rows["a"]["sampling"] == rows["b"]["sampling"]  # identical for both panes
    assert turn.sampling["top_k"] == 40


def test_a_looping_reply_shows_a_marker(qtbot, make_window, store):
    window = make_window()
    window.sampling.max_tokens.setValue(8)  # the fake engine pads with "more": 2 of them, fine
    send(qtbot, window, "hi there")
    wait_turn_done(qtbot, window)
    for side in ("left", "right"):
        assert window.panes[side].views[0].loop_marker.isHidden()
    window.sampling.max_tokens.setValue(40)  # "more more more ...": a word run
    send(qtbot, window, "and again")
    turn = wait_turn_done(qtbot, window)
    assert turn.replies["a"].looping and turn.replies["a"].loop_reason.startswith("word_run")
    for side in ("left", "right"):
        marker = window.panes[side].views[1].loop_marker
        assert not marker.isHidden() and "word_run" in marker.toolTip()
    rows = Store(store.path).conversation(window.session.conversation_id)["turns"]
    assert [rows[i]["replies"]["a"]["looping"] for i in (0, 1)] == [0, 1]
    assert rows[1]["replies"]["b"]["loop_reason"].startswith("word_run")
    conv_id = window.session.conversation_id
    window.on_new_conversation()
    window.history.sig_open_requested.emit(conv_id)  # reopened: the flag comes from the store
    assert window.panes["left"].views[0].loop_marker.isHidden()
    assert not window.panes["left"].views[1].loop_marker.isHidden()
