"""The Discovery tab: find candidate traits in human-vs-AI data, then accept them.

Left, the contrast ranking (features, no model); middle, the judge's
explanations as a map and a list of themes; right, the basket of accepted
proposals. Runs go through the engine (``discover.run``, ``discover.accept``,
``discover.runs``, ``discover.get``), so a long judge run never blocks the
window and the studio never loads a model itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFrame, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
                               QPushButton, QSpinBox, QSplitter, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from engine.scoring import shared_data_dir
from studio.discovery_accept import AcceptPanel
from studio.discovery_plots import RankingPlot, StatementMap, cluster_colour

METHODS = (("contrast", "Contrast: surface features, no model"), ("explain", "Explain: a judge says why"))
JUDGES = (("llm", "Bundled model (llama.cpp)"), ("api", "OpenAI-compatible endpoint"))


def _default_data() -> str:
    """The shared Turing games when they lie beside the repository; a researcher picks their own."""
    path = shared_data_dir() / "turing_gpt5_train.csv"
    return str(path) if path.is_file() else ""


def _tree(headers: list[str]) -> QTreeWidget:
    t = QTreeWidget()
    t.setHeaderLabels(headers)
    t.setRootIsDecorated(True)
    t.setAlternatingRowColors(True)
    t.setUniformRowHeights(False)
    t.setWordWrap(True)
    return t


def _heading(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setStyleSheet("color: #2d3748;")
    return label


class DiscoveryView(QWidget):
    sig_status = Signal(str)
    """A one-line message for the status bar."""

    def __init__(self, client, parent: QWidget | None = None):
        super().__init__(parent)
        self.client = client
        self.pending: dict[str, str] = {}  # command id -> what it was
        self.running: str | None = None
        self.runs: dict[str, dict] = {}  # method -> the run shown
        self._build()
        client.sig_result.connect(self.on_result)
        client.sig_error.connect(self.on_error)
        client.sig_progress.connect(self.on_progress)
        if hasattr(client, "sig_state_changed"):
            client.sig_state_changed.connect(self.on_engine_state)
        self.on_engine_state(getattr(client, "state", "ready"))

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.path = QLineEdit(_default_data())
        self.path.setPlaceholderText("Contrastive dialogues: a Turing-test CSV or JSONL with groups")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.on_browse)
        self.method = QComboBox()
        for key, label in METHODS:
            self.method.addItem(label, key)
        self.method.currentIndexChanged.connect(self._update_controls)
        self.judge = QComboBox()
        for key, label in JUDGES:
            self.judge.addItem(label, key)
        self.judge.currentIndexChanged.connect(self._update_controls)
        self.api_base = QLineEdit(os.environ.get("HAL_API_BASE", ""))
        self.api_base.setPlaceholderText("http://127.0.0.1:8000/v1")
        self.api_model = QLineEdit()
        self.api_model.setPlaceholderText("model (default: the server's)")
        self.api_key_env = QLineEdit("HAL_API_KEY")
        self.api_key_env.setToolTip("Name of the environment variable holding the key; the key is never stored")
        self.limit = QSpinBox()
        self.limit.setRange(0, 100000)
        self.limit.setSpecialValueText("all")
        self.limit.setValue(40)
        self.limit.setToolTip("Games to use (the judge takes several seconds a game on a CPU)")
        self.by = QComboBox()
        self.by.addItem("pooled", None)
        self.by.addItem("split by AI system", "ai_model")
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("sendButton")
        self.run_button.clicked.connect(self.on_run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.on_cancel)
        self.saved = QComboBox()
        self.saved.addItem("Open a saved run…", None)
        self.saved.activated.connect(self.on_open_saved)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress_text = QLabel("")
        self.progress_text.setStyleSheet("color: #4a5568;")
        row1 = QHBoxLayout()
        row1.addWidget(QLabel("Data"))
        row1.addWidget(self.path, 1)
        row1.addWidget(browse)
        row1.addWidget(self.saved)
        row2 = QHBoxLayout()
        for w in (self.method, self.judge, self.api_base, self.api_model, self.api_key_env, QLabel("games"),
                  self.limit, self.by, self.run_button, self.cancel_button):
            row2.addWidget(w, 1 if w is self.api_base else 0)
        row2.addStretch(1)
        row3 = QHBoxLayout()
        row3.addWidget(self.progress, 1)
        row3.addWidget(self.progress_text, 2)
        self.accept_panel = AcceptPanel()
        self.accept_panel.sig_accept.connect(self.on_accept)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._contrast_panel())
        splitter.addWidget(self._explain_panel())
        splitter.addWidget(self.accept_panel)
        splitter.setSizes([540, 560, 440])
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addLayout(row1)
        layout.addLayout(row2)
        layout.addLayout(row3)
        layout.addWidget(splitter, 1)
        self._update_controls()

    def _panel(self, title: str) -> tuple[QFrame, QVBoxLayout, QLabel]:
        frame = QFrame()
        frame.setObjectName("discoveryPanel")
        frame.setStyleSheet("#discoveryPanel { background: #ffffff; border: 1px solid #dfe3e8; border-radius: 6px; }")
        box = QVBoxLayout(frame)
        box.setContentsMargins(8, 8, 8, 8)
        box.addWidget(_heading(f"<b>{title}</b>"))
        summary = _heading("No run yet.")
        box.addWidget(summary)
        return frame, box, summary

    def _contrast_panel(self) -> QFrame:
        frame, box, self.contrast_summary = self._panel("Contrast: which surface features tell them apart")
        self.stratum = QComboBox()
        self.stratum.currentIndexChanged.connect(self.on_stratum)
        self.ranking = RankingPlot()
        self.features = _tree(["Feature (group)", "AUC", "95% CI", "Humans", "Draft statement"])
        add = QPushButton("Add ticked features")
        add.clicked.connect(lambda: self.on_add("contrast"))
        box.addWidget(self.stratum)
        box.addWidget(self.ranking, 3)
        box.addWidget(self.features, 2)
        box.addWidget(add)
        return frame

    def _explain_panel(self) -> QFrame:
        frame, box, self.explain_summary = self._panel("Explain: what the judge says gave the human away")
        self.map = StatementMap()
        self.map.sig_clicked.connect(self.on_map_clicked)
        self.clusters = _tree(["Theme", "Size", "Games", "Nearest the centre"])
        self.clusters.currentItemChanged.connect(self.on_cluster_selected)
        add = QPushButton("Add ticked themes")
        add.clicked.connect(lambda: self.on_add("explain"))
        box.addWidget(self.map, 3)
        box.addWidget(self.clusters, 2)
        box.addWidget(add)
        return frame

    def _update_controls(self) -> None:
        explain = self.method.currentData() == "explain"
        api = explain and self.judge.currentData() == "api"
        self.judge.setVisible(explain)
        for w in (self.api_base, self.api_model, self.api_key_env):
            w.setVisible(api)
        self.by.setVisible(not explain)
        ready = getattr(self.client, "state", "ready") == "ready"
        self.run_button.setEnabled(ready and self.running is None)
        self.cancel_button.setEnabled(self.running is not None)

    # -- engine -------------------------------------------------------------------------------
    def _send(self, type_: str, content: dict, what: str) -> str:
        cid = self.client.send(type_, content)
        self.pending[cid] = what
        return cid

    def on_engine_state(self, state: str) -> None:
        if state == "ready":
            self._send("discover.runs", {"limit": 30}, "runs")
        elif self.running:
            self.running = None
            self.progress_text.setText(f"The engine is {state}; the run was lost.")
        self._update_controls()

    def run_content(self) -> dict:
        method = self.method.currentData()
        content = {"path": self.path.text().strip(), "method": method, "limit": self.limit.value() or None}
        if method == "contrast":
            content["contrast"] = {"by": self.by.currentData()}
        else:
            content["explain"] = {"judge": self.judge.currentData(), "api_base": self.api_base.text().strip(),
                                  "api_model": self.api_model.text().strip(),
                                  "api_key_env": self.api_key_env.text().strip() or "HAL_API_KEY"}
        return content

    def on_run(self) -> None:
        self.running = self._send("discover.run", self.run_content(), "run")
        self.progress.setRange(0, 0)
        self.progress_text.setText("Starting…")
        self._update_controls()

    def on_cancel(self) -> None:
        if self.running:
            self.client.cancel(self.running)
            self.progress_text.setText("Cancelling after the current game…")

    def on_accept(self, content: dict) -> None:
        self._send("discover.accept", content, "accept")

    def on_open_saved(self, index: int) -> None:
        run_id = self.saved.itemData(index)
        if run_id:
            self._send("discover.get", {"run_id": run_id}, "get")

    def on_browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Contrastive dialogues", self.path.text(),
                                              "Dialogues (*.csv *.jsonl)")
        if path:
            self.path.setText(path)

    def on_progress(self, cid: str, content: dict) -> None:
        if cid != self.running:
            return
        done, total = content.get("done", 0), content.get("total", 0)
        if total and total > 1:
            self.progress.setRange(0, int(total))
            self.progress.setValue(int(done))
        eta = content.get("eta_s")
        self.progress_text.setText(str(content.get("message", "")) + (f" · about {eta:.0f} s left" if eta else ""))

    def on_result(self, cid: str, content: dict) -> None:
        what = self.pending.pop(cid, None)
        if what == "runs":
            self.saved.clear()
            self.saved.addItem("Open a saved run…", None)
            for r in content.get("runs", []):
                self.saved.addItem(f"{r['run_id']} · {r.get('source')}", r["run_id"])
        elif what == "get":
            self.show_run(content["run"])
        elif what == "accept":
            self.accept_panel.show_saved(content)
            self.sig_status.emit(f"Saved questionnaire {content.get('questionnaire')}")
        elif what == "run":
            self.running = None
            self.progress.setRange(0, 1)
            self.progress.setValue(1)
            self.progress_text.setText(f"Done in {content.get('seconds', 0):.0f} s · saved as {content.get('run_id')}")
            self.show_run(content)
            self._send("discover.runs", {"limit": 30}, "runs")
            self._update_controls()

    def on_error(self, cid: str, content: dict) -> None:
        what = self.pending.pop(cid, None)
        message = content.get("message", "failed")
        if what == "accept":
            self.accept_panel.show_error(message)
        elif what == "run":
            self.running = None
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            detail = content.get("detail") or ""
            self.progress_text.setText(f"<span style='color:#9b2c2c'>{message}</span>"
                                       + (f" <span style='color:#718096'>({detail[:200]})</span>" if detail else ""))
            self._update_controls()
        if what:
            self.sig_status.emit(f"Discovery: {message}")

    # -- showing a run ------------------------------------------------------------------------
    def show_run(self, run: dict) -> None:
        self.runs[run["method"]] = run
        (self.show_contrast if run["method"] == "contrast" else self.show_explain)(run)

    def show_contrast(self, run: dict) -> None:
        n70 = sum(1 for c in run["candidates"] if c["auc"] >= 0.7)
        text = (f"{Path(run['source']['path']).name}: {run['n_human']} human and {run['n_ai']} AI sides of "
                f"{run['n_games']} games · {len(run['candidates'])} features, {n70} with AUC ≥ 0.70 · "
                f"intervals: 95% bootstrap over games · ↑ humans show more, ↓ less")
        s = run.get("summary") or {}
        if "n_direction_flips" in s:
            text += (f"<br><span style='color:#975a16'>{len(run.get('systems') or {})} AI systems: "
                     f"{s['n_direction_flips']} features go significantly the other way against some system "
                     f"(marked ⇅); {s['n_at_mark_in_every_system']} reach 0.70 against every one</span>")
        if "n_two_sided_at_mark" in s:
            text += (f"<br>Nearer the typical human level, either side (two-sided): {s['n_two_sided_at_mark']} "
                     f"with AUC ≥ 0.70, led by {', '.join(s.get('two_sided_top', [])[:3])}")
        self.contrast_summary.setText(text)
        self.stratum.blockSignals(True)
        self.stratum.clear()
        self.stratum.addItem("All games (pooled)", None)
        for key, part in (run.get("strata") or {}).items():
            if "candidates" in part:
                self.stratum.addItem(f"{run.get('by')} = {key} ({part['n_games']} games)", key)
        self.stratum.setVisible(self.stratum.count() > 1)
        self.stratum.blockSignals(False)
        self.on_stratum()

    def on_stratum(self) -> None:
        run = self.runs.get("contrast")
        if not run:
            return
        key = self.stratum.currentData()
        part = run if key is None else run["strata"][key]
        self.ranking.set_candidates(part["candidates"])
        by_name = {c["name"]: c for c in part["candidates"]}
        self.features.clear()
        for g in part["groups"]:
            lead = by_name[g["lead"]]
            top = self._feature_item(lead, f"{g['id']}: {lead['label']}")
            top.setData(0, Qt.ItemDataRole.UserRole, {"from": [g["id"]], "name": lead["label"], "stratum": key,
                                                      "statement": lead["statement"], "feature": lead["name"]})
            for m in g["members"][1:]:
                child = self._feature_item(by_name[m], by_name[m]["label"])
                child.setData(0, Qt.ItemDataRole.UserRole, {"from": [m], "name": by_name[m]["label"], "stratum": key,
                                                            "statement": by_name[m]["statement"], "feature": m})
                top.addChild(child)
            self.features.addTopLevelItem(top)
        self.features.resizeColumnToContents(0)

    def _feature_item(self, c: dict, label: str) -> QTreeWidgetItem:
        flips = c.get("direction_flips")
        item = QTreeWidgetItem([label, f"{c['auc']:.3f}" + (" ⇅" if flips else ""),
                                f"{c['ci'][0]:.2f}–{c['ci'][1]:.2f}",
                                "more" if c["direction"].startswith("higher") else "less", c["statement"]])
        item.setCheckState(0, Qt.CheckState.Unchecked)
        item.setToolTip(0, f"{c['name']}: Cliff's delta {c['cliffs_delta']:+.2f}, Cohen's d {c['cohens_d']:+.2f}, "
                           f"human side ahead in {c['paired_win'] or 0:.0%} of games")
        if c.get("systems"):
            rows = [f"{k}: {v['auc']:.2f} {'↑' if v['direction'].startswith('higher') else '↓'}"
                    + ("" if v["significant"] else " (n.s.)") for k, v in c["systems"].items()]
            item.setToolTip(1, "AUC within each AI system's games:\n" + "\n".join(rows)
                            + (f"\ngoes the other way against: {', '.join(c['against_direction'])}" if flips else ""))
        return item

    def show_explain(self, run: dict) -> None:
        acc = run.get("judge_verdict_accuracy")
        ci = run.get("verdict_ci") or [0, 0]
        q = (run.get("clustering") or {}).get("quality") or {}
        shown = "–" if acc is None else f"{acc:.0%}"
        text = (f"Judge <b>{(run.get('judge') or {}).get('kind', '?')}</b> on {run['n_games']} games: picked the "
                f"human in <b>{shown}</b> (95% CI {ci[0]:.0%}–{ci[1]:.0%}; the paper's best judge 64.8%) · "
                f"{run['n_statements']} statements from {run['games_with_statements']} games")
        if q:
            text += f" · {q.get('n_clusters')} themes, {q.get('noise_share', 0):.0%} unclustered"
        bias = run.get("position_bias") or {}
        if bias.get("answers_a_share") is not None:
            consistent = bias.get("consistent_share")
            text += (f"<br>Position bias: answered “A” in <b>{bias['answers_a_share']:.0%}</b> of "
                     f"{bias.get('n_answers', 0)} asks (both orders per game; 50% = none)"
                     + ("" if consistent is None else f" · same chat named in both orders in {consistent:.0%} of "
                                                      f"games"))
            if bias.get("message"):
                text += f"<br><span style='color:#975a16'>{bias['message']}</span>"
        message = (run.get("clustering") or {}).get("message")
        if message:
            text += f"<br><span style='color:#975a16'>{message}</span>"
        self.explain_summary.setText(text)
        self.map.set_statements(run.get("statements") or [], run.get("clusters") or [], q.get("map", ""))
        self.clusters.clear()
        for k, c in enumerate(run.get("clusters") or []):
            share = c.get("correct_share")
            item = QTreeWidgetItem([c["id"], str(c["size"]), str(c["n_games"]), c["representatives"][0]])
            item.setCheckState(0, Qt.CheckState.Unchecked)
            item.setForeground(0, pg_colour(cluster_colour(k)))
            item.setToolTip(3, f"keywords: {', '.join(c.get('keywords', []))}; from a correct verdict: "
                               f"{'–' if share is None else f'{share:.0%}'}")
            item.setData(0, Qt.ItemDataRole.UserRole, {"from": [c["id"]], "name": "-".join(c.get("keywords", [])[:2])
                                                       or c["id"], "statement": c["representatives"][0]})
            for text, count in zip(c["representatives"][1:], c.get("representative_counts", [])[1:]):
                item.addChild(QTreeWidgetItem(["", f"×{count}", "", text]))
            self.clusters.addTopLevelItem(item)

    def on_map_clicked(self, cluster_id: str) -> None:
        for i in range(self.clusters.topLevelItemCount()):
            if self.clusters.topLevelItem(i).text(0) == cluster_id:
                self.clusters.setCurrentItem(self.clusters.topLevelItem(i))

    def on_cluster_selected(self, current, _previous=None) -> None:
        while current is not None and current.parent() is not None:
            current = current.parent()
        self.map.highlight(current.text(0) if current is not None else None)

    def on_add(self, method: str) -> None:
        run = self.runs.get(method)
        tree = self.features if method == "contrast" else self.clusters
        if not run:
            return
        picked = []
        stack = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
        while stack:
            item = stack.pop(0)
            stack[:0] = [item.child(i) for i in range(item.childCount())]
            if item.checkState(0) == Qt.CheckState.Checked:
                p = dict(item.data(0, Qt.ItemDataRole.UserRole))
                arrow = ""
                if p.get("feature"):
                    arrow = p["feature"]
                picked.append({**p, "measure": arrow or None})
                item.setCheckState(0, Qt.CheckState.Unchecked)
        if picked:
            self.accept_panel.add(run["run_id"], picked)


def pg_colour(hex_colour: str):
    from PySide6.QtGui import QColor

    return QColor(hex_colour)
