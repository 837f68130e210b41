"""Live plots of a round's streamed metrics, redrawn from a timer.

Metric events only append to buffers; a QTimer redraws the curves whose data
changed (``setData`` with clip-to-view and peak downsampling), so a burst of
messages never turns into a burst of repaints.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QComboBox, QGridLayout, QLabel, QVBoxLayout, QWidget

# The panels each kind shows from the start, so the layout does not jump.
PANELS = {
    "dpo": (("Loss", ("loss",)), ("Reward margin (chosen − rejected)", ("rewards/margins",)),
            ("Reward accuracy", ("rewards/accuracies",)), ("Steps per second", ("steps_per_s",))),
    "online": (("Reward mean", ("reward",)), ("Reward std within groups", ("reward_std",)),
               ("KL to the base", ("kl",)), ("Steps per second", ("steps_per_s",))),
    "reward-model": (("Loss", ("loss",)), ("Pair accuracy (training batches)", ("accuracy",)),
                     ("Steps per second", ("steps_per_s",))),
}
COLORS = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1")
REDRAW_MS = 120  # one plot per tick, so a full refresh takes a few ticks


class StepAxis(pg.AxisItem):
    """A step axis: whole steps only (no 1.5 between step 1 and step 2)."""

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, N803 (pyqtgraph API)
        levels = super().tickValues(minVal, maxVal, size)
        return [(max(spacing, 1.0), [v for v in values if abs(v - round(v)) < 1e-9])
                for spacing, values in levels]


def panels_for(kind: str) -> tuple:
    return PANELS.get(kind.replace("_", "-"), ())


class MetricPlots(QWidget):
    """A grid of small plots for one round, plus one plot for any other metric."""

    def __init__(self, parent: QWidget | None = None, redraw_ms: int = REDRAW_MS):
        super().__init__(parent)
        self.data: dict[str, tuple[list, list]] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.plots: dict[str, pg.PlotWidget] = {}
        self._titles: dict[str, str] = {}
        self._dirty: set[str] = set()
        self.redraws = 0
        self.grid = QGridLayout()
        self.grid.setSpacing(6)
        self.other_combo = QComboBox()
        self.other_combo.setToolTip("Any other metric the round streams (learning rate, gradient "
                                    "norm, entropy, chosen and rejected rewards, …)")
        self.other_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.other_combo.setMinimumContentsLength(22)  # a new item must not re-lay out the grid
        self.other_combo.currentIndexChanged.connect(self.on_other_chosen)
        self.other_plot = self._plot("")
        self.other_curve = self.other_plot.plot(pen=pg.mkPen("#718096", width=2))
        self.status = QLabel("Metrics appear here as the round trains.")
        self.status.setStyleSheet("color: #8a94a3;")
        other = QWidget()
        ol = QVBoxLayout(other)
        ol.setContentsMargins(0, 0, 0, 0)
        ol.addWidget(self.other_combo)
        ol.addWidget(self.other_plot, 1)
        self._other_box = other
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.status)
        lay.addLayout(self.grid, 1)
        self.timer = QTimer(self)
        self.timer.setInterval(redraw_ms)
        self.timer.timeout.connect(self.redraw)
        self.setup("dpo")

    @staticmethod
    def _plot(title: str) -> pg.PlotWidget:
        plot = pg.PlotWidget(background="w", axisItems={"bottom": StepAxis("bottom")})
        plot.setMinimumSize(220, 150)
        plot.hideButtons()
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.setLabel("bottom", "step")
        plot.getAxis("left").enableAutoSIPrefix(False)
        plot.setClipToView(True)
        plot.setDownsampling(auto=True, mode="peak")
        if title:
            plot.setTitle(title, size="10pt")
        return plot

    # -- set-up --------------------------------------------------------------------------
    def setup(self, kind: str) -> None:
        """Empty plots for a new round of ``kind`` (the same plots, emptied, when they fit)."""
        panels = panels_for(kind)
        if self.curves and panels == getattr(self, "_panels", None):
            self._clear()
            return
        self._panels = panels
        while self.grid.count():
            item = self.grid.takeAt(0)
            widget = item.widget()
            if widget is not None and widget is not self._other_box:
                widget.setParent(None)
                widget.deleteLater()
        self.data.clear()
        self.curves.clear()
        self.plots.clear()
        self._titles.clear()
        self._dirty.clear()
        cols = 2 if len(panels) + 1 <= 4 else 3
        for i, (title, names) in enumerate(panels):
            plot = self._plot(title)
            for j, name in enumerate(names):
                curve = plot.plot(pen=pg.mkPen(COLORS[j % len(COLORS)], width=2), symbol="o",
                                  symbolSize=4, symbolBrush=COLORS[j % len(COLORS)], symbolPen=None)
                self.curves[name] = curve
                self.plots[name] = plot
                self._titles[name] = title
            self.grid.addWidget(plot, i // cols, i % cols)
        n = len(panels)
        self.grid.addWidget(self._other_box, n // cols, n % cols)
        self._clear()

    def _clear(self) -> None:
        """Forget every value; curves and titles show nothing."""
        self.data.clear()
        self._dirty.clear()
        for name, curve in self.curves.items():
            curve.setData([], [])
            self.plots[name].setTitle(self._titles[name], size="10pt")
        self.other_combo.blockSignals(True)
        self.other_combo.clear()
        self.other_combo.addItem("Other metrics: none yet", None)
        self.other_combo.blockSignals(False)
        self.other_curve.setData([], [])
        self.status.setText("Metrics appear here as the round trains.")

    # -- data -----------------------------------------------------------------------------
    def add(self, name: str, step: float, value: float) -> None:
        """Buffer one metric value; the next timer tick draws it."""
        steps, values = self.data.setdefault(name, ([], []))
        if name not in self.curves and self.other_combo.findData(name) < 0:
            if self.other_combo.itemData(0) is None:
                self.other_combo.removeItem(0)
            self.other_combo.addItem(name, name)
        steps.append(float(step))
        values.append(float(value))
        self._dirty.add(name)
        if not self.timer.isActive():
            self.timer.start()

    def load_history(self, kind: str, history: list[dict]) -> None:
        """Show a finished round's logged metrics (its row's ``metrics.history``)."""
        self.setup(kind)
        for entry in history or []:
            step = entry.get("step")
            if step is None or "train_runtime" in entry:
                continue
            for name, value in entry.items():
                if name not in ("step", "epoch") and isinstance(value, (int, float)):
                    self.add(name, step, value)
        self.redraw(everything=True)

    def redraw(self, everything: bool = False) -> None:
        """Push changed buffers into one plot's curves (called by the timer).

        One plot per tick: painting a plot costs ~10-20 ms of CPU (its axes'
        text most of all), and a plot drawn per tick keeps each paint short,
        where redrawing all of them at once held the event loop for 100+ ms."""
        chosen = self.other_combo.currentData()
        self._dirty = {n for n in self._dirty if n in self.curves or n == chosen}
        if not self._dirty:
            self.timer.stop()  # idle until the next metric
            return
        self.redraws += 1
        while self._dirty:
            first = min(self._dirty, key=lambda n: list(self.data).index(n))
            plot = self.plots.get(first)
            batch = [n for n in self._dirty if plot is not None and self.plots.get(n) is plot] or [first]
            for name in batch:
                steps, values = self.data[name]
                if name in self.curves:
                    self.curves[name].setData(np.asarray(steps), np.asarray(values))
                    self.plots[name].setTitle(f"{self._titles[name]}  ·  {values[-1]:.4g}", size="10pt")
                else:
                    self.other_curve.setData(np.asarray(steps), np.asarray(values))
            self._dirty.difference_update(batch)
            if not everything:
                break
        last = max((steps[-1] for steps, _v in self.data.values() if steps), default=0)
        self.status.setText(f"Step {last:g} · {sum(len(v) for _s, v in self.data.values())} values "
                            f"of {len(self.data)} metrics; pick any other metric in the last plot")

    def on_other_chosen(self, _index: int) -> None:
        name = self.other_combo.currentData()
        steps, values = self.data.get(name, ([], [])) if name else ([], [])
        self.other_curve.setData(np.asarray(steps), np.asarray(values))
        self.other_plot.setTitle(name or "", size="10pt")

    def points(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """What a curve currently draws (x, y); for checks."""
        curve = self.curves.get(name)
        if curve is None:
            return np.asarray([]), np.asarray([])
        x, y = curve.getData()
        return (np.asarray([]) if x is None else x), (np.asarray([]) if y is None else y)
