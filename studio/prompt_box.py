"""The prompt editor: Enter makes a new line, Ctrl+Enter sends to both panes."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QPlainTextEdit, QWidget


class PromptBox(QPlainTextEdit):
    sig_submit = Signal()
    """Ctrl+Enter was pressed: send the text."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("promptBox")
        self.setPlaceholderText("Write a prompt for both models…   (Ctrl+Enter sends)")
        self.setTabChangesFocus(True)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt API)
        if (event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
                and event.modifiers() & Qt.KeyboardModifier.ControlModifier):
            self.sig_submit.emit()
            return
        super().keyPressEvent(event)
