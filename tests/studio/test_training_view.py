"""The Training tab on a stand-in client: the form, timer-drawn plots, cancel and
resume, the verdict panel, and "use adapter" reaching the Compare pickers."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from PySide6.QtCore import QObject, Qt, Signal

from engine.training.config import LORA_TARGETS, describe, opt


@dataclass
class DemoConfig:
    """A config with one field of each kind the engine's rounds use."""

    model: str = opt("bundled", "base model")
    max_steps: int = opt(0, "optimiser steps (0 = set by epochs)", 0, 1000)
    learning_rate: float = opt(5e-5, "optimiser learning rate", 1e-8, 1e-1)
    margin: float | None = opt(None, "score gap (empty = automatic)", 0.0, 1e6)
    loss_type: str = opt("sigmoid", "TRL DPO loss", choices=("sigmoid", "ipo"))
    canary: bool = opt(True, "measure drift")
    lora_targets: list = opt(list(LORA_TARGETS), "module names")
    resume: str = opt("", "round to resume")


def described(kind: str = "dpo", title: str = "DPO round") -> dict:
    fields = json.loads(json.dumps(describe(DemoConfig)))  # as it crosses the wire
    return {"kind": kind, "title": title, "presets": ["default", "smoke"], "fields": fields}


class FakeClient(QObject):
    """The EngineClient's signals and calls, recording what the view sends."""

    sig_progress = Signal(str, dict)
    """(command id, progress)"""
    sig_metric = Signal(str, dict)
    """(command id, metric)"""
    sig_result = Signal(str, dict)
    """(command id, result)"""
    sig_error = Signal(str, dict)
    """(command id, error)"""
    sig_state_changed = Signal(str)
    """engine health"""

    def __init__(self):
        super().__init__()
        self.state = "ready"
        self.sent: list[tuple[str, str, dict]] = []
        self.cancelled: list[str] = []

    def send(self, type_: str, content: dict | None = None) -> str:
        cid = f"cmd{len(self.sent) + 1}"
        self.sent.append((cid, type_, dict(content or {})))
        return cid

    def cancel(self, command_id: str) -> None:
        self.cancelled.append(command_id)

    def last(self, type_: str) -> tuple[str, dict]:
        cid, _t, content = [s for s in self.sent if s[1] == type_][-1]
        return cid, content


@pytest.fixture
def view(qtbot):
    from studio.training_view import TrainingView

    client = FakeClient()
    v = TrainingView(client, redraw_ms=50)
    qtbot.addWidget(v)
    cid, _ = client.last("round.kinds")
    client.sig_result.emit(cid, {"kinds": [described(), described("online", "Online RL (GRPO)")]})
    v.resize(1400, 900)
    v.show()
    return v


VERDICT = {"n_prompts": 8, "n_seeds": 2, "judge": "lexical@1", "weights": "hal16_published@1",
           "base": {"mean": -1.6, "ci": [-2.1, -1.1]}, "aligned": {"mean": -0.4, "ci": [-0.8, 0.0]},
           "delta": 1.2, "delta_ci": [0.7, 1.7], "traits_delta": {"1": 0.8, "2": -0.3, "3": 0.1},
           "unrated": {"base": 0, "aligned": 1}, "length_delta": -9.5,
           "length": {"base_words": 30.0, "aligned_words": 20.5},
           "canary": {"base_ppl": 170.0, "aligned_ppl": 180.0, "change": 0.0588, "within_10pct": True,
                      "worse_by_over_10pct": False},
           "examples": [{"prompt": "hey, how was your day?", "base": "As an AI, I do not have days.",
                         "aligned": "pretty chill tbh", "base_score": -2.0, "aligned_score": 0.5}]}


def test_form_builds_from_described_fields_and_validates(qtbot):
    from studio.round_form import RoundForm

    form = RoundForm()
    qtbot.addWidget(form)
    form.build(describe(DemoConfig), {"max_steps": 2})
    assert "resume" not in form.editors  # the Resume button sets it
    assert set(form.editors) == {"model", "max_steps", "learning_rate", "margin", "loss_type", "canary",
                                 "lora_targets"}
    assert "optimiser learning rate" in form.editors["learning_rate"].toolTip()
    assert "1e-08" in form.editors["learning_rate"].toolTip()  # the allowed range
    assert form.editors["max_steps"].text() == "2"  # the preset's value, not the class default
    assert form.overrides() == {}
    form.editors["max_steps"].setText("5000")
    assert not form.is_valid() and "between 0 and 1000" in form.errors()["max_steps"]
    with pytest.raises(ValueError):
        form.overrides()
    form.editors["max_steps"].setText("2.5")
    assert "whole number" in form.errors()["max_steps"]
    form.editors["max_steps"].setText("12")
    form.editors["learning_rate"].setText("abc")
    assert "must be a number" in form.error_text()
    form.editors["learning_rate"].setText("1e-4")
    form.editors["margin"].setText("")  # optional: empty is allowed
    form.editors["loss_type"].setCurrentIndex(1)
    form.editors["canary"].setChecked(False)
    form.editors["lora_targets"].setText("q_proj, v_proj")
    assert form.is_valid()
    assert form.overrides() == {"max_steps": 12, "learning_rate": 1e-4, "loss_type": "ipo", "canary": False,
                                "lora_targets": ["q_proj", "v_proj"]}
    form.editors["margin"].setText("0.5")
    assert form.overrides()["margin"] == 0.5
    form.reset({"max_steps": 2})
    assert form.overrides() == {}


