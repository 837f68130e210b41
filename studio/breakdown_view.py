"""The score breakdown of one turn: each trait's rating and share of the score,
the left and right replies side by side, and the difference per trait.

The difference is in score points, ``w·(rating_left − rating_right)``: the
points of all traits add up to the gap between the two scores (the bias
cancels), so the chart says which traits make one reply sound more human.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QComboBox, QDialog, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                               QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

SIDE_COLORS = {"left": "#3182ce", "right": "#dd6b20"}
UNRATED = "#a0aec0"
ORDERS = (("diff", "Largest difference first"), ("weight", "Largest weight first"), ("id", "Trait id"))
NOTE_STYLE = {True: "color: #276749; background: #f0fff4; border: 1px solid #9ae6b4;",
              False: "color: #744210; background: #fffaf0; border: 1px solid #f6ad55;"}


def _num(entry: dict | None, key: str, tid: str):
    if not entry or "error" in entry:
        return None
    return (entry.get(key) or {}).get(tid)


def breakdown_rows(left: dict | None, right: dict | None, names: dict[str, dict], order: str = "diff") -> list[dict]:
    """One row per trait of either score: rating, share, contribution per side, and the difference."""
    scored = [e for e in (left, right) if e and "error" not in e]
    ids = sorted({t for e in scored for t in (*e.get("traits", {}), *e.get("weights_used", {}))}, key=int)
    rows = []
    for tid in ids:
        row = {"id": tid, "name": names.get(tid, {}).get("name", f"trait {tid}"),
               "theme": names.get(tid, {}).get("theme", ""), "weight": None}
        for side, entry in (("left", left), ("right", right)):
            row[f"rating_{side}"] = _num(entry, "traits", tid)
            row[f"share_{side}"] = _num(entry, "shares", tid)
            row[f"points_{side}"] = _num(entry, "contributions", tid)
            row[f"imputed_{side}"] = bool(entry and "error" not in entry and int(tid) in entry.get("missing", []))
            row["weight"] = row["weight"] if row["weight"] is not None else _num(entry, "weights_used", tid)
        both = row["points_left"] is not None and row["points_right"] is not None
        row["diff"] = row["points_left"] - row["points_right"] if both else None
        rows.append(row)
    if order == "diff":
        rows.sort(key=lambda r: (-(abs(r["diff"]) if r["diff"] is not None else -1), -abs(r["weight"] or 0)))
    elif order == "weight":
        rows.sort(key=lambda r: -abs(r["weight"] or 0))
    return rows


def _rating_text(rating, imputed: bool, weight) -> str:
    if rating is None:
        return "not rated" + (" (3 used)" if imputed else "")
    return f"{rating:.1f}" + ("" if weight is not None else " · no weight")


class BreakdownView(QWidget):
    """Three linked horizontal bar charts (left, right, difference) over a table of the numbers."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = QLabel()
        self.title.setStyleSheet("font-weight: 600; font-size: 11pt;")
        self.title.setWordWrap(True)
        self.cards = {side: QLabel() for side in ("left", "right")}
        for side, card in self.cards.items():
            card.setWordWrap(True)
            card.setStyleSheet(f"border-left: 4px solid {SIDE_COLORS[side]}; padding: 4px 8px; background: #fff;")
        self.gap = QLabel()
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.order = QComboBox()
        for key, text in ORDERS:
            self.order.addItem(text, key)
        self.order.currentIndexChanged.connect(self._redraw)
        self.charts = pg.GraphicsLayoutWidget()
        self.charts.setBackground("w")
        self.plots = {key: self.charts.addPlot(row=0, col=i) for i, key in enumerate(("left", "right", "diff"))}
        for key, plot in self.plots.items():
            plot.setMouseEnabled(x=False, y=False)
            plot.hideButtons()
            plot.setMenuEnabled(False)
            plot.showGrid(x=True, y=False, alpha=0.25)
            if key != "left":
                plot.setYLink(self.plots["left"])
        self.plots["right"].hideAxis("left")
        self.plots["diff"].hideAxis("left")
        self.charts.ci.layout.setColumnStretchFactor(0, 5)
        for col in (1, 2):
            self.charts.ci.layout.setColumnStretchFactor(col, 3)
        self.table = QTableWidget(0, 8)
        self.table.setHorizontalHeaderLabels(["Trait", "Theme", "Weight", "Left rating", "Right rating",
                                              "Left share", "Right share", "Δ points (L − R)"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.charts, "Chart")
        self.tabs.addTab(self.table, "Numbers")
        cards = QHBoxLayout()
        cards.addWidget(self.cards["left"], 1)
        cards.addWidget(self.cards["right"], 1)
        tools = QHBoxLayout()
        tools.addWidget(self.gap, 1)
        tools.addWidget(QLabel("Order:"))
        tools.addWidget(self.order)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(cards)
        layout.addWidget(self.note)
        layout.addLayout(tools)
        layout.addWidget(self.tabs, 1)
        self.entries: dict[str, dict | None] = {"left": None, "right": None}
        self.names: dict[str, dict] = {}
        self.rows: list[dict] = []

    # -- filling ----------------------------------------------------------------------
    def set_scores(self, title: str, labels: dict[str, str], entries: dict[str, dict | None],
                   names: dict[str, dict], scoring: dict) -> None:
        """``entries``: the left and right score entries (None while scoring, or {"error"})."""
        self.title.setText(title)
        self.entries, self.names = dict(entries), names
        for side in ("left", "right"):
            e = entries.get(side)
            if e is None:
                text = "scoring…"
            elif "error" in e:
                text = f"not scored: {e['error'].get('message') or e['error'].get('kind')}"
            else:
                text = f"<b>HL {e['score']:.2f}</b> · p {e['probability']:.2f}"
                if e.get("missing"):
                    text += f" · {len(e['missing'])} weighted trait(s) not rated"
            self.cards[side].setText(f"<b>{side.capitalize()}</b> · {labels.get(side, '')}<br>{text}")
        ok = [entries.get(s) for s in ("left", "right") if entries.get(s) and "error" not in entries[s]]
        gap = ""
        if len(ok) == 2:
            gap = f"Score gap (left − right): <b>{ok[0]['score'] - ok[1]['score']:+.2f}</b> = the sum of the Δ points"
            if ok[0].get("weights") != ok[1].get("weights") or ok[0].get("judge") != ok[1].get("judge"):
                gap += "  <span style='color:#c53030'>(the two were scored with different judges or weights)</span>"
        self.gap.setText(gap)
        if scoring:
            matched = bool(scoring.get("weights_match_judge"))
            self.note.setText(f"Judge <b>{scoring.get('judge')}</b> · questionnaire <b>{scoring.get('questionnaire')}"
                              f"</b> · weights <b>{scoring.get('weights')}</b> — {scoring.get('weights_note', '')}")
            self.note.setStyleSheet(NOTE_STYLE[matched] + " border-radius: 4px; padding: 6px 8px;")
            self.note.show()
        else:
            self.note.hide()
        self._redraw()

    def _redraw(self) -> None:
        self.rows = breakdown_rows(self.entries.get("left"), self.entries.get("right"), self.names,
                                   self.order.currentData() or "diff")
        for plot in self.plots.values():
            plot.clear()
        n = len(self.rows)
        ticks = [(-i, f"{r['id']}  {r['name']}") for i, r in enumerate(self.rows)]
        self.plots["left"].getAxis("left").setTicks([ticks, []])
        for side in ("left", "right"):
            self._side_bars(side)
        self._diff_bars()
        shares = [100 * (r[f"share_{s}"] or 0) for r in self.rows for s in ("left", "right")]
        lo, hi = min(shares + [0.0]), max(shares + [0.0])
        span = max(hi - lo, 5.0)  # room for the rating labels past both ends
        for side in ("left", "right"):  # the same range on both sides (a link would align pixels instead)
            self.plots[side].setXRange(lo - (0.3 if lo < 0 else 0.04) * span, hi + 0.3 * span, padding=0)
        dspan = max([abs(r["diff"] or 0) for r in self.rows] + [0.05])
        self.plots["diff"].setXRange(-dspan * 1.5, dspan * 1.5, padding=0)
        self.plots["left"].setYRange(-n + 0.4, 0.6, padding=0)
        self.charts.setMinimumHeight(min(60 + 16 * n, 560))
        self._fill_table()

    def _side_bars(self, side: str) -> None:
        plot = self.plots[side]
        plot.setTitle(f"<span style='color:{SIDE_COLORS[side]}'>{side.capitalize()}</span>: share of the score (%)",
                      size="9pt")
        plot.addItem(pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen("#718096")))
        for i, r in enumerate(self.rows):
            share, imputed = r[f"share_{side}"], r[f"imputed_{side}"]
            if self.entries.get(side) is None or "error" in (self.entries.get(side) or {}):
                continue
            if share is not None:
                color = QColor(UNRATED if imputed else SIDE_COLORS[side])
                brush = QBrush(color, Qt.BrushStyle.BDiagPattern if imputed else Qt.BrushStyle.SolidPattern)
                v = share * 100
                plot.addItem(pg.BarGraphItem(x0=[min(0, v)], y=[-i], width=[abs(v)], height=0.62,
                                             brushes=[brush], pens=[pg.mkPen(color)]))
            else:
                v = 0.0
            label = pg.TextItem(_rating_text(r[f"rating_{side}"], imputed, r["weight"]),
                                color="#718096" if imputed or r[f"rating_{side}"] is None else "#1a202c",
                                anchor=(0, 0.5) if v >= 0 else (1, 0.5))
            label.setPos(v, -i)
            plot.addItem(label)

    def _diff_bars(self) -> None:
        plot = self.plots["diff"]
        plot.setTitle("Difference: Δ score points (left − right)", size="9pt")
        plot.addItem(pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen("#718096")))
        for i, r in enumerate(self.rows):
            d = r["diff"]
            if d is None:
                continue
            side = "left" if d >= 0 else "right"
            faded = r["imputed_left"] or r["imputed_right"]
            color = QColor(UNRATED if faded else SIDE_COLORS[side])
            plot.addItem(pg.BarGraphItem(x0=[min(0, d)], y=[-i], width=[abs(d)], height=0.62,
                                         brushes=[QBrush(color)], pens=[pg.mkPen(color)]))
            if abs(d) >= 0.005:
                label = pg.TextItem(f"{d:+.2f}", color="#1a202c", anchor=(0, 0.5) if d >= 0 else (1, 0.5))
                label.setPos(d, -i)
                plot.addItem(label)

    def _fill_table(self) -> None:
        self.table.setRowCount(len(self.rows))
        for i, r in enumerate(self.rows):
            cells = [f"{r['id']}  {r['name']}", r["theme"],
                     "–" if r["weight"] is None else f"{r['weight']:+.3f}",
                     _rating_text(r["rating_left"], r["imputed_left"], r["weight"]),
                     _rating_text(r["rating_right"], r["imputed_right"], r["weight"]),
                     "–" if r["share_left"] is None else f"{100 * r['share_left']:+.1f}%",
                     "–" if r["share_right"] is None else f"{100 * r['share_right']:+.1f}%",
                     "–" if r["diff"] is None else f"{r['diff']:+.3f}"]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if j >= 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if "not rated" in text:
                    item.setForeground(QColor("#718096"))
                self.table.setItem(i, j, item)


