"""The verdict on the latest turn: the paper's 5-point scale plus "both bad".

Keys 1–5 and 0 rate while no text field has focus (text fields take the
digits themselves, through Qt's shortcut override); Alt+1–5 / Alt+0 work
from anywhere, the prompt box included.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QButtonGroup, QFrame, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QVBoxLayout, QWidget)

# (verdict stored, button text, key)
VERDICTS = (
    ("certainly_left", "Certainly left", "1"),
    ("likely_left", "Likely left", "2"),
    ("tie", "Tie", "3"),
    ("likely_right", "Likely right", "4"),
    ("certainly_right", "Certainly right", "5"),
    ("both_bad", "Both bad", "0"),
)
VERDICT_TEXT = {v: text for v, text, _ in VERDICTS}


class RatingBar(QFrame):
    """Buttons, shortcuts, an optional note and a 'saved' confirmation."""

    sig_rated = Signal(str, str)
    """The researcher gave a verdict: (verdict, note)."""
    sig_note_edited = Signal(str)
    """The note was edited after the verdict was saved: the new note."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ratingBar")
        self.caption = QLabel("Rate the latest turn")
        self.caption.setObjectName("ratingCaption")
        self.saved = QLabel()
        self.saved.setObjectName("ratingSaved")
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.buttons: dict[str, QPushButton] = {}
        row = QHBoxLayout()
        row.setSpacing(6)
        for verdict, text, key in VERDICTS:
            if verdict == "both_bad":
                row.addSpacing(14)
            button = QPushButton(f"{text}  [{key}]")
            button.setCheckable(True)
            button.setObjectName("verdictButton")
            button.setProperty("verdict", verdict)
            button.setToolTip(f"{text}: press {key} (or Alt+{key} while typing)")
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _c=False, v=verdict: self.on_verdict(v))
            self.group.addButton(button)
            self.buttons[verdict] = button
            row.addWidget(button)
        self.note = QLineEdit()
        self.note.setPlaceholderText("Note (optional): why?")
        self.note.setClearButtonEnabled(True)
        self.note.editingFinished.connect(self.on_note_finished)
        head = QHBoxLayout()
        head.addWidget(self.caption)
        head.addStretch(1)
        head.addWidget(self.saved)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(6)
        layout.addLayout(head)
        body = QHBoxLayout()
        body.addLayout(row)
        body.addWidget(self.note, 1)
        layout.addLayout(body)
        self._saved_note = ""
        self._has_rating = False
        self.shortcuts: list[QShortcut] = []
        self.set_target(False, "Rate the latest turn once both replies are in")

    def install_shortcuts(self, window: QWidget) -> None:
        """Keys 1–5/0 and Alt+1–5/0 anywhere in ``window``."""
        for verdict, _text, key in VERDICTS:
            for seq in (key, f"Alt+{key}"):
                shortcut = QShortcut(QKeySequence(seq), window)
                shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
                shortcut.activated.connect(lambda v=verdict: self.on_verdict(v))
                self.shortcuts.append(shortcut)

    # -- state ----------------------------------------------------------------------
    def set_target(self, enabled: bool, caption: str, rating: dict | None = None,
                   stale: bool = False) -> None:
        """Point the bar at a turn (or disable it), showing its saved verdict."""
        self.caption.setText(caption)
        for button in self.buttons.values():
            button.setEnabled(enabled)
        self.note.setEnabled(enabled)
        self._has_rating = rating is not None and not stale
        self.group.setExclusive(False)
        for verdict, button in self.buttons.items():
            button.setChecked(self._has_rating and rating.get("verdict") == verdict)
        self.group.setExclusive(True)
        if rating is not None and stale:
            self.saved.setText("A reply was regenerated: rate again to replace the verdict")
            self.saved.setProperty("tone", "warn")
        elif rating is not None:
            self.show_saved(rating)
        else:
            self.saved.setText("")
        note = (rating or {}).get("note") or ""
        if self.note.text() != note and (rating is not None or not enabled):
            self.note.setText(note)
        self._saved_note = note
        self.saved.style().unpolish(self.saved)
        self.saved.style().polish(self.saved)

    def show_saved(self, rating: dict) -> None:
        if rating.get("queued"):
            self.saved.setText(f"⏳ queued · {VERDICT_TEXT.get(rating.get('verdict'), '')}: the store is "
                               "busy (another program is writing to it); this rating is kept on disk "
                               "and written as soon as the store is free")
            self.saved.setToolTip(rating["queued"])
            self.saved.setProperty("tone", "warn")
            return
        self.saved.setToolTip("")
        stamp = _local_time(rating.get("updated_at") or rating.get("created_at") or "")
        self.saved.setText(f"✓ saved {stamp} · {VERDICT_TEXT.get(rating.get('verdict'), '')}")
        self.saved.setProperty("tone", "ok")

    def show_error(self, message: str) -> None:
        self.saved.setText(f"✗ not saved: {message}")
        self.saved.setProperty("tone", "error")
        self.saved.style().unpolish(self.saved)
        self.saved.style().polish(self.saved)

    def is_enabled_for_rating(self) -> bool:
        return next(iter(self.buttons.values())).isEnabled()

    # -- slots ----------------------------------------------------------------------
    def on_verdict(self, verdict: str) -> None:
        if not self.is_enabled_for_rating():
            return
        self.buttons[verdict].setChecked(True)
        self.sig_rated.emit(verdict, self.note.text().strip())

    def on_note_finished(self) -> None:
        note = self.note.text().strip()
        if self._has_rating and note != self._saved_note:
            self._saved_note = note
            self.sig_note_edited.emit(note)


def _local_time(iso: str) -> str:
    """'12:03:04' in local time from a stored UTC ISO timestamp."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return iso