def test_judge_and_weights_are_choices_of_what_exists_with_auto_explained(view):
    """The round form lists the engine's judges and saved weights (score.config), not free text."""
    from engine.training.dpo import DPORoundConfig
    from engine.training.config import describe

    cid, _ = view.client.last("score.config")
    view.client.sig_result.emit(cid, {
        "judges": [{"name": "lexical", "available": True, "score": True, "note": "surface features"},
                   {"name": "precomputed", "available": True, "score": False}],
        "weights": [{"ref": "lexical_turing@1", "fitted_on_judge": "lexical@1", "cv_accuracy": 0.85},
                    {"ref": "hal32_equal@1"}],
        "default": {"judge": "lexical@1", "weights": "lexical_turing@1"}})
    view.settings.set_kinds([{"kind": "dpo", "title": "DPO", "presets": ["default"],
                              "fields": describe(DPORoundConfig)}])
    form = view.form
    judge, weights = form.editors["judge"], form.editors["weights"]
    assert [judge.itemData(i) for i in range(judge.count())] == ["auto", "lexical"]
    assert "reply badges" in judge.itemText(0)
    assert [weights.itemData(i) for i in range(weights.count())] == ["auto", "lexical_turing@1", "hal32_equal@1"]
    assert "lexical_turing@1" in weights.itemText(0) and "85%" in weights.itemText(1)
    assert "not fitted" in weights.itemText(2)
    assert form.value("weights") == "auto" and form.overrides() == {}
    weights.setCurrentIndex(1)
    assert form.overrides() == {"weights": "lexical_turing@1"}


def test_metrics_are_buffered_and_drawn_by_the_timer(view, qtbot):
    view.on_start()
    run = view.run_id
    for step in range(1, 301):
        view.client.sig_metric.emit(run, {"name": "loss", "value": 1.0 / step, "step": step})
        view.client.sig_metric.emit(run, {"name": "grad_norm", "value": 2.0, "step": step})
    view.client.sig_metric.emit("someone-else", {"name": "loss", "value": 9.0, "step": 1})
    x, _y = view.plots.points("loss")
    assert len(x) == 0  # nothing drawn per message
    qtbot.waitUntil(lambda: len(view.plots.points("loss")[0]) == 300, timeout=3000)
    assert view.plots.redraws <= 3
    x, y = view.plots.points("loss")
    assert x[0] == 1 and y[-1] == pytest.approx(1 / 300)
    assert view.plots.other_combo.findData("grad_norm") >= 0  # unplanned metrics are kept too
    curve = view.plots.curves["loss"]
    assert curve.opts["clipToView"] and curve.opts["downsampleMethod"] == "peak"
    view.client.sig_progress.emit(run, {"done": 40, "total": 100, "message": "DPO: step 3/24",
                                        "elapsed_s": 70.0, "eta_s": 105.0})
    assert view.progress.value() == 400
    assert "step 3/24" in view.run_detail.text() and "left" in view.run_detail.text()


def test_start_sends_changed_settings_and_cancel_targets_the_round(view, qtbot):
    client = view.client
    view.form.editors["max_steps"].setText("7")
    view.preset_combo.setCurrentIndex(view.preset_combo.findData("smoke"))
    assert view.form.overrides() == {}  # choosing a preset puts its values back
    view.form.editors["max_steps"].setText("7")
    qtbot.mouseClick(view.start_button, Qt.MouseButton.LeftButton)
    cid, content = client.last("round.start")
    assert content == {"kind": "dpo", "preset": "smoke", "config": {"max_steps": 7}}
    assert view.run_id == cid and not view.start_button.isEnabled() and view.cancel_button.isVisible()
    qtbot.mouseClick(view.cancel_button, Qt.MouseButton.LeftButton)
    assert client.cancelled == [cid]
    assert not view.cancel_button.isEnabled() and "Cancelling" in view.run_detail.text()
    client.sig_result.emit(cid, {"round_id": "r1", "cancelled": True, "steps": 3})
    assert "cancelled" in view.run_title.text() and "after 3 steps" in view.run_detail.text()
    assert view.resume_button.isVisible() and view.start_button.isEnabled()
    qtbot.mouseClick(view.resume_button, Qt.MouseButton.LeftButton)
    _cid, content = client.last("round.start")
    assert content == {"kind": "dpo", "config": {"resume": "r1"}}


