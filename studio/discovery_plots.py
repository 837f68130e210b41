"""The discovery view's two plots: the map of statements and the contrast ranking.

Both are drawn once per run (never per progress message). Points and bars
carry their text as tooltips, so the plots stay readable at a glance and the
details are one hover away.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

HIGHER, LOWER = "#2c7a7b", "#c05621"  # humans show more / less of the feature
NOISE = "#a0aec0"
PALETTE = ["#3182ce", "#dd6b20", "#38a169", "#d53f8c", "#805ad5", "#d69e2e", "#319795", "#e53e3e",
           "#2b6cb0", "#718096", "#9c4221", "#276749", "#97266d", "#553c9a", "#975a16", "#285e61"]


def cluster_colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _quiet(plot: pg.PlotWidget) -> None:
    plot.hideButtons()
    plot.setMenuEnabled(False)
    plot.setMouseEnabled(x=False, y=False)


class StatementMap(QWidget):
    """Statements as points in 2-D, coloured by cluster; unclustered ones small and grey."""

    sig_clicked = Signal(str)
    """A cluster id whose point was clicked ('' for an unclustered statement)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.plot = pg.PlotWidget(background="w")
        _quiet(self.plot)
        self.plot.getAxis("left").setStyle(showValues=False)
        self.plot.getAxis("bottom").setStyle(showValues=False)
        self.plot.setMinimumHeight(200)
        self.scatter: pg.ScatterPlotItem | None = None
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #718096; font-size: 8.5pt;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.note)
        self.statements: list[dict] = []
        self.order: list[str] = []

    def set_statements(self, statements: list[dict], clusters: list[dict], how: str = "") -> None:
        self.plot.clear()
        self.statements = statements
        self.order = [c["id"] for c in clusters]
        if not statements:
            self.note.setText("No statements to map.")
            return
        self.scatter = pg.ScatterPlotItem(hoverable=True, hoverPen=pg.mkPen("#1a202c", width=1.5), tip=self._tip)
        self.scatter.sigClicked.connect(self.on_points_clicked)
        self.plot.addItem(self.scatter)
        for k, cid in enumerate(self.order):  # each theme's id at the middle of its points (the list's colours)
            pts = np.array([(s.get("x", 0.0), s.get("y", 0.0)) for s in statements if s.get("cluster") == cid])
            if len(pts):
                label = pg.TextItem(cid, color=cluster_colour(k), anchor=(0.5, 1.2))
                label.setPos(float(np.median(pts[:, 0])), float(np.max(pts[:, 1])))
                self.plot.addItem(label)
        self.highlight(None)
        shown = sum(1 for s in statements if s.get("cluster"))
        self.note.setText(f"{len(statements)} statements, {shown} in {len(clusters)} clusters; grey: unclustered. "
                          f"Layout: {how or 'pca'} of MiniLM embeddings. Hover a point to read it.")

    def _tip(self, x, y, data) -> str:
        return f"{data['text']}\n({data.get('cluster') or 'unclustered'}, game {data.get('game')})"

    def highlight(self, cluster_id: str | None) -> None:
        """Draw the points again, the chosen cluster's larger."""
        if self.scatter is None:
            return
        spots = []
        for s in self.statements:
            cid = s.get("cluster")
            k = self.order.index(cid) if cid in self.order else -1
            colour = cluster_colour(k) if k >= 0 else NOISE
            size = 13 if cid and cid == cluster_id else (8 if k >= 0 else 5)
            alpha = 255 if cluster_id in (None, cid) else 130
            spots.append({"pos": (s.get("x", 0.0), s.get("y", 0.0)), "size": size, "data": s,
                          "brush": pg.mkBrush(pg.mkColor(colour).red(), pg.mkColor(colour).green(),
                                              pg.mkColor(colour).blue(), alpha), "pen": None})
        self.scatter.setData(spots)

    def on_points_clicked(self, _item, points, _event=None) -> None:
        if len(points):
            self.sig_clicked.emit(points[0].data().get("cluster") or "")


class RankingPlot(QWidget):
    """AUC of the top candidates with their bootstrap interval, best at the top."""

    def __init__(self, parent: QWidget | None = None, top: int = 16):
        super().__init__(parent)
        self.top = top
        self.plot = pg.PlotWidget(background="w")
        _quiet(self.plot)
        self.plot.setLabel("bottom", "AUC with 95% interval (0.5 = chance)")
        self.plot.showGrid(x=True, y=False, alpha=0.2)
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)  # 0.65, not "650 m"
        font = self.font()
        font.setPointSizeF(8.5)
        self.plot.getAxis("left").setStyle(tickFont=font, autoReduceTextSpace=False, hideOverlappingLabels=False)
        self.plot.setMinimumHeight(260)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        self.shown: list[dict] = []

    def set_candidates(self, candidates: list[dict]) -> None:
        self.plot.clear()
        rows = candidates[: self.top]
        self.shown = rows
        if not rows:
            return
        y = np.arange(len(rows))[::-1].astype(float)
        auc = np.array([c["auc"] for c in rows])
        lo = np.array([c["ci"][0] for c in rows])
        hi = np.array([c["ci"][1] for c in rows])
        colours = [HIGHER if c["direction"].startswith("higher") else LOWER for c in rows]
        self.plot.addItem(pg.ErrorBarItem(x=auc, y=y, left=auc - lo, right=hi - auc, beam=0.25,
                                          pen=pg.mkPen("#4a5568", width=1.2)))
        points = pg.ScatterPlotItem(x=auc, y=y, size=9, brush=[pg.mkBrush(c) for c in colours], pen=None,
                                    hoverable=True, data=rows, tip=self._tip)
        self.plot.addItem(points)
        for x, colour in ((0.5, "#a0aec0"), (0.7, "#cbd5e0")):
            self.plot.addItem(pg.InfiniteLine(pos=x, angle=90, pen=pg.mkPen(colour, style=Qt.PenStyle.DashLine)))
        axis = self.plot.getAxis("left")
        axis.setTicks([[(yy, f"{c['label']} {'↑' if c['direction'].startswith('higher') else '↓'}")
                        for yy, c in zip(y, rows)], []])
        axis.setWidth(190)
        self.plot.setXRange(min(0.48, float(lo.min()) - 0.02), min(1.0, float(hi.max()) + 0.02), padding=0)
        self.plot.setYRange(-0.7, len(rows) - 0.3, padding=0)

    def _tip(self, x, y, data) -> str:
        return (f"{data['name']} ({data['label']}), {data['direction']}\nAUC {data['auc']:.3f} "
                f"[{data['ci'][0]:.3f}, {data['ci'][1]:.3f}], Cliff's delta {data['cliffs_delta']:+.2f}\n"
                f"draft: {data['statement']}")
