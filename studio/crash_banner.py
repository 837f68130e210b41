"""The banner shown when the engine has died: what happened, and a restart."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from studio.engine_client import crash_reason


class CrashBanner(QFrame):
    """Hidden until the engine crashes; says plainly that nothing saved is lost."""

    sig_restart_requested = Signal()
    """The researcher asked for a fresh engine."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("crashBanner")
        self.message = QLabel()
        self.message.setObjectName("crashMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.restart_button = QPushButton("Restart engine")
        self.restart_button.setObjectName("restartButton")
        self.restart_button.clicked.connect(self.sig_restart_requested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(14, 8, 10, 8)
        layout.addWidget(self.message, 1)
        layout.addWidget(self.restart_button)
        self.hide()

    def show_crash(self, reason: str, tail: list[str] | None = None, why: str | None = None) -> None:
        """Show ``reason`` (e.g. 'The engine stopped (signal 9).') and the
        engine's line that names the cause (an assert, OOM): ``why``, else
        picked from its last words ``tail``."""
        text = (f"<b>{_esc(reason)}</b> Everything saved is kept; replies that were streaming "
                "are marked interrupted.")
        why = why if why is not None else crash_reason(tail or [])
        if why:
            text += (f"<br><span style='color:#9b6b6b; font-size:8.5pt'>Last engine output: "
                     f"{_esc(why[:300])}</span>")
        self.message.setText(text)
        self.message.setToolTip("\n".join(tail or []) or reason)
        self.show()


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
