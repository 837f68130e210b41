"""Run a fit of trait weights on a labelled data file, with progress and the
cross-validation figures when it finishes (the engine's ``fit.run`` job)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from studio.engine_calls import EngineCalls

TURING_FILE = "turing_gpt5_train.csv"


def shared_turing_path() -> str:
    """The shared Turing file when it is on this machine (``HAL_SHARED_DATA`` first, then the
    ``shared`` folder beside the checkout, wherever that checkout lives)."""
    from engine.scoring import shared_data_dir

    path = shared_data_dir() / TURING_FILE
    return str(path) if path.is_file() else ""


def fit_summary(r: dict) -> str:
    """The figures a researcher reads first, in one short paragraph."""
    lines = [f"<b>Cross-validated accuracy {r['cv_accuracy']:.1%} ± {r['cv_std']:.1%}</b> "
             f"({r['folds']} folds × {r['repeats']}, games never split; majority baseline "
             f"{r.get('majority_baseline', 0.5):.0%})",
             f"Picks the human of a game: {r['pairwise_accuracy']:.1%} · n = {r['n']} speakers in "
             f"{r.get('n_games', '?')} games · {len(r.get('traits', []))} traits · judge {r.get('judge')}"]
    if r.get("n_left_out"):
        lines.append(f"{r['n_left_out']} item(s) left out (see the engine log for why)")
    if r.get("saved_weights"):
        lines.append(f"Saved as <b>{r['saved_weights']}</b>")
    return "<br>".join(lines)


class FitPanel(QWidget):
    """Data file, judge and settings; Run / Cancel; progress; the figures."""

    sig_fit_finished = Signal(dict)
    """A fit finished: its report (with ``saved_weights`` when the weights were saved)."""
    sig_log = Signal(str)
    """A line for the engine log panel (per-item problems of a fit)."""

    def __init__(self, calls: EngineCalls, parent: QWidget | None = None):
        super().__init__(parent)
        self.calls = calls
        self.job_id: str | None = None
        self.path = QLineEdit(shared_turing_path())
        self.path.setPlaceholderText("a Turing-layout CSV or a JSONL file of labelled dialogues")
        self.browse = QPushButton("Browse…")
        self.browse.clicked.connect(self.on_browse)
        self.judge = QComboBox()
        self.judge.setToolTip("Whose ratings the weights are fitted on; 'precomputed' uses the ratings in the "
                              "file (for the shared file: GPT-5's, as in the paper)")
        self.set_judges([{"name": "lexical", "fit": True, "note": ""}])
        self.penalty = QComboBox()
        self.penalty.addItem("L2 (every trait keeps a weight)", "l2")
        self.penalty.addItem("L1 (sparse, as in the paper)", "l1")
        self.folds = QSpinBox()
        self.folds.setRange(2, 20)
        self.folds.setValue(10)
        self.select = QSpinBox()
        self.select.setRange(0, 64)
        self.select.setSpecialValueText("all traits")
        self.select.setToolTip("Keep only the K traits of largest |weight| and refit (the paper kept 16 of 32)")
        self.run_button = QPushButton("Run a fit")
        self.run_button.setObjectName("sendButton")
        self.run_button.clicked.connect(self.on_run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.on_cancel)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        file_row = QHBoxLayout()
        file_row.addWidget(self.path, 1)
        file_row.addWidget(self.browse)
        form = QFormLayout()
        form.addRow("Data file", file_row)
        form.addRow("Ratings from", self.judge)
        form.addRow("Penalty", self.penalty)
        form.addRow("Folds", self.folds)
        form.addRow("Keep traits", self.select)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def set_judges(self, judges: list[dict]) -> None:
        current = self.judge.currentData()
        self.judge.clear()
        for j in judges:
            if j.get("fit"):
                self.judge.addItem(j["name"], j["name"])
                self.judge.setItemData(self.judge.count() - 1, j.get("note", ""), Qt.ItemDataRole.ToolTipRole)
        index = self.judge.findData(current or "lexical")
        self.judge.setCurrentIndex(max(index, 0))

    def set_shared_path(self, path: str | None) -> None:
        """Prefill the shared Turing file if the field is still empty."""
        if path and not self.path.text().strip():
            self.path.setText(path)

    def settings(self) -> dict:
        return {"path": self.path.text().strip(), "judge": self.judge.currentData() or "lexical",
                "penalty": self.penalty.currentData(), "folds": self.folds.value(),
                "select": self.select.value() or None}

    # -- slots ------------------------------------------------------------------------
    def on_browse(self) -> None:
        start = self.path.text().strip() or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Labelled dialogues", start,
                                              "Dialogues (*.csv *.jsonl *.ndjson);;All files (*)")
        if path:
            self.path.setText(path)

    def on_run(self) -> None:
        settings = self.settings()
        if not settings["path"]:
            self.status.setText("Choose a data file first.")
            return
        self._busy(True)
        self.progress.setRange(0, 0)
        self.status.setText(f"Fitting on {Path(settings['path']).name}…")
        self.job_id = self.calls.call("fit.run", settings, on_result=self.on_finished, on_error=self.on_failed,
                                      on_progress=self.on_progress)

    def on_cancel(self) -> None:
        if self.job_id:
            self.calls.cancel(self.job_id)
            self.status.setText("Cancelling at the next step…")

    def on_progress(self, content: dict) -> None:
        total = int(content.get("total") or 0)
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(int(content.get("done") or 0))
        self.progress.setFormat(str(content.get("message") or "%p%"))

    def on_finished(self, report: dict) -> None:
        self._busy(False)
        self.status.setText(fit_summary(report))
        for p in report.get("problems") or []:
            self.sig_log.emit(f"[fit] {p.get('id')}: {p.get('error')}")
        self.sig_fit_finished.emit(report)

    def on_failed(self, content: dict) -> None:
        self._busy(False)
        if content.get("kind") == "cancelled":
            self.status.setText("The fit was cancelled; nothing was saved.")
        else:
            self.status.setText(f"<span style='color:#c53030'>The fit failed: {content.get('message')}</span>")

    def _busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.progress.setVisible(busy)
        if not busy:
            self.job_id = None
