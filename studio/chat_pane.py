"""One side of the compare view: the turns as shown on that side, streaming live."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea,
                               QSizePolicy, QVBoxLayout, QWidget)

from studio.breakdown_view import open_breakdown
from studio.conversation import Reply, Turn
from studio.score_badge import ScoreBadge
from studio.session import CompareSession

FLUSH_MS = 40  # streamed text is redrawn at most this often
EMPTY_HINTS = {"left": "Write a prompt below and press Ctrl+Enter: both models answer at once.",
               "right": "When both replies are in, rate the turn: keys 1–5, or 0 if both are bad."}
PROMPT_SHOWN = 1200  # longer prompts are shown cut (the whole text is in the tooltip)


def shown_prompt(prompt: str) -> str:
    if len(prompt) <= PROMPT_SHOWN:
        return prompt
    return f"{prompt[:PROMPT_SHOWN].rstrip()} … [{len(prompt) - PROMPT_SHOWN:,} more characters]"


def _label(name: str, text: str = "", selectable: bool = False, plain: bool = True) -> QLabel:
    label = QLabel(text)
    label.setObjectName(name)
    label.setWordWrap(True)
    if plain:
        label.setTextFormat(Qt.TextFormat.PlainText)
    if selectable:
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class ElidedLabel(QLabel):
    """One line of text that ends in '…' when the pane is narrow."""

    def __init__(self, name: str):
        super().__init__()
        self.setObjectName(name)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._full = ""

    def setText(self, text: str) -> None:  # noqa: N802 (Qt API)
        self._full = text
        self.setToolTip(text)
        super().setText(text)
        self._elide()

    def text(self) -> str:
        return self._full

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight,
                                              max(self.width(), 10))
        if shown != super().text():
            super().setText(shown)


class TurnView(QFrame):
    """A prompt and the reply shown on this side for one turn."""

    def __init__(self, turn: Turn, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("turnView")
        self.turn_caption = _label("turnCaption", f"Turn {turn.idx + 1}")
        self.prompt = _label("promptText", shown_prompt(turn.prompt), selectable=True)
        if len(turn.prompt) > PROMPT_SHOWN:
            self.prompt.setToolTip(turn.prompt[:20000])
        self.model_caption = _label("modelCaption")
        self.reply = _label("replyText", selectable=True)
        self.stats = ElidedLabel("statsLine")  # one line, so the score badge beside it never leaves a gap
        self.badge = ScoreBadge()
        self.loop_marker = _label("loopMarker", "⟳ loops")  # the engine's loop flag, reason in the tooltip
        self.loop_marker.setWordWrap(False)
        self.loop_marker.setVisible(False)
        self.error = _label("errorText", selectable=True)
        prompt_box = QFrame()
        prompt_box.setObjectName("promptBubble")
        pl = QVBoxLayout(prompt_box)
        pl.setContentsMargins(10, 6, 10, 8)
        pl.setSpacing(2)
        you = _label("youCaption", "You")
        pl.addWidget(you)
        pl.addWidget(self.prompt)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 10)
        layout.setSpacing(4)
        layout.addWidget(self.turn_caption)
        layout.addWidget(prompt_box)
        layout.addSpacing(4)
        layout.addWidget(self.model_caption)
        layout.addWidget(self.reply)
        layout.addWidget(self.error)
        stats_row = QHBoxLayout()
        stats_row.setSpacing(10)
        stats_row.addWidget(self.stats, 1)
        stats_row.addWidget(self.loop_marker)
        stats_row.addWidget(self.badge)
        layout.addLayout(stats_row)

    def show_reply(self, turn: Turn, reply: Reply | None) -> None:
        if reply is None:
            self.model_caption.setText("")
            self.reply.setText("")
            return
        name = reply.model_label if turn.revealed else "?"
        self.model_caption.setText(f"Model {reply.slot.upper()} · {name}" if turn.revealed
                                   else "Model ?  (hidden until you rate this turn)")
        self.reply.setText(reply.text)
        self.reply.setVisible(bool(reply.text) or reply.live)
        error = ""
        if reply.status == "error":
            error = reply.error
        elif reply.status == "interrupted" and not reply.reply_id:
            error = "Interrupted: the engine stopped before this reply finished. It was not saved."
        self.error.setText(error)
        self.error.setVisible(bool(error))
        self.stats.setText(reply.stats_line())
        self.stats.setVisible(bool(self.stats.text()))
        looping = bool(reply.looping) and not reply.live
        self.loop_marker.setVisible(looping)
        self.loop_marker.setToolTip(f"This reply repeats itself or degenerates ({reply.loop_reason}). "
                                    "Rule: engine/scoring/README.md, loop detector." if looping else "")


class ChatPane(QFrame):
    """The left or right pane: header with the model name, turns, Stop/Regenerate."""

    sig_stop_requested = Signal(str)
    """Stop this pane's reply: the side."""
    sig_regenerate_requested = Signal(str)
    """Regenerate this pane's reply to the last turn: the side."""

    def __init__(self, side: str, session: CompareSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("chatPane")
        self.side = side
        self.session = session
        self.views: list[TurnView] = []
        self._dirty: set[int] = set()
        self.side_label = _label("paneSide", side.capitalize())
        self.model_label = ElidedLabel("paneModel")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("paneButton")
        self.stop_button.setToolTip("Stop this pane's reply (Esc stops both)")
        self.regen_button = QPushButton("Regenerate")
        self.regen_button.setObjectName("paneButton")
        self.regen_button.setToolTip("Replace this pane's reply to the last turn")
        self.stop_button.clicked.connect(lambda: self.sig_stop_requested.emit(self.side))
        self.regen_button.clicked.connect(lambda: self.sig_regenerate_requested.emit(self.side))
        header = QFrame()
        header.setObjectName("paneHeader")
        hl = QHBoxLayout(header)
        hl.setContentsMargins(12, 6, 8, 6)
        hl.addWidget(self.side_label)
        hl.addWidget(self.model_label, 1)
        hl.addWidget(self.stop_button)
        hl.addWidget(self.regen_button)
        self.body = QWidget()
        self.body.setObjectName("paneBody")
        self.body_layout = QVBoxLayout(self.body)
        self.body_layout.setContentsMargins(16, 8, 16, 8)
        self.body_layout.setSpacing(6)
        self.empty = _label("emptyHint", EMPTY_HINTS[side])
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.body_layout.addWidget(self.empty)
        self.body_layout.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(self.body)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(header)
        layout.addWidget(self.scroll, 1)
        self._stick = True
        bar = self.scroll.verticalScrollBar()
        bar.valueChanged.connect(lambda v: setattr(self, "_stick", v >= bar.maximum() - 24))
        bar.rangeChanged.connect(lambda _lo, hi: bar.setValue(hi) if self._stick else None)
        self._timer = QTimer(self)
        self._timer.setInterval(FLUSH_MS)
        self._timer.timeout.connect(self.on_flush)
        session.scores.sig_scored.connect(self.on_scored)
        self.rebuild()

    # -- building -------------------------------------------------------------------
    def rebuild(self) -> None:
        for view in self.views:
            view.deleteLater()
        self.views = []
        self._dirty.clear()
        for turn in self.session.turns:
            self._append_view(turn)
        self._stick = True
        self.refresh_header()

    def add_turn(self, idx: int) -> None:
        self._stick = True
        self._append_view(self.session.turns[idx])
        self.refresh_header()

    def _append_view(self, turn: Turn) -> None:
        view = TurnView(turn)
        self.body_layout.insertWidget(self.body_layout.count() - 1, view)
        self.views.append(view)
        view.show_reply(turn, turn.reply_on(self.side))
        view.badge.show_for(turn, turn.reply_on(self.side), self.session.scores)
        view.badge.clicked.connect(lambda _=False, i=turn.idx: open_breakdown(self.session, i, self.window()))
        self.empty.setVisible(False)

    # -- updates ----------------------------------------------------------------------
    def shows(self, idx: int, slot: str) -> bool:
        return idx < len(self.views) and self.session.turns[idx].slot_on(self.side) == slot

    def refresh_turn(self, idx: int) -> None:
        if idx < len(self.views):
            turn = self.session.turns[idx]
            self.views[idx].show_reply(turn, turn.reply_on(self.side))
            self.views[idx].badge.show_for(turn, turn.reply_on(self.side), self.session.scores)
            self._dirty.discard(idx)
        self.refresh_header()

    def on_scored(self, reply_id: str) -> None:
        """A score arrived: update the badge of the reply it belongs to."""
        for idx, view in enumerate(self.views):
            turn = self.session.turns[idx] if idx < len(self.session.turns) else None
            reply = turn.reply_on(self.side) if turn else None
            if reply is not None and reply.reply_id == reply_id:
                view.badge.show_for(turn, reply, self.session.scores)

    def mark_streamed(self, idx: int) -> None:
        """Queue a redraw of streamed text (throttled to FLUSH_MS)."""
        self._dirty.add(idx)
        if not self._timer.isActive():
            self._timer.start()

    def on_flush(self) -> None:
        if not self._dirty:
            self._timer.stop()
            return
        for idx in sorted(self._dirty):
            if idx < len(self.views):
                reply = self.session.turns[idx].reply_on(self.side)
                view = self.views[idx]
                view.reply.setText(reply.text if reply else "")
                view.reply.setVisible(True)
                view.stats.setText(reply.stats_line() if reply else "")
                view.stats.setVisible(True)
        self._dirty.clear()

    def refresh_header(self) -> None:
        turn = self.session.latest
        if turn is None:
            self.empty.setVisible(True)
            if self.session.blind:
                text = "Model ?  (blind: sides are drawn at random each turn)"
            else:
                slot = "a" if self.side == "left" else "b"
                text = f"Model {slot.upper()} · {self.session.label(slot)}"
        else:
            reply = turn.reply_on(self.side)
            slot = turn.slot_on(self.side)
            text = (f"Model {slot.upper()} · {reply.model_label if reply else ''}"
                    if turn.revealed else "Model ?  (revealed after you rate)")
        self.model_label.setText(text)
        live = bool(turn and (reply := turn.reply_on(self.side)) and reply.live)
        self.stop_button.setEnabled(live)
        self.regen_button.setEnabled(turn is not None and not live
                                     and self.session.client.state in ("ready", "starting"))