def test_a_failed_round_offers_resume_only_when_it_can(view):
    client = view.client
    view.on_start()
    run = view.run_id
    client.sig_error.emit(run, {"kind": "internal", "message": "RuntimeError: boom", "detail": ""})
    assert "failed" in view.run_title.text() and "boom" in view.run_detail.text()
    cid, _ = client.last("round.list")
    old = {"id": "old", "kind": "dpo", "status": "failed", "created_at": "2000-01-01T00:00:00.000+00:00"}
    new = {"id": "r9", "kind": "dpo", "status": "failed", "created_at": "2999-01-01T00:00:00.000+00:00"}
    client.sig_result.emit(cid, {"rounds": [new, old]})
    assert view.resume_button.isVisible() and view.resume_row["id"] == "r9"
    view.on_start()
    client.sig_error.emit(view.run_id, {"kind": "bad_config", "message": "lora_r=0 is outside 1..256"})
    cid, _ = client.last("round.list")
    client.sig_result.emit(cid, {"rounds": [new, old]})
    assert not view.resume_button.isVisible()  # resuming would only repeat the mistake
    assert "lora_r=0" in view.run_detail.text()
    # An error that names its round: that round is offered, not the newest row of the kind.
    view.on_start()
    client.sig_error.emit(view.run_id, {"kind": "internal", "message": "RuntimeError: again",
                                        "round_id": "old"})
    assert "round old" in view.run_detail.text()
    cid, _ = client.last("round.list")
    client.sig_result.emit(cid, {"rounds": [new, old]})
    assert view.resume_button.isVisible() and view.resume_row["id"] == "old"


def test_verdict_panel_shows_scores_traits_length_and_canary(qtbot):
    from studio.verdict_panel import VerdictPanel

    panel = VerdictPanel()
    qtbot.addWidget(panel)
    panel.resize(1000, 800)
    panel.show()
    panel.show_verdict(VERDICT, "/tmp/adapters/abc")
    assert "sounds more human" in panel.title.text() and "+1.20" in panel.title.text()
    assert "+0.70 to +1.70" in panel.title.text()
    facts = panel.facts.text()
    assert "-1.60" in facts and "-0.40" in facts and "30.0 → 20.5 words" in facts
    assert "170.0 → 180.0" in facts and "within 10%" in facts and "1 aligned replies" in facts
    human = {**VERDICT, "canary_human_chat": {"base_ppl": 60.0, "aligned_ppl": 75.0, "change": 0.25,
                                              "within_10pct": False, "worse_by_over_10pct": True,
                                              "n_dialogues": 60}}
    panel.show_verdict(human)
    assert "60 held-out human chats" in panel.facts.text() and "60.0 → 75.0 (+25.0%)" in panel.facts.text()
    panel.show_verdict(VERDICT, "/tmp/adapters/abc")
    ticks = [name for _pos, name in panel.trait_plot.getAxis("left")._tickLevels[0]]
    assert ticks[0] == "slang" and ticks[-1] == "brevity"  # sorted by change, named
    assert panel.score_plot.isVisible() and panel.examples.isVisible()
    assert "pretty chill tbh" in panel.examples.toPlainText()
    assert "length by -32%" in panel.warning.text()  # 30 -> 20.5 words
    with qtbot.waitSignal(panel.sig_use_adapter) as got:
        qtbot.mouseClick(panel.use_buttons["b"], Qt.MouseButton.LeftButton)
    assert got.args == ["b", "/tmp/adapters/abc"]
    worse = {**VERDICT, "delta": -0.5, "delta_ci": [-0.9, -0.1],
             "canary": {**VERDICT["canary"], "change": 0.2, "within_10pct": False, "worse_by_over_10pct": True}}
    panel.show_verdict(worse)
    assert "less human" in panel.title.text() and "worse by over 10%" in panel.facts.text()
    assert "rose 20%" in panel.warning.text() and not panel.warning.isHidden()
    assert not panel.use_buttons["a"].isVisible()
    panel.show_result("reward_weights", {"metrics": {
        "new_weights": "hal16_published@2", "old_weights": "hal16_published@1",
        "traits": {"1": {"old": 0.1, "new": 0.3, "change": 0.2}}, "agreement_heldout": {"old": 0.5, "new": 0.75},
        "n_votes_heldout": 4}})
    assert "hal16_published@2" in panel.title.text() and "75%" in panel.facts.text()


