"""The Traits tab on the fake chat engine with the real scoring commands:
questionnaire editing, weights plot, a fit with progress and its figures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.engine.scoring.helpers import FORMAL, SLANGY, turing_row, write_csv

pytestmark = pytest.mark.timeout(90)
SCORING_ENGINE = Path(__file__).with_name("fake_score_engine.py")


@pytest.fixture
def traits_view(qtbot, store, request):
    from studio.engine_client import EngineClient
    from studio.traits_view import TraitsView

    client = EngineClient(command=[sys.executable, str(SCORING_ENGINE)],
                          env={"HAL_STUDIO_DB": str(store.path)}, hello_timeout_s=30)
    view = TraitsView(client)
    qtbot.addWidget(view)
    view.resize(1400, 860)
    view.show()
    client.start()
    try:
        qtbot.waitUntil(lambda: view.table.rowCount() > 0 and bool(view.weights_plot.values), timeout=20000)
        if request.node.name != "test_shows_the_default_questionnaire_and_weights_and_says_why":
            view.q_combo.setCurrentIndex(view.q_combo.findData("hal32@1"))  # the 32-trait questionnaire
            view.load_questionnaire("hal32@1")
            qtbot.waitUntil(lambda: view.table.rowCount() == 32, timeout=20000)
        yield view
    finally:
        client.shutdown(wait_ms=2000)


def cell(view, row, col):
    return view.table.item(row, col).text()


def test_shows_the_default_questionnaire_and_weights_and_says_why(traits_view):
    view = traits_view
    assert "hal16_published@1" in view.default_line.text() and "distilled:gpt5-turing" in view.default_line.text()
    refs = [view.q_combo.itemData(i) for i in range(view.q_combo.count())]
    # the default weights' own questionnaire: the paper's 16 traits
    assert {"hal32@1", "hal16@1"} <= set(refs) and view.q_combo.currentData() == "hal16@1"
    assert view.table.rowCount() == 16 and (cell(view, 0, 0), cell(view, 0, 1)) == ("1", "brevity")
    # the paper's 16 weighted traits, fitted on GPT-5's ratings (which the default judge reproduces)
    assert len(view.weights_plot.values) == 16 and "hal16_published@1" in view.weights_plot.caption.text()
    assert not view.save_button.isEnabled()


def test_edit_and_save_as_a_new_version(qtbot, traits_view, data_dir):
    view = traits_view
    view.table.item(0, 2).setText("Answers in a handful of words, like a text message.")
    assert view.dirty and view.save_button.isEnabled() and "unsaved" in view.q_state.text()
    view.table.selectRow(1)
    view.on_drop()
    view.table.selectRow(0)
    view.on_add()
    new_row = view.table.rowCount() - 1
    assert cell(view, new_row, 0) == "new" and cell(view, new_row, 3) == "form"  # theme of the selected row
    view.table.item(new_row, 1).setText("weather")
    view.table.item(new_row, 2).setText("Mentions the weather where they are.")
    view.on_save()
    qtbot.waitUntil(lambda: view.q_combo.currentData() == "hal32@2" and not view.dirty, timeout=10000)
    assert view.table.rowCount() == 32 and cell(view, 31, 0) == "33"
    assert "Saved hal32@2" in view.status.text() and "added 33" in view.status.text()
    assert (data_dir / "questionnaires" / "hal32@2.json").is_file()
    assert "parent hal32@1" in view.q_state.text()


def test_a_rejected_save_says_why_and_keeps_the_edits(qtbot, traits_view):
    view = traits_view
    view.table.item(3, 1).setText("")
    view.on_save()
    qtbot.waitUntil(lambda: "Not saved" in view.q_state.text(), timeout=10000)
    assert "short name" in view.q_state.text() and view.dirty and view.save_button.isEnabled()


def test_choosing_weights_plots_them(qtbot, traits_view):
    view = traits_view
    view.w_combo.setCurrentIndex(view.w_combo.findData("hal16_published@1"))
    view.load_weights("hal16_published@1")
    qtbot.waitUntil(lambda: len(view.weights_plot.values) == 16, timeout=10000)
    assert min(view.weights_plot.values.values()) < 0 < max(view.weights_plot.values.values())
    assert "gpt-5" in view.weights_plot.caption.text()


def test_a_fit_shows_progress_and_figures_and_becomes_the_default(qtbot, traits_view, tmp_path):
    view = traits_view
    rows = [turing_row(g, "A" if g % 2 else "B", a_lines=SLANGY if g % 2 else FORMAL,
                       b_lines=FORMAL if g % 2 else SLANGY) for g in range(30)]
    path = write_csv(tmp_path / "games.csv", rows)
    panel = view.fit_panel
    panel.path.setText(str(path))
    panel.folds.setValue(5)
    seen = []
    view.calls.client.sig_progress.connect(lambda _id, c: seen.append(c))
    panel.run_button.click()
    assert not panel.run_button.isEnabled() and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: panel.run_button.isEnabled(), timeout=30000)
    assert "Cross-validated accuracy" in panel.status.text() and "fit-lexical@1" in panel.status.text()
    assert seen and any("fold" in str(c.get("message")) for c in seen)
    qtbot.waitUntil(lambda: view.w_combo.currentData() == "fit-lexical@1", timeout=10000)
    qtbot.waitUntil(lambda: "fitted on lexical" in view.weights_plot.caption.text(), timeout=10000)
    assert "hal16_published@1" in view.default_line.text()  # the default does not follow the data folder
    assert "fit-lexical@1" in view.status.text() and "round's Weights" in view.status.text()


def test_a_failed_fit_says_why(qtbot, traits_view, tmp_path):
    panel = traits_view.fit_panel
    panel.path.setText(str(tmp_path / "missing.csv"))
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.run_button.isEnabled(), timeout=10000)
    assert "The fit failed" in panel.status.text() and "no data file" in panel.status.text()


def test_the_shared_turing_file_is_prefilled(traits_view):
    from engine.scoring import shared_data_dir

    shared = shared_data_dir() / "turing_gpt5_train.csv"
    if not shared.is_file():
        pytest.skip("no shared HAL data on this machine")
    assert Path(traits_view.fit_panel.path.text()) == shared


def test_refcount_guard_is_installed():
    import studio  # noqa: F401  (installs it)
    from studio import refcount_guard

    if sys.version_info < (3, 12):
        assert refcount_guard._installed and sys.getrefcount(None) > refcount_guard.RESERVE // 2
