"""Past conversations from the store; double-click one to reopen it.

Each row shows the first prompt, and under it the date, turn count and how
many turns were rated, so the list stays readable in a narrow sidebar.
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import QModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter
from PySide6.QtWidgets import (QListWidget, QListWidgetItem, QStyle, QStyledItemDelegate,
                               QStyleOptionViewItem, QWidget)

ID_ROLE = Qt.ItemDataRole.UserRole
META_ROLE = Qt.ItemDataRole.UserRole + 1
CURRENT_ROLE = Qt.ItemDataRole.UserRole + 2


class _TwoLineDelegate(QStyledItemDelegate):
    """Prompt on the first line, grey details on the second."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        height = option.fontMetrics.height()
        return QSize(200, int(height * 2.4) + 12)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        painter.save()
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(option.rect, option.palette.highlight())
        elif index.data(CURRENT_ROLE):
            painter.fillRect(option.rect, QColor("#e8f0f9"))
        rect = option.rect.adjusted(10, 6, -8, -6)
        title_font = QFont(option.font)
        if index.data(CURRENT_ROLE):
            title_font.setBold(True)
        painter.setFont(title_font)
        painter.setPen(option.palette.highlightedText().color() if selected else QColor("#1a202c"))
        fm = painter.fontMetrics()
        title = fm.elidedText(index.data(Qt.ItemDataRole.DisplayRole) or "(empty)",
                              Qt.TextElideMode.ElideRight, rect.width())
        painter.drawText(QRect(rect.left(), rect.top(), rect.width(), fm.height()),
                         Qt.AlignmentFlag.AlignLeft, title)
        meta_font = QFont(option.font)
        meta_font.setPointSizeF(max(7.5, option.font.pointSizeF() - 1.5))
        painter.setFont(meta_font)
        painter.setPen(QColor("#dbe7f3") if selected else QColor("#718096"))
        top = rect.top() + fm.height() + 3
        painter.drawText(QRect(rect.left(), top, rect.width(), rect.bottom() - top),
                         Qt.AlignmentFlag.AlignLeft, index.data(META_ROLE) or "")
        painter.setPen(QColor("#e6e9ee"))
        painter.drawLine(option.rect.bottomLeft(), option.rect.bottomRight())
        painter.restore()


class HistoryPanel(QListWidget):
    """One row per conversation: first prompt; when, turns, ratings."""

    sig_open_requested = Signal(str)
    """Reopen this conversation: its id."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("historyPanel")
        self.setItemDelegate(_TwoLineDelegate(self))
        self.setUniformItemSizes(True)
        self.setToolTip("Double-click a conversation to reopen it")
        self.itemDoubleClicked.connect(self.on_double_clicked)
        self.current_id: str | None = None

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().paintEvent(event)
        if self.count() == 0:
            painter = QPainter(self.viewport())
            painter.setPen(QColor("#8a94a3"))
            painter.drawText(self.viewport().rect().adjusted(12, 12, -12, -12),
                             Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap,
                             "No conversations yet. Every prompt you send is kept here; "
                             "double-click one to reopen it.")
            painter.end()

    def set_conversations(self, rows: list[dict], current_id: str | None = None) -> None:
        self.current_id = current_id
        self.clear()
        for row in rows:
            prompt = (row.get("first_prompt") or row.get("title") or "").replace("\n", " ")
            turns, rated = int(row.get("n_turns") or 0), int(row.get("n_ratings") or 0)
            meta = (f"{_when(row.get('created_at', ''))}  ·  {turns} turn{'s' * (turns != 1)}"
                    f"  ·  {rated} rated" + ("  ·  blind" if row.get("blind") else ""))
            item = QListWidgetItem(prompt)
            item.setData(ID_ROLE, row["id"])
            item.setData(META_ROLE, meta)
            item.setData(CURRENT_ROLE, row["id"] == current_id)
            item.setToolTip(f"{prompt}\n{meta}")
            self.addItem(item)

    def row_texts(self, row: int) -> tuple[str, str]:
        """(first prompt, details line) of a row, as shown."""
        item = self.item(row)
        return item.text(), item.data(META_ROLE)

    def on_double_clicked(self, item: QListWidgetItem) -> None:
        self.sig_open_requested.emit(item.data(ID_ROLE))


def _when(iso: str) -> str:
    """Local '25 Nov 12:03' from a stored UTC timestamp."""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%d %b %H:%M")
    except ValueError:
        return iso
