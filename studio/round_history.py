"""Past rounds (``round.list``): status, score change, and Resume for a stopped one."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

COLUMNS = ("Started", "Round", "Status", "Steps", "Score change", "Note")
STATUS_COLORS = {"done": "#2f855a", "running": "#b7791f", "cancelled": "#975a16", "failed": "#c53030"}


def kind_key(kind: str) -> str:
    """A round row's kind as ``round.kinds`` names it (rows write reward_weights)."""
    return str(kind or "").replace("_", "-")


def can_resume(row: dict, resumable_kinds: set[str]) -> bool:
    return row.get("status") in ("cancelled", "failed") and kind_key(row.get("kind")) in resumable_kinds


class RoundHistory(QWidget):
    """A table of past rounds, newest first."""

    sig_show_requested = Signal(dict)
    """Show a stored round's metrics and verdict: (round row)."""
    sig_resume_requested = Signal(dict)
    """Resume a cancelled or failed round from its last checkpoint: (round row)."""
    sig_refresh_requested = Signal()
    """The researcher asked for the list again."""
    sig_export_requested = Signal(dict)
    """Export a round with pairs as a folder for ``accelerate launch``: (round row)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.rows: list[dict] = []
        self.titles: dict[str, str] = {}
        self.resumable: set[str] = set()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("roundTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self.on_selection)
        self.table.cellDoubleClicked.connect(lambda r, _c: self.on_show())
        self.show_button = QPushButton("Show")
        self.show_button.setToolTip("Plot this round's logged metrics and show its verdict")
        self.show_button.clicked.connect(self.on_show)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue this round from its last checkpoint, with its settings")
        self.resume_button.clicked.connect(self.on_resume)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Write this round's pairs, TRL settings and an accelerate launch "
                                      "script to a new folder, to run it on a multi-GPU machine")
        self.export_button.clicked.connect(self.on_export)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.sig_refresh_requested)
        self.note = QLabel("")
        self.note.setStyleSheet("color: #718096;")
        row = QHBoxLayout()
        row.addWidget(self.note, 1)
        for button in (self.refresh_button, self.export_button, self.show_button, self.resume_button):
            row.addWidget(button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.table, 1)
        lay.addLayout(row)
        self.set_rounds([])

    def set_kinds(self, titles: dict[str, str], resumable: set[str]) -> None:
        self.titles, self.resumable = dict(titles), set(resumable)

    def set_rounds(self, rows: list[dict]) -> None:
        keep = self.selected()
        self.rows = list(rows)
        self.table.setRowCount(len(self.rows))
        for i, r in enumerate(self.rows):
            metrics = r.get("metrics") if isinstance(r.get("metrics"), dict) else {}
            verdict = r.get("verdict") if isinstance(r.get("verdict"), dict) else {}
            delta = verdict.get("delta")
            note = r.get("error") or ""
            if not note and metrics.get("heldout_accuracy") is not None:
                note = f"held-out pair accuracy {100 * metrics['heldout_accuracy']:.0f}%"
            cells = (str(r.get("created_at", ""))[:16].replace("T", " "),
                     self.titles.get(kind_key(r.get("kind")), r.get("kind", "?")), r.get("status", "?"),
                     str(metrics.get("steps", "–")), "–" if delta is None else f"{delta:+.2f}", note)
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(f"round {r.get('id')}\n{note}".strip())
                if j == 2:
                    item.setForeground(QColor(STATUS_COLORS.get(r.get("status"), "#4a5568")))
                if j in (3, 4):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(i, j, item)
        self.note.setText(f"{len(self.rows)} round{'s' if len(self.rows) != 1 else ''}" if self.rows
                          else "No rounds yet.")
        ids = [r.get("id") for r in self.rows]
        keep_id = keep.get("id") if keep else None
        self.table.selectRow(ids.index(keep_id) if keep_id in ids else 0)
        self.on_selection()

    def selected(self) -> dict | None:
        i = self.table.currentRow()
        return self.rows[i] if 0 <= i < len(self.rows) else None

    def on_selection(self) -> None:
        row = self.selected()
        self.show_button.setEnabled(row is not None)
        self.resume_button.setEnabled(row is not None and can_resume(row, self.resumable))
        lineage = row.get("lineage") if row is not None and isinstance(row.get("lineage"), dict) else {}
        self.export_button.setEnabled(bool(lineage.get("pair_set")))

    def on_show(self) -> None:
        row = self.selected()
        if row is not None:
            self.sig_show_requested.emit(row)

    def on_export(self) -> None:
        row = self.selected()
        if row is not None:
            self.sig_export_requested.emit(row)

    def on_resume(self) -> None:
        row = self.selected()
        if row is not None and can_resume(row, self.resumable):
            self.sig_resume_requested.emit(row)
