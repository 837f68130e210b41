"""The compact score on a reply's stats line: "HL 1.23 · p 0.77"; a click opens the breakdown."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton, QSizePolicy

STYLE = """
QPushButton#scoreBadge { border: 1px solid #cbd5e0; border-radius: 9px; padding: 1px 8px;
                         font-size: 8.5pt; color: #2c5282; background: #ebf4ff; }
QPushButton#scoreBadge:hover { background: #dbeafe; border-color: #90cdf4; }
QPushButton#scoreBadge[tone="unfitted"] { color: #744210; background: #fffaf0; border-color: #f6ad55; }
QPushButton#scoreBadge[tone="unfitted"]:hover { background: #feebc8; }
QPushButton#scoreBadge[tone="pending"], QPushButton#scoreBadge[tone="hidden"] {
    color: #a0aec0; background: #f7fafc; border-color: #e2e8f0; }
QPushButton#scoreBadge[tone="error"] { color: #9b2c2c; background: #fff5f5; border-color: #feb2b2; }
"""


def badge_text(entry: dict) -> str:
    return f"HL {entry['score']:.2f} · p {entry['probability']:.2f}"


def badge_tooltip(entry: dict, scoring: dict) -> str:
    lines = [f"Human-likeness score {entry['score']:.3f} (the logit of 'human'); p = {entry['probability']:.3f}",
             f"Judge {entry.get('judge')} · questionnaire {entry.get('questionnaire')} · "
             f"weights {entry.get('weights')}"]
    if entry.get("missing"):
        lines.append(f"{len(entry['missing'])} weighted trait(s) not rated (neutral 3 used): "
                     f"{entry.get('imputed_weight', 0):.0%} of the weight rests on them")
    if scoring.get("weights_note"):
        lines.append(scoring["weights_note"])
    lines.append("Rated over this model's replies so far in the conversation. Click for the breakdown.")
    return "\n".join(lines)


class ScoreBadge(QPushButton):
    """Shows one reply's score (or that it is on its way, hidden or failed)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("scoreBadge")
        self.setStyleSheet(STYLE)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        self.reply_id: str | None = None
        self.hide()

    def _set(self, text: str, tone: str, tip: str, clickable: bool) -> None:
        self.setText(text)
        self.setProperty("tone", tone)
        self.style().unpolish(self)
        self.style().polish(self)
        self.setToolTip(tip)
        self.setEnabled(clickable)
        self.show()

    def show_for(self, turn, reply, tracker) -> None:
        """Match the badge to a reply's state: no score yet, hidden (blind), scored, failed."""
        self.reply_id = reply.reply_id if reply is not None else None
        if tracker is None or reply is None or not reply.finished or not tracker.enabled():
            self.hide()
            return
        entry = tracker.get(reply.reply_id)
        if not turn.revealed:
            self._set("HL after rating", "hidden", "Scores of a blind turn show once you have rated it, "
                      "so they cannot sway the verdict.", False)
        elif entry is None:
            pending = tracker.is_pending(reply.reply_id)
            self._set("HL …", "pending", "Scoring this reply…" if pending else "Not scored yet", False)
        elif "error" in entry:
            message = entry["error"].get("message") or entry["error"].get("kind") or "failed"
            self._set("HL –", "error", f"Not scored: {message}", True)
        else:
            scoring = tracker.scoring_of(entry)
            tone = "ok" if scoring.get("weights_match_judge") else "unfitted"
            self._set(badge_text(entry), tone, badge_tooltip(entry, scoring), True)