class BreakdownDialog(QDialog):
    """The breakdown of one compare turn; follows its replies' scores as they arrive."""

    def __init__(self, session, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("breakdownDialog")
        self.setWindowTitle("Score breakdown")
        self.session, self.tracker = session, session.scores
        self.idx: int | None = None
        self.view = BreakdownView()
        self.rescore = QPushButton("Rescore with the current default")
        self.rescore.setToolTip("Score both replies again with the default judge and weights (after a fit, say)")
        self.rescore.clicked.connect(self.on_rescore)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.rescore)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.view, 1)
        layout.addLayout(buttons)
        self.tracker.sig_scored.connect(self.on_scored)
        self.resize(1240, 860)

    def _reply_ids(self) -> list[str]:
        if self.idx is None or self.idx >= len(self.session.turns):
            return []
        turn = self.session.turns[self.idx]
        return [r.reply_id for side in ("left", "right") if (r := turn.reply_on(side)) and r.reply_id]

    def show_turn(self, idx: int) -> None:
        self.idx = idx
        self.refresh()

    def refresh(self) -> None:
        if self.idx is None or self.idx >= len(self.session.turns):
            return
        turn = self.session.turns[self.idx]
        entries, labels = {}, {}
        for side in ("left", "right"):
            reply = turn.reply_on(side)
            entries[side] = self.tracker.get(reply.reply_id) if reply else None
            name = f"Model {reply.slot.upper()} · {reply.model_label}" if reply and turn.revealed else "Model ?"
            labels[side] = name
        scored = [e for e in entries.values() if e and "error" not in e]
        questionnaire = scored[0].get("questionnaire") if scored else None
        prompt = turn.prompt if len(turn.prompt) <= 90 else turn.prompt[:90].rstrip() + "…"
        self.view.set_scores(f"Turn {turn.idx + 1} · “{prompt}”", labels, entries,
                             self.tracker.trait_names(questionnaire),
                             self.tracker.scoring_of(scored[0]) if scored else {})

    def on_scored(self, reply_id: str) -> None:
        if self.isVisible() and reply_id in self._reply_ids():
            self.refresh()

    def on_rescore(self) -> None:
        self.tracker.request(self._reply_ids(), force=True)


def open_breakdown(session, idx: int, parent: QWidget) -> BreakdownDialog:
    """Show turn ``idx`` in the window's one breakdown dialog (made on first use)."""
    dialog = parent.findChild(BreakdownDialog)
    if dialog is None:
        dialog = BreakdownDialog(session, parent)
    dialog.show_turn(idx)
    dialog.show()
    dialog.raise_()
    return dialog
