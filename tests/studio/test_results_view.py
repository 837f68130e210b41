"""The results view and ratings browser on a real store with made-up ratings."""

import json

import pytest
from PySide6.QtCore import Qt

from engine.results import sample
from engine.results.browser import list_rated


@pytest.fixture
def filled(store):
    sample.fill(store, 40, seed=3)
    return store


@pytest.fixture
def view(qtbot, filled):
    from studio.results_view import ResultsView

    v = ResultsView(filled, n_boot=50)
    qtbot.addWidget(v)
    v.resize(1000, 900)
    v.show()
    return v


def test_figures_are_shown_with_how_they_are_computed(view):
    res = view.results
    assert view.pairs_table.rowCount() == len(res["pairs"]) == 3
    assert view.bt_table.rowCount() == 3
    assert view.bt_table.item(0, 1).text() == res["bradley_terry"][0]["model"]
    assert view.pairs_table.item(0, 3).text() == f"{100 * res['pairs'][0]['win_rate']:.1f}%"
    assert "Mean score of A" in view.pairs_table.toolTip()
    assert "Bradley-Terry" in view.bt_table.toolTip()
    assert "Wilson" in view.consistency_line.text() or "agreed" in view.consistency_line.text()
    hows = [w.text() for w in view.findChildren(type(view.summary)) if w.text().startswith("How this")]
    assert len(hows) >= 8 and any("binomial" in h for h in hows) and any("K = 4" in h for h in hows)
    assert view.score_table.rowCount() >= 2 and view.score_table.item(0, 1).text() == "overall"
    assert view.leak_button.isEnabled()  # the sample has one "as an AI language model" reply


def test_filters_recompute(view, qtbot):
    everything = view.results["n_ratings"]
    view.blind.setCurrentIndex(1)  # blind only
    blind = view.results["n_ratings"]
    assert 0 < blind < everything and view.results["filters"]["blind"] is True
    assert view.browser.table.rowCount() == blind
    view.blind.setCurrentIndex(0)
    view.model.setCurrentText("adapter-v3")
    view.model.lineEdit().editingFinished.emit()
    assert all("adapter-v3" in (p["a"] + p["b"]) for p in view.results["pairs"])
    view.model.setCurrentText("All models")
    view.since.setText("2999-01-01")
    view.since.editingFinished.emit()
    assert view.results["n_ratings"] == 0 and view.pairs_table.rowCount() == 0
    assert view.bt_note.text()  # "a leaderboard needs votes between at least two models"


def test_a_figure_links_to_its_ratings(view, qtbot):
    pair = view.results["pairs"][0]
    view.on_pair_clicked(0, 0)
    assert view.tabs.currentWidget() is view.browser
    shown = {r["rating_id"] for r in view.browser.rows}
    assert shown == set(pair["rating_ids"] + pair["both_bad_rating_ids"])
    assert "vs" in view.browser.scope.text()
    qtbot.mouseClick(view.browser.show_all, Qt.MouseButton.LeftButton)
    assert len(view.browser.rows) == view.results["n_ratings"]


def test_browser_edits_notes_and_deletes_into_history(view, filled, qtbot):
    b = view.browser
    b.table.selectRow(0)
    row = b.selected()
    assert b.left_box.toPlainText() == row["left"]["text"]
    b.note.setText("sounds scripted")
    qtbot.mouseClick(b.save_note, Qt.MouseButton.LeftButton)
    assert filled.db["ratings"].get(row["rating_id"])["note"] == "sounds scripted"
    before = view.results["n_ratings"]
    b.table.selectRow(0)
    b.confirm = lambda text: False
    qtbot.mouseClick(b.delete, Qt.MouseButton.LeftButton)
    assert view.results["n_ratings"] == before
    b.confirm = lambda text: True
    qtbot.mouseClick(b.delete, Qt.MouseButton.LeftButton)
    assert view.results["n_ratings"] == before - 1
    assert row["rating_id"] not in {r["rating_id"] for r in list_rated(filled)}
    actions = [r["action"] for r in filled.db["rating_history"].rows_where("rating_id=?", [row["rating_id"]])]
    assert actions == ["note", "deleted"]


def test_recheck_dialog_saves_swapped_repeats(view, filled, qtbot):
    before = view.results["consistency"]["n"]
    view.on_recheck()  # the sample repeated 10% already: nothing to do
    assert "Nothing to re-check" in view.status.text()
    view.on_recheck(share=0.2)
    dialog = view.recheck
    items = list(dialog.items)
    assert len(items) == 4  # 20% of 40 = 8, minus the 4 the sample already repeated
    first = items[0]
    orig = filled.db["ratings"].get(first["rating_id"])
    assert dialog.left_box.toPlainText() == filled.reply(orig["right_reply_id"])["text"]
    for _ in items:
        qtbot.mouseClick(dialog.buttons["tie"], Qt.MouseButton.LeftButton)
    assert view.results["consistency"]["n"] == before + len(items)
    assert "repeats saved" in view.status.text()


