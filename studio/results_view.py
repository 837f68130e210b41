"""What the ratings say, in the studio: win rates with intervals, a leaderboard,
position bias, rater consistency, leaks and score agreement, each with how it is
computed; a ratings browser; export and import. The numbers come from
``engine.results``, the same code as ``hal results``."""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFontMetrics
from PySide6.QtWidgets import (QComboBox, QFileDialog, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QMenu, QPushButton, QScrollArea, QTableWidget,
                               QTableWidgetItem, QTabWidget, QToolButton, QVBoxLayout, QWidget)

from engine.results import Filters, browser, compute, exports, report_html
from engine.results.data import identity, rater_key, raters
from engine.results.importer import import_file
from engine.results.names import AdapterNames
from studio.ratings_browser import RatingsBrowser, RecheckDialog

EXPORTS = (("jsonl", "Preference pairs (TRL JSONL)…"), ("datasets", "Preference pairs (datasets folder)…"),
           ("csv", "Raw ratings (CSV)…"), ("html", "Results report (HTML)…"),
           ("bundle", "Ratings bundle for another studio…"))
WARN_STYLE = "color: #975a16; background: #fffaf0; border: 1px solid #f6ad55; border-radius: 4px; padding: 4px 8px;"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _ci(ci, fmt=_pct) -> str:
    return "–" if not ci else f"{fmt(ci[0])} – {fmt(ci[1])}"


def _table(headers, method: str, stretch: tuple[int, ...] = ()) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.verticalHeader().setVisible(False)
    t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    for col in stretch:
        t.horizontalHeader().setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)
    t.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    t.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    t.setSizeAdjustPolicy(QTableWidget.SizeAdjustPolicy.AdjustIgnored)
    t.setMinimumWidth(200)
    t.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    t.setWordWrap(False)
    t.setToolTip(method + "\nDouble-click a row to see the ratings behind it.")
    return t


def _fill(table: QTableWidget, rows: list[tuple], tips: list[str] | None = None) -> None:
    table.setRowCount(len(rows))
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            value = value if isinstance(value, (int, float)) else str(value)
            item = QTableWidgetItem(str(value))
            if j and (isinstance(value, (int, float)) or value[:1].isdigit() or value == "–"):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if tips:
                item.setToolTip(tips[i])
            table.setItem(i, j, item)
    height = table.horizontalHeader().height() + 4 + sum(table.rowHeight(i) for i in range(len(rows)))
    table.setFixedHeight(max(height, 60))


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _how(text: str) -> QLabel:
    label = QLabel(f"How this is computed: {text}")
    label.setWordWrap(True)
    label.setStyleSheet("color: #718096; font-size: 8.5pt;")
    return label


