"""Every rated turn with both replies: read it, fix its note, delete it (kept in
history), and re-check a few pairs blind with sides swapped (rater consistency)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QDialog, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QMessageBox,
                               QPlainTextEdit, QPushButton, QSplitter, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from engine.results import browser

VERDICT_TEXT = {"certainly_left": "Certainly left", "likely_left": "Likely left", "tie": "Tie",
                "likely_right": "Likely right", "certainly_right": "Certainly right",
                "both_bad": "Both bad"}
COLUMNS = ("Rated", "Verdict", "Left", "Right", "Prompt", "Note", "Blind", "Leak", "Rater")


def _item(text, tip: str = "") -> QTableWidgetItem:
    item = QTableWidgetItem(str(text))
    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
    if tip:
        item.setToolTip(tip)
    return item


class RatingsBrowser(QWidget):
    """A table of rated turns over a detail pane with both replies and the note."""

    sig_changed = Signal()
    """A note was edited or a rating deleted/restored: figures need recomputing."""

    def __init__(self, store, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        self.filters = None
        self.only_ids: set[str] | None = None
        self.rows: list[dict] = []
        self.confirm = self._ask  # replaced in tests

        self.scope = QLabel("")
        self.scope.setObjectName("hint")
        self.show_all = QPushButton("Show all ratings")
        self.show_all.clicked.connect(self.on_show_all)
        self.show_all.setVisible(False)
        top = QHBoxLayout()
        top.addWidget(self.scope, 1)
        top.addWidget(self.show_all)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self.on_selection)

        self.prompt = QLabel("")
        self.prompt.setWordWrap(True)
        self.left_box, self.right_box = QPlainTextEdit(), QPlainTextEdit()
        self.left_title, self.right_title = QLabel("Left"), QLabel("Right")
        panes = QHBoxLayout()
        for title, box in ((self.left_title, self.left_box), (self.right_title, self.right_box)):
            box.setReadOnly(True)
            col = QVBoxLayout()
            col.addWidget(title)
            col.addWidget(box)
            panes.addLayout(col)
        self.note = QLineEdit()
        self.note.setPlaceholderText("note")
        self.save_note = QPushButton("Save note")
        self.save_note.clicked.connect(self.on_save_note)
        self.delete = QPushButton("Delete rating")
        self.delete.setToolTip("Removes the rating from every figure; its row is kept in the "
                               "store's rating history.")
        self.delete.clicked.connect(self.on_delete)
        actions = QHBoxLayout()
        actions.addWidget(QLabel("Note:"))
        actions.addWidget(self.note, 1)
        actions.addWidget(self.save_note)
        actions.addWidget(self.delete)

        detail = QWidget()
        dl = QVBoxLayout(detail)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addWidget(self.prompt)
        dl.addLayout(panes, 1)
        dl.addLayout(actions)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(detail)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        self._set_detail(None)

    # -- data ----------------------------------------------------------------
    def set_filters(self, filters) -> None:
        self.filters = filters
        self.reload()

    def show_only(self, rating_ids, what: str = "") -> None:
        """Narrow the table to the ratings behind one figure."""
        self.only_ids = set(rating_ids)
        self.scope.setText(f"{len(self.only_ids)} ratings behind: {what}" if what else
                           f"{len(self.only_ids)} selected ratings")
        self.show_all.setVisible(True)
        self.reload()

    def on_show_all(self) -> None:
        self.only_ids = None
        self.show_all.setVisible(False)
        self.reload()

    def reload(self) -> None:
        """Re-read the ratings; the selected one stays selected if it is still there."""
        keep = (self.selected() or {}).get("rating_id")
        self.table.clearSelection()
        rows = browser.list_rated(self.store, self.filters)
        if self.only_ids is not None:
            rows = [r for r in rows if r["rating_id"] in self.only_ids]
        else:
            self.scope.setText(f"{len(rows)} rated turns, newest first")
        self.rows = rows
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            cells = (r["created_at"][:16].replace("T", " "), VERDICT_TEXT.get(r["verdict"], r["verdict"]),
                     r["left"]["model"], r["right"]["model"], r["prompt"].replace("\n", " ")[:120],
                     r["note"], "yes" if r["blind"] else "no", "⚠" if r["leak"] else "", r.get("rater", "me"))
            for j, text in enumerate(cells):
                self.table.setItem(i, j, _item(text, r["leak"] if j == 7 else ""))
        self._set_detail(None)
        for i, r in enumerate(rows):
            if r["rating_id"] == keep:
                self.table.selectRow(i)

    def selected(self) -> dict | None:
        rows = self.table.selectionModel().selectedRows()
        return self.rows[rows[0].row()] if rows else None

    def on_selection(self) -> None:
        self._set_detail(self.selected())

    def _set_detail(self, row: dict | None) -> None:
        for w in (self.note, self.save_note, self.delete):
            w.setEnabled(row is not None)
        if row is None:
            self.prompt.setText("Select a rating to see both replies.")
            for box in (self.left_box, self.right_box):
                box.setPlainText("")
            self.left_title.setText("Left")
            self.right_title.setText("Right")
            self.note.setText("")
            return
        self.prompt.setText(f"<b>Prompt</b> ({row['prompt_set'] or 'no prompt set'}): "
                            f"{_escape(row['prompt'])}<br><b>Verdict</b>: "
                            f"{VERDICT_TEXT.get(row['verdict'], row['verdict'])}"
                            + (f" &nbsp; <b>Leak</b>: {_escape(row['leak'])}" if row["leak"] else ""))
        for title, box, side, name in ((self.left_title, self.left_box, row["left"], "Left"),
                                       (self.right_title, self.right_box, row["right"], "Right")):
            scores = ", ".join(f"{j} {s:.2f}" for j, s in side["scores"].items())
            title.setText(f"<b>{name}</b>: {_escape(side['model'])}" + (f" — score {scores}" if scores else ""))
            box.setPlainText(side["text"])
        self.note.setText(row["note"])

    # -- edits ---------------------------------------------------------------
    def on_save_note(self) -> None:
        row = self.selected()
        if row:
            browser.edit_note(self.store, row["rating_id"], self.note.text())
            self.reload()
            self.sig_changed.emit()

    def on_delete(self) -> None:
        row = self.selected()
        if row and self.confirm(f"Delete the rating of “{row['prompt'][:60]}”? It leaves every "
                                "figure; the store keeps it in the rating history."):
            browser.delete_rating(self.store, row["rating_id"], reason="deleted in the ratings browser")
            self.reload()
            self.sig_changed.emit()

    def _ask(self, text: str) -> bool:
        answer = QMessageBox.question(self, "Delete rating", text)
        return answer == QMessageBox.StandardButton.Yes


def _escape(text: str) -> str:
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class RecheckDialog(QDialog):
    """Already-rated pairs again, blind, sides swapped; each answer is saved as a repeat."""

    sig_done = Signal(int)
    """How many repeats were saved."""

    def __init__(self, store, items: list[dict], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Re-check a few rated pairs")
        self.store, self.items, self.index, self.saved = store, items, 0, 0
        self.counter = QLabel("")
        self.prompt = QLabel("")
        self.prompt.setWordWrap(True)
        self.left_box, self.right_box = QPlainTextEdit(), QPlainTextEdit()
        panes = QHBoxLayout()
        for name, box in (("Left", self.left_box), ("Right", self.right_box)):
            box.setReadOnly(True)
            col = QVBoxLayout()
            col.addWidget(QLabel(f"<b>{name}</b>"))
            col.addWidget(box)
            panes.addLayout(col)
        self.buttons = {}
        row = QHBoxLayout()
        for verdict, text in VERDICT_TEXT.items():
            b = QPushButton(text)
            b.clicked.connect(lambda _=False, v=verdict: self.on_verdict(v))
            self.buttons[verdict] = b
            row.addWidget(b)
        layout = QVBoxLayout(self)
        hint = QLabel("Models are hidden. Rate as if for the first time; agreement with your "
                      "earlier verdict is measured after un-swapping the sides.")
        hint.setWordWrap(True)
        for w in (hint, self.counter, self.prompt):
            layout.addWidget(w)
        layout.addLayout(panes, 1)
        layout.addLayout(row)
        self.resize(760, 420)
        self._show()

    def _show(self) -> None:
        if self.index >= len(self.items):
            self.sig_done.emit(self.saved)
            self.accept()
            return
        item = self.items[self.index]
        self.counter.setText(f"Pair {self.index + 1} of {len(self.items)}")
        self.prompt.setText(f"<b>Prompt</b>: {_escape(item['prompt'])}")
        self.left_box.setPlainText(item["left"]["text"])
        self.right_box.setPlainText(item["right"]["text"])

    def on_verdict(self, verdict: str) -> None:
        item = self.items[self.index]
        browser.record_repeat(self.store, item["rating_id"], item["left"]["reply_id"],
                              item["right"]["reply_id"], verdict)
        self.saved += 1
        self.index += 1
        self._show()
