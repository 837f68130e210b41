"""The Discovery tab over an in-process stand-in for the engine (the discover.* commands run for real)."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QTableWidgetSelectionRange

HUMAN = ["lol ya", "idk tbh", "nah not really", "just got home", "haha same", "kinda busy rn"]
AI = ["That is a wonderful question. I would be happy to tell you more.", "Certainly! I enjoy reading. And you?",
      "I understand completely. How are you feeling today?", "Of course; I am always glad to chat with you."]


def write_games(path, n_games, seed=0):
    """Games whose human side writes short lower-case lines and whose AI side writes long formal ones."""
    rng = random.Random(seed)
    rows = []
    for g in range(n_games):
        for label, pool in (("human", HUMAN), ("ai", AI)):
            turns = [t for _ in range(4) for t in (["I", "so what do you do?"], ["W", rng.choice(pool)])]
            rows.append({"id": f"g{g}-{label}", "group": f"g{g}", "rated_speaker": "W", "label": label,
                         "turns": turns})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


class InProcessClient(QObject):
    """EngineClient's signals and send(); commands are answered by engine.discovery on the next loop turn."""

    sig_result = Signal(str, dict)
    sig_error = Signal(str, dict)
    sig_progress = Signal(str, dict)
    sig_state_changed = Signal(str)

    def __init__(self):
        super().__init__()
        self.state = "ready"
        self.sent: list[tuple[str, dict]] = []
        self.cancelled: list[str] = []
        self._ids = itertools.count()

    def send(self, type_: str, content: dict) -> str:
        cid = f"c{next(self._ids)}"
        self.sent.append((type_, content))
        QTimer.singleShot(0, lambda: self._answer(cid, type_, content))
        return cid

    def cancel(self, cid: str) -> None:
        self.cancelled.append(cid)

    def _answer(self, cid: str, type_: str, content: dict) -> None:
        from engine.discovery import accept, runs
        from engine.errors import EngineError
        from engine.jobs import JobState

        try:
            if type_ == "discover.run":
                state = JobState(lambda t, c: self.sig_progress.emit(cid, c) if t == "progress" else None)
                out = runs.run(runs.DiscoverConfig.from_dict(content), state)
            elif type_ == "discover.runs":
                out = {"runs": runs.list_runs(content.get("limit", 50))}
            elif type_ == "discover.get":
                out = {"run": runs.load_run(content["run_id"])}
            elif type_ == "discover.accept":
                q = accept.accept(runs.load_run(content["run_id"]), content["items"], content["questionnaire_id"],
                                  base=content.get("base"))
                out = {"questionnaire": q.ref, "n_traits": len(q.traits), "accepted": [{"id": t.id} for t in q.traits]}
            else:
                raise EngineError(f"unknown {type_}")
        except EngineError as exc:
            self.sig_error.emit(cid, exc.as_content())
            return
        self.sig_result.emit(cid, json.loads(json.dumps(out)))


def _explain_run(tmp_path) -> dict:
    """A saved explain run with three themes laid out on the map (as the engine writes one)."""
    from engine.discovery.runs import runs_dir

    statements, clusters = [], []
    for k, (cid, text) in enumerate((("c1", "Writes in lower case"), ("c2", "Uses slang"), ("c3", "Mentions a pet"))):
        for j in range(6):
            statements.append({"text": f"{text} ({j}).", "game": f"g{j}", "correct": j % 2 == 0, "cluster": cid,
                               "x": float(k * 5 + j * 0.1), "y": float(k)})
        clusters.append({"id": cid, "size": 6, "representatives": [f"{text} ({j})." for j in range(3)],
                         "representative_counts": [1, 1, 1], "n_games": 6, "correct_share": 0.5, "cohesion": 0.8,
                         "keywords": [text.split()[-1]], "distinct": 6})
    statements.append({"text": "Something else.", "game": "g9", "correct": None, "cluster": None, "x": 2.0, "y": 9.0})
    run = {"run_id": "explain-test", "method": "explain", "judge": {"kind": "llm", "judge": "llm:test"},
           "n_games": 10, "n_dialogues": 20, "judge_verdict_accuracy": 0.6, "verdict_ci": [0.31, 0.83],
           "n_statements": len(statements), "games_with_statements": 9, "statements": statements,
           "clusters": clusters, "clustering": {"quality": {"n_clusters": 3, "noise_share": 0.05, "map": "tsne"}},
           "feature_quantiles": {}, "source": {"path": str(tmp_path / "x.jsonl")}}
    (runs_dir() / "explain-test.json").write_text(json.dumps(run))
    return run


@pytest.fixture
def view(qtbot):
    from studio.discovery_view import DiscoveryView

    client = InProcessClient()
    v = DiscoveryView(client)
    qtbot.addWidget(v)
    v.resize(1500, 900)
    v.show()
    return v