CHECKED = {**VERDICT, "evaluator": {"judge": "distilled:gpt5-turing@1", "weights": "distilled_turing@1",
                                    "base_mean": -0.2, "aligned_mean": 0.5, "delta": 0.7, "delta_ci": [0.3, 1.1],
                                    "n": 16},
           "length_controlled": {"delta": 0.4, "delta_ci": [0.1, 0.7]},
           "looping": {"base": {"looping": 2, "n": 16, "share": 0.125, "ci": [0.035, 0.36]},
                       "aligned": {"looping": 1, "n": 16, "share": 0.0625, "ci": [0.011, 0.28]}, "rose": False},
           "headline": {"sounds_more_human": True, "failed": [], "text": "..."}}


def test_verdict_headline_comes_from_the_evaluator_and_names_what_failed(qtbot):
    from studio.verdict_panel import VerdictPanel

    panel = VerdictPanel()
    qtbot.addWidget(panel)
    panel.show_verdict(CHECKED)
    assert "sounds more human" in panel.title.text() and "evaluator Δ +0.70" in panel.title.text()
    assert "+0.30 to +1.10" in panel.title.text()
    facts = panel.facts.text()
    assert "distilled:gpt5-turing@1" in facts and "did not train on this judge" in facts
    assert "Length-controlled" in facts and "+0.40" in facts
    assert "2 of 16 base (12%" in facts and "1 of 16 aligned" in facts and "did not rise" in facts
    assert "Trained on" in facts and "lexical@1" in facts
    failed = {**CHECKED, "headline": {"sounds_more_human": False,
                                      "failed": ["looping rose (2 -> 7 of 16 replies)"], "text": "..."},
              "looping": {**CHECKED["looping"], "rose": True}}
    panel.show_verdict(failed)
    assert "Not shown to sound more human: looping rose (2 -> 7 of 16 replies)" in panel.title.text()
    assert "⚠ rose" in panel.facts.text()


def test_adapter_list_shows_lineage_and_use_emits(qtbot, tmp_path):
    from studio.adapter_list import AdapterList, adapter_spec

    folder = tmp_path / "a1"
    folder.mkdir()
    (folder / "hal_adapter.json").write_text(json.dumps({"base_model": "/models/base.gguf"}))
    rows = [{"id": "a1", "name": "round 1234", "peft_path": str(folder), "gguf_path": str(folder / "x.gguf"),
             "created_at": "2026-01-02T03:04:05", "exists": True,
             "lineage": {"round_kind": "dpo", "n_pairs": 12, "n_sampled": 10, "n_rating": 2,
                         "judge": "lexical@1", "weights": "hal16_published@1", "parent_adapter": None}}]
    view = AdapterList()
    qtbot.addWidget(view)
    view.set_adapters(rows)
    assert view.table.item(0, 2).text() == "DPO"
    assert "12 pairs (10 sampled, 2 from ratings)" in view.table.item(0, 3).text()
    assert "lexical@1" in view.table.item(0, 4).text() and "pair" in view.table.item(0, 0).toolTip()
    with qtbot.waitSignal(view.sig_use_adapter) as got:
        qtbot.mouseClick(view.use_buttons["a"], Qt.MouseButton.LeftButton)
    assert got.args == ["a", str(folder)]
    spec = adapter_spec({"source": "bundled", "adapter": None, "backend": "auto"}, str(folder))
    assert spec == {"source": "/models/base.gguf", "adapter": str(folder), "backend": "auto"}


def test_main_window_puts_an_adapter_in_the_chosen_pane(make_window, tmp_path):
    window = make_window()
    folder = tmp_path / "adapter"
    folder.mkdir()
    assert window.tabs.indexOf(window.training_view) >= 0
    window.training_view.sig_use_adapter.emit("b", str(folder))
    assert window.pickers["b"].spec()["adapter"] == str(folder)
    assert window.pickers["a"].spec()["adapter"] is None
    assert window.session.specs["b"]["adapter"] == str(folder)