class ResultsView(QWidget):
    """Results and ratings tabs over one set of filters, reading the studio's store."""

    sig_status = Signal(str)
    """A one-line message for the status bar (exports, imports, errors)."""

    def __init__(self, store, parent: QWidget | None = None, n_boot: int = 1000):
        super().__init__(parent)
        self.store, self.n_boot = store, n_boot
        self.results: dict | None = None
        self._build_filters()
        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_results(), "Results")
        self.browser = RatingsBrowser(store)
        self.browser.sig_changed.connect(self.refresh)
        self.tabs.addTab(self.browser, "Ratings")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.sig_status.connect(self.status.setText)
        layout = QVBoxLayout(self)
        layout.addLayout(self.filter_row)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.status)
        self.refresh()

    # -- building ------------------------------------------------------------
    def _build_filters(self) -> None:
        self.since, self.until = QLineEdit(), QLineEdit()
        self.since.setPlaceholderText("since YYYY-MM-DD")
        self.until.setPlaceholderText("until YYYY-MM-DD")
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.setMinimumContentsLength(18)
        self.model.setToolTip("Ratings where either side's model (name + adapter) contains this text")
        self.blind = QComboBox()
        self.blind.addItems(["All ratings", "Blind only", "Not blind"])
        self.blind.setToolTip("Blind only leaves out ratings whose replies named a model (leaks)")
        self.prompt_set = QComboBox()
        self.rater = QComboBox()
        self.rater.setToolTip("Whose votes: yours ('me'), an LLM rater's (llm:MODEL, from hal eval --rater api) "
                              "or a colleague's (from a blind sheet)")
        self.refresh_button = QPushButton("Refresh")
        self.export_button = QToolButton()
        self.export_button.setText("Export")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        for fmt, text in EXPORTS:
            menu.addAction(text, lambda f=fmt: self.on_export(f))
        self.export_button.setMenu(menu)
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Merge ratings from another studio's bundle, a minimal JSONL "
                                      "(model_left, model_right, verdict, ...) or a CSV with model_a, "
                                      "model_b, verdict (Certainly A ... Certainly B, Tie, Both bad), "
                                      "conversation_a, conversation_b; nothing stored changes")
        for w in (self.since, self.until):
            w.setMaximumWidth(130)
            w.editingFinished.connect(self.refresh)
        for w in (self.blind, self.prompt_set, self.rater):
            w.currentIndexChanged.connect(self.refresh)
        self.model.activated.connect(self.refresh)
        self.model.lineEdit().editingFinished.connect(self.refresh)
        self.refresh_button.clicked.connect(self.refresh)
        self.import_button.clicked.connect(self.on_import)
        row = QHBoxLayout()
        for w in (QLabel("Filters:"), self.since, self.until, self.model, self.blind, self.prompt_set,
                  self.rater, self.refresh_button):
            row.addWidget(w)
        row.addStretch(1)
        row.addWidget(self.export_button)
        row.addWidget(self.import_button)
        self.filter_row = row

    def _section(self, title: str, *widgets) -> QGroupBox:
        box = QGroupBox(title)
        lay = QVBoxLayout(box)
        for w in widgets:
            lay.addLayout(w) if isinstance(w, QHBoxLayout) else lay.addWidget(w)
        self.page.addWidget(box)
        return box

    def _build_results(self) -> QWidget:
        from engine.results import checks, pairs, ranking

        inner = QWidget()
        self.page = QVBoxLayout(inner)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.page.addWidget(self.summary)
        self.pairs_table = _table(["A", "B", "Votes", "A's win rate", "95% CI (Wilson)", "Votes needed",
                                   "More needed", "Both bad"], pairs.METHOD_WIN_RATE, stretch=(0, 1))
        self.pairs_table.cellDoubleClicked.connect(self.on_pair_clicked)
        self._section("Win rate of each pairing", self.pairs_table, _how(pairs.METHOD_WIN_RATE),
                      _how(pairs.method_ci(self.n_boot)), _how(pairs.METHOD_VOTES_NEEDED))

        self.bt_table = _table(["Rank", "Model", "Bradley-Terry", "95% CI", "Votes", "Online Elo"],
                               ranking.METHOD_BT, stretch=(1,))
        self.bt_table.cellDoubleClicked.connect(self.on_bt_clicked)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMinimumHeight(200)
        self.plot.setMouseEnabled(False, False)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "score (Elo scale)")
        self.plot.addLegend(offset=(-10, -10))
        self.bt_note = QLabel("")
        self.bt_note.setWordWrap(True)
        self.elo_how = _how(ranking.METHOD_ELO.format(k=ranking.ELO_K))
        self._section("Leaderboard", self.bt_table, self.plot, self.bt_note, _how(ranking.METHOD_BT),
                      _how(ranking.method_bt_ci(self.n_boot)), self.elo_how)

        self.bias_line, self.bias_warning = QLabel(""), QLabel("")
        self.bias_line.setWordWrap(True)
        self.bias_warning.setStyleSheet(WARN_STYLE)
        self.bias_warning.setWordWrap(True)
        self.bias_button = QPushButton("Show these ratings")
        self.bias_button.clicked.connect(lambda: self._show_ids(
            self.results["position_bias"]["all"]["rating_ids"], "position bias"))
        row = QHBoxLayout()
        row.addWidget(self.bias_line, 1)
        row.addWidget(self.bias_button)
        self._section("Position bias", row, self.bias_warning, _how(checks.METHOD_POSITION))

        self.consistency_line = QLabel("")
        self.consistency_line.setWordWrap(True)
        self.recheck_button = QPushButton("Re-check a few pairs…")
        self.recheck_button.setToolTip("Shows about 10% of rated pairs again, blind, sides swapped")
        self.recheck_button.clicked.connect(lambda: self.on_recheck())
        row = QHBoxLayout()
        row.addWidget(self.consistency_line, 1)
        row.addWidget(self.recheck_button)
        self.leak_line = QLabel("")
        self.leak_line.setWordWrap(True)
        self.leak_button = QPushButton("Show leaks")
        self.leak_button.clicked.connect(lambda: self._show_ids(self.results["leaks"]["rating_ids"], "leaks"))
        leak_row = QHBoxLayout()
        leak_row.addWidget(self.leak_line, 1)
        leak_row.addWidget(self.leak_button)
        self._section("Your reliability", row, _how(checks.METHOD_CONSISTENCY), leak_row,
                      _how(checks.METHOD_LEAKS))

        self.score_table = _table(["Judge", "Trait", "Votes", "Agrees with you", "95% CI"],
                                  checks.METHOD_SCORES, stretch=(1,))
        self.score_table.cellDoubleClicked.connect(self.on_score_clicked)
        self.score_empty = QLabel("")
        self._section("Human-likeness score vs you", self.score_table, self.score_empty,
                      _how(checks.METHOD_SCORES))
        self.problems = QLabel("")
        self.problems.setTextFormat(Qt.TextFormat.PlainText)
        self.problems.setStyleSheet(WARN_STYLE)
        self.problems.setWordWrap(True)
        self.page.addWidget(self.problems)
        self.page.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(inner)
        return scroll

    # -- computing -----------------------------------------------------------
    def filters(self) -> Filters:
        model = self.model.currentText().strip()
        return Filters(since=self.since.text().strip() or None, until=self.until.text().strip() or None,
                       models=(model,) if model and model != "All models" else (),
                       blind={0: None, 1: True, 2: False}[self.blind.currentIndex()],
                       prompt_set=self.prompt_set.currentData(),
                       rater=None if self.rater.currentData() is None else rater_key(self.rater.currentData()))

    def _refresh_choices(self) -> None:
        names = AdapterNames(self.store)
        models = set()
        for r in self.store.db.execute(
                "SELECT DISTINCT model_name, adapter, model_spec, model_path FROM replies WHERE id IN "
                "(SELECT left_reply_id FROM ratings UNION SELECT right_reply_id FROM ratings)").fetchall():
            try:
                models.add(identity(*r, names=names))
            except (ValueError, TypeError, AttributeError):
                continue  # a damaged row: the results name it under "ratings left out"
        models = sorted(models)
        sets = sorted({r[0] or "" for r in self.store.db.execute(
            "SELECT DISTINCT prompt_set FROM turns WHERE id IN (SELECT turn_id FROM ratings)").fetchall()})
        for combo in (self.model, self.prompt_set):
            combo.blockSignals(True)
        current = self.model.currentText()
        self.model.clear()
        self.model.addItems(["All models", *models])
        self.model.setCurrentText(current or "All models")
        chosen = self.prompt_set.currentData()
        self.prompt_set.clear()
        self.prompt_set.addItem("All prompt sets", None)
        for s in sets:
            self.prompt_set.addItem(s or "(no prompt set)", s)
        self.prompt_set.setCurrentIndex(max(0, self.prompt_set.findData(chosen)) if chosen is not None else 0)
        who = self.rater.currentData()
        self.rater.blockSignals(True)
        self.rater.clear()
        self.rater.addItem("All raters", None)
        for r in raters(self.store):
            self.rater.addItem(r, r)
        self.rater.setCurrentIndex(max(0, self.rater.findData(who)) if who is not None else 0)
        for combo in (self.model, self.prompt_set, self.rater):
            combo.blockSignals(False)

    def refresh(self) -> None:
        """Recompute every figure for the current filters (a second or less for a few hundred votes)."""
        self._refresh_choices()
        filters = self.filters()
        try:
            self.results = res = compute(self.store, filters, n_boot=self.n_boot)
        except Exception as exc:  # noqa: BLE001 - the tab says why it is empty instead of crashing
            self.summary.setText(f"⚠ The results could not be computed: {escape(str(exc))}")
            self.sig_status.emit(f"Results could not be computed: {exc}")
            return
        self_votes = res["self_votes"]["message"]
        self.summary.setText(f"<b>{_n(res['n_ratings'], 'rating')}</b>"
                             + (f" matching {', '.join(f'{k}={v}' for k, v in res['filters'].items())}"
                                if res["filters"] else "")
                             + f"; {res['both_bad']['n']} marked both bad."
                             + (f"<br><span style='color:#975a16'>⚠ {escape(self_votes)}</span>"
                                if self_votes else ""))
        _fill(self.pairs_table, [(p["a"], p["b"], p["n"], _pct(p["win_rate"]), _ci(p["ci"]),
                                  p["votes_needed"] or "–",
                                  "–" if p["more_votes_needed"] is None else p["more_votes_needed"],
                                  p["both_bad"]) for p in res["pairs"]],
              [f"p = {p['p_value']}; bootstrap CI {_ci(p['ci_bootstrap'])}" if p["n"] else
               p.get("message", "") for p in res["pairs"]])
        elo = {r["model"]: r["score"] for r in res["elo"]["models"]}
        bt = res["bradley_terry"]
        _fill(self.bt_table, [(r["rank"], r["model"], f"{r['score']:.0f}",
                               _ci(r["ci"], lambda x: f"{x:.0f}"), r["n"],
                               f"{elo.get(r['model'], 0):.0f}") for r in bt])
        self._plot(bt, elo)
        meta = res["bradley_terry_meta"]
        self.bt_note.setText(meta.get("message") or "")
        self.bt_note.setVisible(bool(meta.get("message")))
        self.elo_how.setText(f"How this is computed: {res['elo']['method']}")
        self.browser.set_filters(filters)
        self._show_checks(res)

    def _plot(self, bt: list[dict], elo: dict) -> None:
        self.plot.clear()
        if not bt:
            return
        n = len(bt)
        ys = [n - 1 - i for i in range(n)]
        xs = [r["score"] for r in bt]
        lo = [r["score"] - r["ci"][0] for r in bt]
        hi = [r["ci"][1] - r["score"] for r in bt]
        self.plot.addItem(pg.ErrorBarItem(x=np.array(xs), y=np.array(ys), left=np.array(lo),
                                          right=np.array(hi), beam=0.18, pen=pg.mkPen("#2b6cb0", width=2)))
        self.plot.plot(xs, ys, pen=None, symbol="o", symbolSize=10, symbolBrush="#2b6cb0",
                       symbolPen=None, name="Bradley-Terry (95% CI)")
        self.plot.plot([elo.get(r["model"], 1000) for r in bt], ys, pen=None, symbol="d", symbolSize=10,
                       symbolBrush=None, symbolPen=pg.mkPen("#c05621", width=2), name="online Elo")
        self.plot.addItem(pg.InfiniteLine(pos=1000, angle=90, pen=pg.mkPen("#a0aec0", style=Qt.PenStyle.DashLine)))
        axis = self.plot.getAxis("left")
        axis.setTicks([[(y, r["model"]) for y, r in zip(ys, bt)]])
        metrics = QFontMetrics(axis.style.get("tickFont") or self.font())
        axis.setWidth(min(360, max(metrics.horizontalAdvance(r["model"]) for r in bt) + 24))
        self.plot.setYRange(-0.6, n - 0.4, padding=0)
        self.plot.setFixedHeight(70 + 42 * n)

    def _show_checks(self, res: dict) -> None:
        pb = res["position_bias"]

        def side(g, label):
            if not g["n"]:
                return f"{label}: no decisive votes"
            return (f"{label}: left won {g['left_wins']} of {g['n']} decisive votes ({_pct(g['left_rate'])}, "
                    f"95% CI {_ci(g['ci'])}, p = {g['p_value']:.3g})")
        self.bias_line.setText(side(pb["blind"], "Blind") + "<br>" + side(pb["not_blind"], "Not blind"))
        self.bias_warning.setText(f"⚠ {pb['warning']}" if pb["warning"] else "")
        self.bias_warning.setVisible(bool(pb["warning"]))
        c = res["consistency"]
        self.consistency_line.setText(
            f"Consistency: {c['n']} pairs re-shown blind with sides swapped; you agreed with yourself on "
            f"{c['agree']} ({_pct(c['agreement'])}, 95% CI {_ci(c['ci'])}); same strength too: "
            f"{_pct(c['exact_agreement'])}." if c["n"] else f"Consistency: {c['message']}.")
        lk = res["leaks"]
        self.leak_line.setText(f"Identity leaks: {_n(lk['n'], 'rating')} with a reply naming a model; "
                               f"{lk['blind_excluded']} of them blind, so left out of blind figures.")
        self.leak_button.setEnabled(bool(lk["n"]))
        rows, self._score_ids = [], []
        for j in res["score_agreement"]["judges"]:
            rows.append((j["judge"], "overall", j["n"], _pct(j["agreement"]), _ci(j["ci"])))
            self._score_ids.append(j["rating_ids"])
            for t in j["traits"]:
                rows.append(("", t["trait"], t["n"], _pct(t["agreement"]), _ci(t["ci"])))
                self._score_ids.append(j["rating_ids"])
        _fill(self.score_table, rows)
        self.score_table.setVisible(bool(rows))
        self.score_empty.setText(res["score_agreement"]["message"] or "")
        self.score_empty.setVisible(not rows)
        probs = res["problems"]
        self.problems.setText(f"⚠ {_n(len(probs), 'rating')} left out, they cannot be read: "
                              + "; ".join(f"{p['rating_id'][:10]} {p['reason']}" for p in probs[:5])
                              + (f"; and {len(probs) - 5} more" if len(probs) > 5 else "")
                              if probs else "")
        self.problems.setVisible(bool(probs))
        for i in range(self.score_table.rowCount()):
            if self.score_table.item(i, 1).text() == "overall":
                for col in range(5):
                    self.score_table.item(i, col).setBackground(QColor("#f7fafc"))

    # -- links to the ratings behind a figure --------------------------------
    def _show_ids(self, ids, what: str) -> None:
        self.browser.show_only(ids, what)
        self.tabs.setCurrentWidget(self.browser)

    def on_pair_clicked(self, row: int, _col: int) -> None:
        p = self.results["pairs"][row]
        self._show_ids(p["rating_ids"] + p["both_bad_rating_ids"], f"{p['a']} vs {p['b']}")

    def on_bt_clicked(self, row: int, _col: int) -> None:
        model = self.results["bradley_terry"][row]["model"]
        ids = [i for p in self.results["pairs"] if model in (p["a"], p["b"]) for i in p["rating_ids"]]
        self._show_ids(ids, f"votes involving {model}")

    def on_score_clicked(self, row: int, _col: int) -> None:
        self._show_ids(self._score_ids[row], "score vs you")

    # -- actions -------------------------------------------------------------
    def on_recheck(self, share: float = 0.1) -> None:
        """Re-show about ``share`` of the rated pairs, blind with sides swapped."""
        items = browser.pick_for_recheck(self.store, share=share)
        if not items:
            self.sig_status.emit("Nothing to re-check: about 10% of your ratings are repeated already.")
            return
        self.recheck = RecheckDialog(self.store, items, self)
        self.recheck.sig_done.connect(lambda n: (self.refresh(), self.sig_status.emit(f"{n} repeats saved.")))
        self.recheck.open()

    def export_to(self, fmt: str, path: str | Path) -> str:
        """Write one export of the filtered ratings; returns the message shown."""
        filters = self.filters()
        try:
            if fmt == "jsonl":
                n = exports.export_jsonl(self.store, path, filters)
            elif fmt == "datasets":
                n = exports.export_datasets(self.store, path, filters)
            elif fmt == "csv":
                n = exports.export_csv(self.store, path, filters)
            elif fmt == "bundle":
                n = exports.export_bundle(self.store, path, filters)["rating"]
            else:
                report_html.write(self.results or compute(self.store, filters), path)
                n = (self.results or {}).get("n_ratings", 0)
            message = f"Exported {n} rows to {path}."
        except (OSError, ValueError) as exc:
            message = f"Export failed: {exc}"
        self.sig_status.emit(message)
        return message

    def import_from(self, path: str | Path) -> dict | None:
        """Merge a ratings file; the report (or the refusal) goes to the status line."""
        try:
            report = import_file(self.store, path)
        except (OSError, ValueError) as exc:
            self.sig_status.emit(f"Import refused: {exc}")
            return None
        reasons: dict[str, int] = {}
        for s in report["skipped"]:
            reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
        detail = "; ".join(f"{n}× {r}" for r, n in reasons.items())
        extra = ""
        if report.get("kept_without_time"):
            extra += (f"; {len(report['kept_without_time'])} kept without their time (it could not be "
                      "read)")
        if report.get("self_votes"):
            extra += (f"; {len(report['self_votes'])} with the same model on both sides (kept, in no "
                      "figure)")
        self.sig_status.emit(f"Imported {report['imported']} ratings from {Path(path).name}"
                             + (f"; skipped: {detail}" if detail else "") + extra + ".")
        self.refresh()
        return report

    def on_export(self, fmt: str) -> None:
        if fmt == "datasets":
            path = QFileDialog.getExistingDirectory(self, "Export preference pairs as a datasets folder")
            path = str(Path(path) / "preference-pairs") if path else ""
        else:
            suffix = {"jsonl": "jsonl", "csv": "csv", "html": "html", "bundle": "jsonl"}[fmt]
            path, _ = QFileDialog.getSaveFileName(self, "Export", f"hal-ratings.{suffix}")
        if path:
            self.export_to(fmt, path)

    def on_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import ratings", "", "Ratings (*.jsonl *.json *.csv);;All files (*)")
        if path:
            self.import_from(path)
