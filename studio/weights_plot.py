"""Trait weights as a bar plot by trait id, with how the weights were made."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

POSITIVE, NEGATIVE = "#2f855a", "#c05621"


def weights_caption(w: dict) -> str:
    """One paragraph: bias, what it was fitted on, and its cross-validated figures."""
    fitted = w.get("fitted_on") or {}
    metrics = w.get("metrics") or {}
    name = "" if fitted.get("judge") else f" · {w.get('name', '')}"  # a fit's name repeats what follows
    parts = [f"<b>{w.get('ref', w.get('id'))}</b>{name} · bias {w.get('bias', 0):+.3f}"]
    if fitted.get("judge"):
        source = str(fitted.get("source") or "").rsplit("/", 1)[-1]
        parts.append(f"fitted on {fitted['judge']} ratings" + (f" of {source}" if source else ""))
    elif fitted.get("method"):
        parts.append(str(fitted["method"]))
    if isinstance(metrics.get("cv_accuracy"), (int, float)):
        text = f"CV accuracy {metrics['cv_accuracy']:.1%}"
        if isinstance(metrics.get("cv_std"), (int, float)):
            text += f" ± {metrics['cv_std']:.1%}"
        if isinstance(metrics.get("pairwise_accuracy"), (int, float)):
            text += f", picks the human of a game {metrics['pairwise_accuracy']:.1%}"
        parts.append(text)
    return " · ".join(parts)


class WeightsPlot(QWidget):
    """Bars of w[t] by trait id: positive (more human) and negative weights in two colours."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.showGrid(x=False, y=True, alpha=0.25)
        self.plot.setLabel("left", "weight")
        self.plot.setLabel("bottom", "trait id")
        self.plot.setMinimumHeight(220)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.caption.setStyleSheet("color: #4a5568;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.caption)
        self.values: dict[int, float] = {}

    def set_weights(self, weights: dict, traits: list[dict]) -> None:
        """``weights``: a weights file as the engine's ``weights.get`` sends it."""
        self.values = {int(k): float(v) for k, v in (weights.get("weights") or {}).items()}
        names = {int(t["id"]): t.get("name", "") for t in traits}
        self.plot.clear()
        ids = sorted(self.values)
        if not ids:
            self.caption.setText("These weights hold no trait.")
            return
        x = list(range(len(ids)))
        heights = [self.values[t] for t in ids]
        brushes = [pg.mkBrush(POSITIVE if h >= 0 else NEGATIVE) for h in heights]
        bars = pg.BarGraphItem(x=x, height=heights, width=0.7, brushes=brushes, pens=[pg.mkPen(None)] * len(ids))
        self.plot.addItem(bars)
        self.plot.addItem(pg.InfiniteLine(pos=0, angle=0, pen=pg.mkPen("#718096")))
        self.plot.getAxis("bottom").setTicks([[(i, str(t)) for i, t in zip(x, ids)], []])
        self.plot.setXRange(-0.7, len(ids) - 0.3, padding=0)
        lo, hi = min(heights + [0.0]), max(heights + [0.0])
        pad = (hi - lo) * 0.08 or 0.1
        self.plot.setYRange(lo - pad, hi + pad, padding=0)
        bars.setToolTip("\n".join(f"{t} {names.get(t, '')}: {self.values[t]:+.3f}" for t in ids))
        self.caption.setText(weights_caption(weights) + "<br><span style='color:#718096'>Green pushes the score "
                             "towards 'human', orange towards 'AI'. Hover the bars for trait names.</span>")