def test_rounds_tab_shows_a_stored_round_and_exports_it(view, tmp_path):
    client = view.client
    row = {"id": "r1", "kind": "dpo", "status": "done", "created_at": "2026-01-01T10:00:00.000+00:00",
           "metrics": {"steps": 24, "history": [{"step": 1, "loss": 0.69}, {"step": 2, "loss": 0.6}]},
           "verdict": VERDICT, "lineage": {"pair_set": "p1"}, "adapter_id": None}
    cid, _ = client.last("round.list")
    client.sig_result.emit(cid, {"rounds": [row]})
    assert view.history.table.item(0, 4).text() == "+1.20" and view.history.export_button.isEnabled()
    assert not view.history.resume_button.isEnabled()  # done rounds do not resume
    view.history.on_show()
    assert view.tabs.currentWidget() is view.verdict and "more human" in view.verdict.title.text()
    assert list(view.plots.points("loss")[1]) == [0.69, 0.6]
    view.on_export_round(row, str(tmp_path / "out"))
    _cid, content = client.last("round.export")
    assert content == {"round_id": "r1", "folder": str(tmp_path / "out")}


def test_after_an_engine_crash_the_round_can_be_resumed_once_it_is_back(view):
    client = view.client
    view.on_start()
    client.state = "crashed"
    client.sig_error.emit(view.run_id, {"kind": "engine_crashed", "message": "The engine stopped (signal 9)."})
    client.sig_state_changed.emit("crashed")
    assert "failed" in view.run_title.text() and "signal 9" in view.run_detail.text()
    assert not view.resume_button.isVisible() and not view.start_button.isEnabled()
    client.state = "ready"
    client.sig_state_changed.emit("ready")  # restarted: the lists are asked for again
    cid, _ = client.last("round.list")
    client.sig_result.emit(cid, {"rounds": [{"id": "r7", "kind": "dpo", "status": "failed",
                                             "created_at": "2999-01-01T00:00:00.000+00:00"}]})
    assert view.resume_button.isVisible() and view.resume_row["id"] == "r7"
    view.resume_button.click()
    assert client.last("round.start")[1] == {"kind": "dpo", "config": {"resume": "r7"}}


def test_the_waiting_line_goes_once_the_engine_is_ready(qtbot):
    from studio.training_view import TrainingView

    client = FakeClient()
    client.state = "starting"
    v = TrainingView(client, redraw_ms=50)
    qtbot.addWidget(v)
    v.on_engine_state("starting")
    assert "Waiting for the engine" in v.run_detail.text()
    client.state = "ready"
    v.on_engine_state("ready")
    assert "Waiting" not in v.run_detail.text() and "start" in v.run_detail.text()


def test_an_adapter_is_renamed_from_the_list(view, qtbot, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    rows = [{"id": "a1b2c3d4e5", "name": "DPO round 1 · default", "display_name": "DPO round 1 · default",
             "peft_path": "/tmp/a1", "created_at": "2026-01-02T03:04:05", "exists": True,
             "lineage": {"round_kind": "dpo"}}]
    cid, _ = view.client.last("adapter.list")
    view.client.sig_result.emit(cid, {"adapters": rows})
    assert view.adapters.table.item(0, 0).text() == "DPO round 1 · default"
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("warm and brief", True))
    qtbot.mouseClick(view.adapters.rename_button, Qt.MouseButton.LeftButton)
    cid, content = view.client.last("adapter.rename")
    assert content == {"id": "a1b2c3d4e5", "name": "warm and brief"}
    n_lists = sum(1 for _, t, _ in view.client.sent if t == "adapter.list")
    view.client.sig_result.emit(cid, {"id": "a1b2c3d4e5", "name": "warm and brief"})
    assert sum(1 for _, t, _ in view.client.sent if t == "adapter.list") == n_lists + 1  # list again


def test_the_canary_phase_keeps_the_bar_and_estimate_moving_and_the_share_is_shown(view):
    client = view.client
    view.on_start()
    run = view.run_id
    client.sig_progress.emit(run, {"done": 93.0, "total": 100.0, "message": "verdict: drift canary, base 2/4",
                                   "elapsed_s": 40.0, "eta_s": 3.0})
    assert view.progress.value() == 930 and "about 3 s left" in view.run_detail.text()
    client.sig_result.emit(run, {"round_id": "r1", "adapter": "a1", "seconds": 43.0, "steps": 2,
                                 "verdict": VERDICT, "verdict_share": 0.31})
    assert "verdict and its canaries took 31%" in view.run_detail.text()


def test_the_online_kind_says_it_is_grpo_and_why(view):
    view.kind_combo.setCurrentIndex(view.kind_combo.findData("online"))
    about = view.settings.about.text()
    assert "GRPOTrainer" in about and "PPO-style clipped" in about and "value model" in about
    assert "PPOTrainer" in about and "KL" in about