def test_export_and_import_buttons_work_through_files(view, filled, tmp_path, qtbot):
    for fmt, name in (("jsonl", "p.jsonl"), ("csv", "r.csv"), ("html", "r.html"), ("bundle", "b.jsonl")):
        assert view.export_to(fmt, tmp_path / name).startswith("Exported")
        assert (tmp_path / name).stat().st_size > 0
    assert "<svg" in (tmp_path / "r.html").read_text()
    report = view.import_from(tmp_path / "b.jsonl")
    assert report["imported"] == 0 and "skipped" in view.status.text()
    (tmp_path / "foreign.jsonl").write_text(json.dumps({"format": "something-else"}) + "\n")
    assert view.import_from(tmp_path / "foreign.jsonl") is None
    assert view.status.text().startswith("Import refused")
    minimal = tmp_path / "m.jsonl"
    minimal.write_text(json.dumps({"model_left": "Other", "model_right": "SmolLM2-135M-Instruct",
                                   "verdict": "likely_left", "prompt": "hey"}) + "\n")
    n = view.results["n_ratings"]
    assert view.import_from(minimal)["imported"] == 1 and view.results["n_ratings"] == n + 1
    assert view.model.findText("Other") >= 0


def test_empty_store_and_position_warning(qtbot, store):
    from studio.results_view import ResultsView

    v = ResultsView(store, n_boot=20)
    qtbot.addWidget(v)
    assert v.results["n_ratings"] == 0 and v.pairs_table.rowCount() == 0
    assert "no repeat ratings" in v.consistency_line.text()
    assert not v.score_table.isVisible()
    for _ in range(12):
        sample.add_rating(store, "A", "B", "certainly_left")
    v.refresh()
    assert v.results["position_bias"]["warning"] and not v.bias_warning.isHidden()
    assert "left" in v.bias_warning.text()


def test_screenshot_renders(view, tmp_path):
    view.resize(1100, 1400)
    image = view.grab()
    assert not image.isNull() and image.save(str(tmp_path / "shot.png"))


def test_a_damaged_row_is_reported_and_the_tab_still_shows_the_rest(qtbot, store):
    from studio.results_view import ResultsView

    sample.add_rating(store, "A", "B", "likely_left")
    bad = sample.add_rating(store, "A", "C", "tie")
    reply = store.db["ratings"].get(bad)["left_reply_id"]
    store.db.execute("UPDATE replies SET model_spec='[1,2]', model_name='' WHERE id=?", [reply])
    v = ResultsView(store, n_boot=20)
    qtbot.addWidget(v)
    assert v.results["n_ratings"] == 1 and v.pairs_table.rowCount() == 1
    assert v.problems.isVisibleTo(v) and "model_spec" in v.problems.text()
    assert v.browser.table.rowCount() == 1


def test_self_vs_self_ratings_say_why_they_are_in_no_figure(qtbot, store):
    from studio.results_view import ResultsView

    sample.add_rating(store, "base", "base", "likely_left")
    v = ResultsView(store, n_boot=20)
    qtbot.addWidget(v)
    assert v.results["n_ratings"] == 1 and v.pairs_table.rowCount() == 0
    assert "same model on both sides" in v.summary.text()
    assert "SmolLM2-135M-Instruct" in v.summary.text()


def test_method_notes_state_the_resamples_used(view):
    hows = [w.text() for w in view.findChildren(type(view.summary)) if w.text().startswith("How this")]
    assert any("50 resamples" in h for h in hows) and any("50 times" in h for h in hows)
    assert not any("ci_bootstrap" in h or "2000" in h or "1000 times" in h for h in hows)


def test_a_pane_shows_an_adapter_by_its_name(store, tmp_path):
    from engine.results.names import AdapterNames, default_adapter_name
    from engine.store import now
    from studio.conversation import spec_label

    store._insert("rounds", {"id": "r1", "kind": "dpo", "status": "done", "config": "{}", "created_at": now()})
    store._insert("adapters", {"id": "a1b2c3", "name": default_adapter_name(store, "r1", "default"),
                               "peft_path": str(tmp_path / "a1b2c3"), "round_id": "r1", "usable": 1,
                               "lineage": "{}", "created_at": now()})
    spec = {"source": "bundled", "adapter": str(tmp_path / "a1b2c3"), "backend": "auto"}
    assert spec_label(spec, AdapterNames(store)) == "SmolLM2-135M-Instruct + DPO round 1 · default"
    assert spec_label(spec) == "SmolLM2-135M-Instruct + a1b2c3"


def test_rater_filter_shows_llm_votes_beside_mine(qtbot, filled):
    from studio.results_view import ResultsView

    turns = list(filled.db.query("SELECT turn_id, left_reply_id, right_reply_id FROM ratings LIMIT 6"))
    for t in turns:
        filled.rate_as("llm:qwen", t["turn_id"], t["left_reply_id"], t["right_reply_id"], "likely_left")
    v = ResultsView(filled, n_boot=20)
    qtbot.addWidget(v)
    everything = v.results["n_ratings"]
    labels = [v.rater.itemText(i) for i in range(v.rater.count())]
    assert labels == ["All raters", "me", "llm:qwen"]
    v.rater.setCurrentIndex(2)
    assert v.results["n_ratings"] == 6 and v.results["filters"]["rater"] == "llm:qwen"
    assert v.browser.table.rowCount() == 6 and v.browser.table.item(0, 8).text() == "llm:qwen"
    v.rater.setCurrentIndex(1)
    assert v.results["n_ratings"] == everything - 6
    assert v.rater.currentText() == "me"  # the choice survives the refresh
