"""The basket of accepted proposals: edit, merge, drop, then save as a questionnaire version.

Rows are drafts; nothing is written until "Save as new version", which sends
``discover.accept`` with the run the proposals came from. Proposals of
different runs are not mixed in one save: the provenance names one run.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
                               QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

COLUMNS = ("From", "Name", "Statement", "Rated by")


class AcceptPanel(QWidget):
    sig_accept = Signal(dict)
    """The ``discover.accept`` content to send (run_id, items, questionnaire_id, base, name)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.run_id: str | None = None
        self.rows: list[dict] = []
        title = QLabel("Proposals to accept")
        title.setStyleSheet("font-weight: 600; color: #2d3748;")
        self.hint = QLabel("Tick clusters or features on the left and press “Add ticked”. Edit names and "
                           "statements here; merge rows that say the same thing.")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #718096; font-size: 8.5pt;")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Interactive)
        self.table.setColumnWidth(1, 120)
        self.table.setColumnWidth(3, 120)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.itemChanged.connect(self.on_item_changed)
        self.merge_button = QPushButton("Merge selected")
        self.merge_button.clicked.connect(self.on_merge)
        self.drop_button = QPushButton("Drop selected")
        self.drop_button.clicked.connect(self.on_drop)
        self.q_id = QLineEdit("discovered")
        self.q_id.setToolTip("Saved as the next version of this questionnaire id")
        self.base = QComboBox()
        self.base.setEditable(True)
        self.base.addItems(["(empty)", "hal32", "hal16"])
        self.base.setToolTip("Start from an existing questionnaire, or from none")
        self.save_button = QPushButton("Save as new version")
        self.save_button.setObjectName("sendButton")
        self.save_button.clicked.connect(self.on_save)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        edits = QHBoxLayout()
        edits.addWidget(self.merge_button)
        edits.addWidget(self.drop_button)
        edits.addStretch(1)
        target = QHBoxLayout()
        target.addWidget(QLabel("Questionnaire"))
        target.addWidget(self.q_id, 1)
        target.addWidget(QLabel("on"))
        target.addWidget(self.base)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for w in (title, self.hint, self.table):
            layout.addWidget(w, 1 if w is self.table else 0)
        layout.addLayout(edits)
        layout.addLayout(target)
        layout.addWidget(self.save_button)
        layout.addWidget(self.result)
        self._filling = False
        self._update()

    # -- rows ---------------------------------------------------------------------------------
    def add(self, run_id: str, proposals: list[dict]) -> None:
        """``proposals``: [{from: [ids], name, statement, measure}] from one run."""
        if self.run_id and run_id != self.run_id and self.rows:
            self.result.setText("The basket held proposals of another run; it now holds this run's only.")
            self.rows = []
        self.run_id = run_id
        have = {tuple(r["from"]) for r in self.rows}
        self.rows += [dict(p) for p in proposals if tuple(p["from"]) not in have]
        self._fill()

    def _fill(self) -> None:
        self._filling = True
        self.table.setRowCount(len(self.rows))
        for i, r in enumerate(self.rows):
            cells = ("+".join(r["from"]), r["name"], r["statement"], r.get("measure") or "llm / api judge")
            tips = ("", "", "", "How the trait gets rated: a measured feature (the 'measured' judge), or a judge "
                                "that reads the statement (llm / api)")
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text if j != 3 else f"{text}\n{tips[3]}")
                if j in (0, 3):
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                    item.setForeground(Qt.GlobalColor.darkGray)
                self.table.setItem(i, j, item)
        self.table.resizeRowsToContents()
        self._filling = False
        self._update()

    def on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling:
            return
        key = {1: "name", 2: "statement"}.get(item.column())
        if key:
            self.rows[item.row()][key] = item.text()
            self.rows[item.row()]["edited"] = True

    def _selected(self) -> list[int]:
        return sorted({i.row() for i in self.table.selectedIndexes()})

    def on_merge(self) -> None:
        rows = self._selected()
        if len(rows) < 2:
            self.result.setText("Select two or more rows to merge.")
            return
        first = self.rows[rows[0]]
        merged = {**first, "from": [i for r in rows for i in self.rows[r]["from"]],
                  "measure": next((self.rows[r].get("measure") for r in rows if self.rows[r].get("measure")), None)}
        self.rows = [r for k, r in enumerate(self.rows) if k not in rows[1:]]
        self.rows[rows[0]] = merged
        self._fill()

    def on_drop(self) -> None:
        rows = set(self._selected())
        self.rows = [r for k, r in enumerate(self.rows) if k not in rows]
        self._fill()

    def _update(self) -> None:
        self.save_button.setEnabled(bool(self.rows) and bool(self.q_id.text().strip()))
        self.merge_button.setEnabled(len(self.rows) >= 2)
        self.drop_button.setEnabled(bool(self.rows))

    # -- saving -------------------------------------------------------------------------------
    def content(self) -> dict:
        items = []
        for r in self.rows:
            item = {"from": r["from"], "name": r["name"], "statement": r["statement"]}
            if r.get("stratum") is not None:
                item["stratum"] = r["stratum"]
            items.append(item)
        base = self.base.currentText().strip()
        return {"run_id": self.run_id, "items": items, "questionnaire_id": self.q_id.text().strip(),
                "base": None if base in ("", "(empty)") else base}

    def on_save(self) -> None:
        self.result.setText("Saving…")
        self.sig_accept.emit(self.content())

    def show_saved(self, content: dict) -> None:
        ref = content.get("questionnaire", "?")
        self.result.setText(f"Saved <b>{ref}</b> ({content.get('n_traits')} traits, {len(content.get('accepted', []))} "
                            f"new). Fit weights for it with <code>hal fit DATA --questionnaire {ref} --judge "
                            f"measured</code>, or in the Traits tab."
                            + (f"<br><span style='color:#975a16'>{content['note']}</span>" if content.get("note")
                               else ""))
        self.rows = []
        self._fill()

    def show_error(self, message: str) -> None:
        self.result.setText(f"<span style='color:#9b2c2c'>Not saved: {message}</span>")
