"""Past conversations from the store; double-click one to reopen it."""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QHeaderView, QTreeWidget, QTreeWidgetItem, QWidget


class HistoryPanel(QTreeWidget):
    """One row per conversation: when, first prompt, turns, ratings."""

    sig_open_requested = Signal(str)
    """Reopen this conversation: its id."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("historyPanel")
        self.setColumnCount(4)
        self.setHeaderLabels(["When", "First prompt", "Turns", "Rated"])
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        header = self.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        self.itemDoubleClicked.connect(self.on_double_clicked)
        self.current_id: str | None = None

    def set_conversations(self, rows: list[dict], current_id: str | None = None) -> None:
        self.current_id = current_id
        self.clear()
        for row in rows:
            prompt = (row.get("first_prompt") or row.get("title") or "").replace("\n", " ")
            item = QTreeWidgetItem([_when(row.get("created_at", "")), prompt,
                                    str(row.get("n_turns", 0)), str(row.get("n_ratings", 0))])
            item.setData(0, Qt.ItemDataRole.UserRole, row["id"])
            item.setToolTip(1, prompt)
            for col in (2, 3):
                item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if row.get("blind"):
                item.setToolTip(0, "started in blind mode")
            if row["id"] == current_id:
                font = QFont(item.font(0))
                font.setBold(True)
                for col in range(4):
                    item.setFont(col, font)
            self.addTopLevelItem(item)

    def on_double_clicked(self, item: QTreeWidgetItem, _column: int) -> None:
        self.sig_open_requested.emit(item.data(0, Qt.ItemDataRole.UserRole))


def _when(iso: str) -> str:
    """Local 'Mon 14 Jul 12:03' from a stored UTC timestamp."""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%d %b %H:%M")
    except ValueError:
        return iso