def test_contrast_run_accept_into_a_questionnaire(view, qtbot, tmp_path):
    path = write_games(tmp_path / "g.jsonl", 12, seed=2)
    view.path.setText(str(path))
    view.method.setCurrentIndex(0)
    assert not view.judge.isVisible() and view.by.isVisible()
    view.limit.setValue(0)
    view.on_run()
    assert not view.run_button.isEnabled()
    qtbot.waitUntil(lambda: "contrast" in view.runs, timeout=20000)
    run = view.runs["contrast"]
    assert view.run_button.isEnabled() and "Done" in view.progress_text.text()
    assert len(view.ranking.shown) == min(view.ranking.top, len(run["candidates"]))
    assert view.features.topLevelItemCount() == len(run["groups"])
    assert "AUC ≥ 0.70" in view.contrast_summary.text()
    view.features.topLevelItem(0).setCheckState(0, Qt.CheckState.Checked)
    view.features.topLevelItem(1).setCheckState(0, Qt.CheckState.Checked)
    view.on_add("contrast")
    panel = view.accept_panel
    assert panel.table.rowCount() == 2 and panel.run_id == run["run_id"]
    assert panel.table.item(0, 3).text() == run["groups"][0]["lead"]
    panel.table.item(0, 2).setText("Keeps its messages short.")  # edit
    panel.table.setRangeSelected(QTableWidgetSelectionRange(0, 0, 1, 3), True)
    panel.on_merge()
    assert panel.table.rowCount() == 1 and len(panel.rows[0]["from"]) == 2
    panel.q_id.setText("from-view")
    panel.on_save()
    qtbot.waitUntil(lambda: "from-view@1" in panel.result.text(), timeout=10000)
    from engine.scoring.traits import load_questionnaire

    q = load_questionnaire("from-view")
    assert q.traits[0].statement == "Keeps its messages short." and q.provenance["traits"]["33"]["merged"]


def test_explain_run_is_mapped_and_listed(view, qtbot, tmp_path):
    run = _explain_run(tmp_path)
    view.on_engine_state("ready")  # asks for the saved runs again
    qtbot.waitUntil(lambda: view.saved.count() >= 2, timeout=5000)
    index = next(i for i in range(view.saved.count()) if view.saved.itemData(i) == "explain-test")
    view.saved.setCurrentIndex(index)
    view.on_open_saved(index)
    qtbot.waitUntil(lambda: "explain" in view.runs, timeout=5000)
    assert view.clusters.topLevelItemCount() == 3 and view.clusters.topLevelItem(0).childCount() == 2
    assert "60%" in view.explain_summary.text() and "64.8%" in view.explain_summary.text()
    assert len(view.map.scatter.data) == len(run["statements"])
    view.on_map_clicked("c2")
    assert view.clusters.currentItem().text(0) == "c2"
    big = [p for p in view.map.scatter.data if p["size"] == 13]
    assert len(big) == 6 and all(p["data"]["cluster"] == "c2" for p in big)
    view.clusters.topLevelItem(2).setCheckState(0, Qt.CheckState.Checked)
    view.on_add("explain")
    assert view.accept_panel.rows[0]["from"] == ["c3"]
    assert view.accept_panel.table.item(0, 3).text() == "llm / api judge"


def test_errors_are_shown(view, qtbot, tmp_path):
    view.path.setText(str(write_games(tmp_path / "few.jsonl", 2)))
    view.method.setCurrentIndex(0)
    view.on_run()
    qtbot.waitUntil(lambda: view.running is None, timeout=10000)
    assert "too few dialogues to contrast" in view.progress_text.text()
    view.method.setCurrentIndex(1)
    view.judge.setCurrentIndex(1)
    assert view.api_base.isVisible() and not view.by.isVisible()
    content = view.run_content()
    assert content["method"] == "explain" and content["explain"]["judge"] == "api"
    assert "key" not in json.dumps(content["explain"]).replace("api_key_env", "")


def test_contrast_summary_names_direction_flips_across_ai_systems(view, qtbot, tmp_path):
    """Two AI systems that miss the human style on opposite sides: the flip is shown, not hidden."""
    rng = random.Random(5)
    casual, plain = ["lol ya", "tbh idk lmao", "ngl same lol"], ["I got home late", "my cat is asleep", "work was ok"]
    tidy = ["That sounds delightful. Reading is pleasant.", "Certainly. Long walks are refreshing."]
    rows = []
    for g in range(16):
        system = "tidy" if g % 2 else "overdo"
        sides = (("human", [rng.choice(casual)] + rng.sample(plain, 3)),
                 ("ai", [rng.choice(tidy if system == "tidy" else casual) for _ in range(4)]))
        for label, lines in sides:
            turns = [t for line in lines for t in (["I", "so what do you do?"], ["W", line])]
            rows.append({"id": f"g{g}-{label}", "group": f"g{g}", "rated_speaker": "W", "label": label,
                         "turns": turns, "meta": {"ai_model": system}})
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    view.path.setText(str(path))
    view.method.setCurrentIndex(0)
    view.limit.setValue(0)
    view.on_run()
    qtbot.waitUntil(lambda: "contrast" in view.runs, timeout=20000)
    text = view.contrast_summary.text()
    assert "2 AI systems" in text and "the other way" in text and "two-sided" in text
    items = [view.features.topLevelItem(i) for i in range(view.features.topLevelItemCount())]
    items += [top.child(k) for top in items for k in range(top.childCount())]
    flipped = [item for item in items if "⇅" in item.text(1)]
    assert flipped and "AUC within each AI system's games" in flipped[0].toolTip(1)


def test_explain_summary_shows_the_position_bias(view, tmp_path):
    run = _explain_run(tmp_path)
    run.update(judge_verdict_accuracy=None, verdict_ci=None,
               position_bias={"answers_a_share": 1.0, "n_answers": 20, "consistent_share": 0.0, "n_asked_both": 10,
                              "message": "no game got the same chat named in both orders"})
    view.show_run(run)
    text = view.explain_summary.text()
    assert "answered “A” in <b>100%</b> of 20 asks" in text and "both orders in 0% of games" in text
    assert "no game got the same chat" in text and "picked the human in <b>–</b>" in text
