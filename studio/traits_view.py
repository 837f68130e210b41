"""The Traits tab: the questionnaire as an editable table, the weights as a
plot, and a fit of new weights with its cross-validation figures.

Everything goes through the engine (``score.config``, ``questionnaire.get`` /
``save``, ``weights.get``, ``fit.run``), so the studio never reads or writes
scoring files itself.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from studio.engine_calls import EngineCalls
from studio.engine_client import EngineClient
from studio.fit_panel import FitPanel
from studio.weights_plot import WeightsPlot

COLUMNS = ("id", "short name", "statement", "theme")
NEW = "new"
LEXICAL_HINT = ("The lexical judge rates traits by id from surface rules: rewording a statement does not change "
                "its ratings, and a new trait stays unrated until a judge that reads statements is used.")


class TraitsView(QWidget):
    """Questionnaire editor, weights plot and fit panel over one engine client."""

    sig_status = Signal(str)
    """A one-line message for the status bar."""

    def __init__(self, client: EngineClient, parent: QWidget | None = None):
        super().__init__(parent)
        self.client = client
        self.calls = EngineCalls(client, self)
        self.config: dict = {}
        self.questionnaire: dict = {}
        self.dirty = False
        self._filling = False
        self.default_line = QLabel("Waiting for the engine…")
        self.default_line.setWordWrap(True)
        self.default_line.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.q_combo = QComboBox()
        self.q_combo.setMinimumContentsLength(14)
        self.q_combo.activated.connect(lambda _i: self.load_questionnaire(self.q_combo.currentData()))
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([c.capitalize() for c in COLUMNS])
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)  # one line a trait; the whole statement is in the tooltip
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemChanged.connect(self.on_item_changed)
        self.add_button = QPushButton("Add trait")
        self.drop_button = QPushButton("Drop selected")
        self.revert_button = QPushButton("Revert")
        self.save_button = QPushButton("Save as new version")
        self.save_button.setObjectName("sendButton")
        self.add_button.clicked.connect(self.on_add)
        self.drop_button.clicked.connect(self.on_drop)
        self.revert_button.clicked.connect(lambda: self.load_questionnaire(self.questionnaire.get("ref")))
        self.save_button.clicked.connect(self.on_save)
        self.q_state = QLabel("")
        self.w_combo = QComboBox()
        self.w_combo.setMinimumContentsLength(22)
        self.w_combo.activated.connect(lambda _i: self.load_weights(self.w_combo.currentData()))
        self.weights_plot = WeightsPlot()
        self.fit_panel = FitPanel(self.calls)
        self.fit_panel.sig_fit_finished.connect(self.on_fit_finished)
        self._build_layout()
        self._set_dirty(False)
        client.sig_state_changed.connect(self.on_engine_state)
        self.fit_panel.sig_log.connect(client.sig_log)
        if client.state == "ready":
            self.refresh()

    def _build_layout(self) -> None:
        q_top = QHBoxLayout()
        q_top.addWidget(QLabel("Questionnaire"))
        q_top.addWidget(self.q_combo)
        q_top.addStretch(1)
        q_top.addWidget(self.q_state)
        q_buttons = QHBoxLayout()
        for b in (self.add_button, self.drop_button, self.revert_button):
            q_buttons.addWidget(b)
        q_buttons.addStretch(1)
        q_buttons.addWidget(self.save_button)
        hint = QLabel(LEXICAL_HINT)
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #718096; font-size: 8.5pt;")
        q_box = QGroupBox("Traits")
        ql = QVBoxLayout(q_box)
        ql.addLayout(q_top)
        ql.addWidget(self.table, 1)
        ql.addWidget(hint)
        ql.addLayout(q_buttons)
        w_top = QHBoxLayout()
        w_top.addWidget(QLabel("Weights"))
        w_top.addWidget(self.w_combo, 1)
        w_box = QGroupBox("Weights by trait id")
        wl = QVBoxLayout(w_box)
        wl.addLayout(w_top)
        wl.addWidget(self.weights_plot, 1)
        f_box = QGroupBox("Run a fit: learn weights that tell human from AI speakers")
        QVBoxLayout(f_box).addWidget(self.fit_panel)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(w_box)
        right.addWidget(f_box)
        right.setSizes([420, 360])
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(q_box)
        split.addWidget(right)
        split.setSizes([700, 640])
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.sig_status.connect(self.status.setText)
        layout = QVBoxLayout(self)
        layout.addWidget(self.default_line)
        layout.addWidget(split, 1)
        layout.addWidget(self.status)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        """Other views (a fit elsewhere, trait discovery) add versions: show the current lists."""
        super().showEvent(event)
        if self.config:
            self.refresh()

    # -- engine ---------------------------------------------------------------------------
    def on_engine_state(self, state: str) -> None:
        if state == "ready":
            self.refresh()

    def refresh(self) -> None:
        """Ask for the choices (judges, questionnaires, weights) and the default."""
        if self.client.state != "ready" or not self.calls.supports("score.config"):
            self.default_line.setText("This engine does not offer scoring commands.")
            return
        self.calls.call("score.config", on_result=self.on_config, on_error=self.on_engine_error)

    def on_engine_error(self, content: dict) -> None:
        self.sig_status.emit(f"Traits: {content.get('message') or content.get('kind')}")
        self.q_state.setText(f"<span style='color:#c53030'>{content.get('message') or 'failed'}</span>")

    def on_config(self, config: dict, select_q: str | None = None, select_w: str | None = None) -> None:
        self.config = config
        default = config.get("default") or {}
        tone = "#276749" if default.get("weights_match_judge") else "#975a16"
        self.default_line.setText(
            f"Replies in the compare view are scored with judge <b>{default.get('judge')}</b> and weights "
            f"<b>{default.get('weights')}</b>: <span style='color:{tone}'>{default.get('weights_note', '')}</span>")
        self._fill_combo(self.q_combo, [(q["ref"], f"{q['ref']} · {q['n_traits']} traits")
                                        for q in config.get("questionnaires", [])],
                         select_q or self.questionnaire.get("ref") or default.get("questionnaire"))
        self._fill_combo(self.w_combo, [(w["ref"], f"{w['ref']} · {w['n_traits']} traits"
                                         + (f" · fitted on {w['fitted_on_judge']}" if w.get("fitted_on_judge") else ""))
                                        for w in config.get("weights", [])],
                         select_w or self.w_combo.currentData() or default.get("weights"))
        self.fit_panel.set_judges(config.get("judges", []))
        self.fit_panel.set_shared_path(config.get("shared_turing"))
        if not self.dirty and self.q_combo.currentData() != self.questionnaire.get("ref"):
            self.load_questionnaire(self.q_combo.currentData())
        self.load_weights(self.w_combo.currentData())

    @staticmethod
    def _fill_combo(combo: QComboBox, items: list[tuple[str, str]], select: str | None) -> None:
        combo.blockSignals(True)
        combo.clear()
        for ref, text in items:
            combo.addItem(text, ref)
        index = combo.findData(select) if select else -1
        combo.setCurrentIndex(index if index >= 0 else 0)
        combo.blockSignals(False)

    # -- questionnaire ------------------------------------------------------------------------
    def load_questionnaire(self, ref: str | None) -> None:
        if ref:
            self.calls.call("questionnaire.get", {"ref": ref}, on_result=self.on_questionnaire,
                            on_error=self.on_engine_error)

    def on_questionnaire(self, content: dict) -> None:
        q = content["questionnaire"]
        if self.dirty and q.get("ref") != self.questionnaire.get("ref"):
            self.sig_status.emit(f"Unsaved edits to {self.questionnaire.get('ref')} were discarded.")
        self.questionnaire = q
        self._filling = True
        self.table.setRowCount(0)
        for t in q.get("traits", []):
            self._append_row(t.get("id"), t.get("name", ""), t.get("statement", ""), t.get("theme", ""))
        self._filling = False
        index = self.q_combo.findData(q.get("ref"))
        if index >= 0:
            self.q_combo.setCurrentIndex(index)
        self._set_dirty(False)

    def _append_row(self, tid, name: str, statement: str, theme: str) -> int:
        row = self.table.rowCount()
        self.table.insertRow(row)
        id_item = QTableWidgetItem(NEW if tid is None else str(tid))
        id_item.setFlags(id_item.flags() & ~Qt.ItemFlag.ItemIsEditable)
        id_item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.table.setItem(row, 0, id_item)
        for col, text in ((1, name), (2, statement), (3, theme)):
            item = QTableWidgetItem(text)
            item.setToolTip(text)
            self.table.setItem(row, col, item)
        return row

    def traits(self) -> list[dict]:
        """The table as the engine's ``questionnaire.save`` wants it (new rows without an id)."""
        out = []
        for row in range(self.table.rowCount()):
            text = [(self.table.item(row, col).text() if self.table.item(row, col) else "").strip()
                    for col in range(len(COLUMNS))]
            out.append({"id": None if text[0] in ("", NEW) else int(text[0]), "name": text[1],
                        "statement": text[2], "theme": text[3]})
        return out

    def _set_dirty(self, dirty: bool) -> None:
        self.dirty = dirty
        self.save_button.setEnabled(dirty)
        self.revert_button.setEnabled(dirty)
        ref = self.questionnaire.get("ref", "")
        self.q_state.setText(f"<span style='color:#975a16'>unsaved edits to {ref}</span>" if dirty
                             else (f"parent {self.questionnaire['parent']}" if self.questionnaire.get("parent") else ""))

    def on_item_changed(self, _item) -> None:
        if not self._filling:
            self._set_dirty(True)

    def on_add(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        theme_item = self.table.item(rows[0].row(), 3) if rows else None
        row = self._append_row(None, "", "", theme_item.text() if theme_item else "")
        self._set_dirty(True)
        self.table.scrollToItem(self.table.item(row, 1))
        self.table.editItem(self.table.item(row, 1))

    def on_drop(self) -> None:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()}, reverse=True)
        for row in rows:
            self.table.removeRow(row)
        if rows:
            self._set_dirty(True)

    def on_save(self) -> None:
        base = self.questionnaire.get("ref")
        self.save_button.setEnabled(False)
        self.calls.call("questionnaire.save", {"base": base, "traits": self.traits()},
                        on_result=self.on_saved, on_error=self.on_save_failed)

    def on_saved(self, content: dict) -> None:
        changes = content.get("changes") or {}
        said = "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in changes.items() if v) or "renamed"
        self.q_state.setText("")
        self.sig_status.emit(f"Saved {content['ref']} ({said}).")
        self.dirty = False
        self.on_questionnaire({"questionnaire": content["questionnaire"]})
        self.calls.call("score.config", on_result=lambda c: self.on_config(c, select_q=content["ref"]),
                        on_error=self.on_engine_error)

    def on_save_failed(self, content: dict) -> None:
        self.save_button.setEnabled(True)
        self.q_state.setText(f"<span style='color:#c53030'>Not saved: {content.get('message')}</span>")

    # -- weights and fits -------------------------------------------------------------------
    def load_weights(self, ref: str | None) -> None:
        if ref:
            self.calls.call("weights.get", {"ref": ref},
                            on_result=lambda c: self.weights_plot.set_weights(c["weights"], c.get("traits", [])),
                            on_error=self.on_engine_error)

    def on_fit_finished(self, report: dict) -> None:
        saved = report.get("saved_weights")

        def refreshed(config: dict) -> None:
            self.on_config(config, select_w=saved)
            if saved:
                default = (config.get("default") or {}).get("weights")
                self.sig_status.emit(
                    f"Fit saved as {saved}; choose it as a round's Weights to train on it. Reply badges keep "
                    f"the default {default}, the same on every machine.")

        self.calls.call("score.config", on_result=refreshed, on_error=self.on_engine_error)
