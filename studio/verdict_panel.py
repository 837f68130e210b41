"""The verdict after a round, as a panel: does the aligned model sound more human?

Base and aligned mean scores with their bootstrap 95% intervals (plot), the
paired difference, each trait's change (bar plot), the change in reply length
(the obvious confound) and the drift canary, then a few example replies.
Reward-update rounds have no verdict; their panel shows what they changed.
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea, QTextBrowser,
                               QVBoxLayout, QWidget)

GOOD, BAD, NEUTRAL, MUTED = "#2f855a", "#c53030", "#4a5568", "#718096"


def trait_names() -> dict[str, str]:
    """Trait id -> short name from the bundled questionnaire (ids are shared by all)."""
    try:
        from engine.scoring.traits import load_questionnaire

        return {str(t.id): t.name.replace("_", " ") for t in load_questionnaire("hal32").traits}
    except Exception:  # the names are a nicety; ids still show
        return {}


def _num(x, signed: bool = False, digits: int = 2) -> str:
    if x is None:
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _ci(ci, signed: bool = False) -> str:
    if not ci or ci[0] is None:
        return "–"
    return f"{_num(ci[0], signed)} to {_num(ci[1], signed)}"


def headline(verdict: dict) -> tuple[str, str]:
    """(sentence, colour). A verdict with an evaluator's checks (``headline``) says "sounds
    more human" only when all of them hold, and otherwise names what failed; an older
    verdict has only the training judge's difference and whether its interval clears zero."""
    checks = verdict.get("headline")
    if isinstance(checks, dict):
        ev = verdict.get("evaluator") or {}
        n = ev.get("n") or verdict.get("n_prompts", 0) * verdict.get("n_seeds", 1)
        tail = (f"evaluator Δ {_num(ev.get('delta'), True)} (95% CI {_ci(ev.get('delta_ci'), True)}, "
                f"{n} held-out repl{'y' if n == 1 else 'ies'} each)" if ev.get("delta") is not None else "")
        if checks.get("sounds_more_human"):
            return f"The aligned model sounds more human: {tail}", GOOD
        failed = "; ".join(checks.get("failed") or [])
        worse = ev.get("delta_ci") and ev["delta_ci"][1] is not None and ev["delta_ci"][1] < 0
        return (f"{'Sounds less human' if worse else 'Not shown to sound more human'}: {failed}"
                + (f". {tail[:1].upper()}{tail[1:]}" if tail else ""), BAD if worse else NEUTRAL)
    delta, ci = verdict.get("delta"), verdict.get("delta_ci") or [None, None]
    if delta is None:
        return "No verdict: no reply could be scored.", NEUTRAL
    n = verdict.get("n_prompts", 0) * verdict.get("n_seeds", 1)
    tail = f"(95% CI {_ci(ci, True)}, {n} held-out repl{'y' if n == 1 else 'ies'} each)"
    if ci[0] is not None and ci[0] > 0:
        return f"The aligned model sounds more human: {_num(delta, True)} {tail}", GOOD
    if ci[1] is not None and ci[1] < 0:
        return f"The aligned model sounds less human: {_num(delta, True)} {tail}", BAD
    return f"No clear change in human-likeness: {_num(delta, True)} {tail}", NEUTRAL


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _ci_pct(ci) -> str:
    return "–" if not ci or ci[0] is None else f"{100 * ci[0]:.0f}–{100 * ci[1]:.0f}%"


def cautions(verdict: dict) -> list[str]:
    """What should temper the headline: drift past the canary's limit, a big length change."""
    out = []
    canary = verdict.get("canary") or {}
    if canary.get("worse_by_over_10pct"):
        out.append(f"⚠ Drift: perplexity of held-out human chat rose {100 * (canary.get('change') or 0):.0f}% "
                   "(the limit is 10%).")
    base_words = (verdict.get("length") or {}).get("base_words")
    if base_words and verdict.get("length_delta") is not None and abs(verdict["length_delta"]) > 0.25 * base_words:
        out.append(f"⚠ Replies changed length by {100 * verdict['length_delta'] / base_words:+.0f}%; length "
                   "alone moves several traits.")
    return out


def _canary_text(canary: dict) -> str:
    """``170.1 → 180.0 (+5.8%) ✓ within 10% of the base``, coloured by the 10% bar."""
    bad = canary.get("worse_by_over_10pct")
    mark = (f"<span style='color:{BAD}'>⚠ worse by over 10%</span>" if bad else
            f"<span style='color:{GOOD}'>✓ within 10% of the base</span>"
            if canary.get("within_10pct") else f"<span style='color:{GOOD}'>✓ better</span>")
    return (f"{_num(canary.get('base_ppl'), digits=1)} → {_num(canary.get('aligned_ppl'), digits=1)} "
            f"({100 * (canary.get('change') or 0):+.1f}%) {mark}")


def _plot(title: str, height: int) -> pg.PlotWidget:
    plot = pg.PlotWidget(background="w")
    plot.setTitle(title, size="10pt")
    plot.setMouseEnabled(False, False)
    plot.hideButtons()
    plot.setMenuEnabled(False)
    plot.setFixedHeight(height)
    plot.showGrid(x=True, y=False, alpha=0.15)
    for side in ("left", "bottom"):
        plot.getAxis(side).enableAutoSIPrefix(False)  # scores read as they are, not as "x0.001"
    return plot


class VerdictPanel(QScrollArea):
    """Shows one round's verdict (or what a reward update changed)."""

    sig_use_adapter = Signal(str, str)
    """Put this round's adapter in a pane: (slot 'a' or 'b', adapter folder)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.adapter_path: str | None = None
        self.names = trait_names()
        page = QWidget()
        page.setObjectName("verdictPage")
        self.title = QLabel("The verdict appears here when a round finishes.")
        self.title.setObjectName("verdictTitle")
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.title.setStyleSheet(f"font-size: 13pt; font-weight: 600; color: {MUTED};")
        self.use_buttons = {s: QPushButton(f"Use in pane {s.upper()}") for s in ("a", "b")}
        for slot, button in self.use_buttons.items():
            button.setToolTip("Chat with this round's adapter in the Compare tab")
            button.clicked.connect(lambda _c=False, s=slot: self.on_use(s))
            button.setVisible(False)
        self.warning = QLabel("")
        self.warning.setObjectName("verdictWarning")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(f"color: {BAD}; font-weight: 600;")
        heads = QVBoxLayout()
        heads.addWidget(self.title)
        heads.addWidget(self.warning)
        top = QHBoxLayout()
        top.addLayout(heads, 1)
        for button in self.use_buttons.values():
            top.addWidget(button, 0, Qt.AlignmentFlag.AlignTop)
        self.score_plot = _plot("Mean human-likeness score (95% CI)", 250)
        self.score_plot.setFixedWidth(330)
        self.facts = QLabel("")
        self.facts.setObjectName("verdictFacts")
        self.facts.setWordWrap(True)
        self.facts.setTextFormat(Qt.TextFormat.RichText)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.facts.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        row = QHBoxLayout()
        row.addWidget(self.score_plot)
        row.addWidget(self.facts, 1)
        self.trait_plot = _plot("Change per trait (aligned − base, trait rating 1–5)", 200)
        self.examples = QTextBrowser()
        self.examples.setObjectName("verdictExamples")
        self.examples.setOpenLinks(False)
        self.examples.setMinimumHeight(160)
        lay = QVBoxLayout(page)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.setSpacing(8)
        lay.addLayout(top)
        lay.addLayout(row)
        lay.addWidget(self.trait_plot)
        lay.addWidget(self.examples)
        lay.addStretch(1)
        self.setWidget(page)
        self.clear()

    # -- public -------------------------------------------------------------------------
    def clear(self, text: str = "The verdict appears here when a round finishes.") -> None:
        self.verdict: dict | None = None
        self.adapter_path = None
        self._title(text, MUTED)
        self.warning.setText("")
        self.warning.setVisible(False)
        self.facts.setText("")
        for w in (self.score_plot, self.trait_plot, self.examples):
            w.setVisible(False)
        for button in self.use_buttons.values():
            button.setVisible(False)

    def show_result(self, kind: str, result: dict) -> None:
        """A finished round's result (``round.start``'s or a stored round's)."""
        kind = kind.replace("_", "-")
        if result.get("verdict"):
            self.show_verdict(result["verdict"], result.get("adapter_path"))
        elif kind == "reward-weights" and result.get("metrics", {}).get("traits"):
            self.show_weights(result["metrics"])
        elif kind == "reward-model" and result.get("metrics"):
            self.show_reward_model(result["metrics"], result.get("reward_model"))
        else:
            self.clear("The round finished without a verdict (verdict was switched off, "
                       "or it was cancelled during the verdict).")
            self._show_adapter(result.get("adapter_path"))

    def show_verdict(self, verdict: dict, adapter_path: str | None = None) -> None:
        self.clear()
        self.verdict = verdict
        text, color = headline(verdict)
        self._title(text, color)
        self.warning.setText(" ".join(cautions(verdict)))
        self.warning.setVisible(bool(self.warning.text()))
        self._score_plot(verdict)
        self.facts.setText(self._facts_html(verdict))
        self._trait_plot(verdict.get("traits_delta") or {}, "Change per trait (aligned − base, trait "
                         "rating 1–5)")
        self._examples(verdict.get("examples") or [])
        self._show_adapter(adapter_path)

    def show_weights(self, report: dict) -> None:
        self.clear()
        agree = report.get("agreement_heldout") or {}
        pct = lambda x: "–" if x is None else f"{100 * x:.0f}%"  # noqa: E731
        self._title(f"Trait weights refit and saved as {report.get('new_weights', '?')}", NEUTRAL)
        self.facts.setText(
            f"<p>Agreement with the researcher's held-out votes: <b>{pct(agree.get('old'))}</b> with the old "
            f"weights → <b>{pct(agree.get('new'))}</b> with the new ({report.get('n_votes_heldout', 0)} "
            f"held-out votes; {report.get('n_votes_fit', 0)} fitted, {report.get('n_contrastive', 0)} "
            f"contrastive dialogues).</p><p style='color:{MUTED}'>Started from "
            f"{html.escape(str(report.get('old_weights')))}; judge {html.escape(str(report.get('judge')))}."
            "</p>")
        self.facts.setVisible(True)
        change = {t: v.get("change") for t, v in (report.get("traits") or {}).items()}
        self._trait_plot(change, "Change per trait weight (new − old)")

    def show_reward_model(self, metrics: dict, path: str | None) -> None:
        self.clear()
        acc = metrics.get("heldout_accuracy")
        self._title("Learned reward model trained: held-out pair accuracy "
                    + ("–" if acc is None else f"{100 * acc:.0f}%"), NEUTRAL)
        fit = metrics.get("fit_accuracy")
        self.facts.setText(
            f"<p>{metrics.get('n_heldout', 0)} held-out pairs; accuracy on the training pairs "
            f"{'–' if fit is None else f'{100 * fit:.0f}%'}; {metrics.get('n_pairs', 0)} pairs in all.</p>"
            f"<p style='color:{MUTED}'>Saved in {html.escape(str(path))}; name it as the online RL "
            "round's reward_model to use it as a reward.</p>")

    # -- parts -------------------------------------------------------------------------
    def _title(self, text: str, color: str) -> None:
        self.title.setText(text)
        self.title.setStyleSheet(f"font-size: 13pt; font-weight: 600; color: {color};")

    def _show_adapter(self, path: str | None) -> None:
        self.adapter_path = path or None
        for button in self.use_buttons.values():
            button.setVisible(bool(path))

    def on_use(self, slot: str) -> None:
        if self.adapter_path:
            self.sig_use_adapter.emit(slot, self.adapter_path)

    def _score_plot(self, v: dict) -> None:
        plot = self.score_plot
        plot.clear()
        rows = [(i, label, v.get(key) or {}) for i, (label, key) in enumerate((("Base", "base"),
                                                                              ("Aligned", "aligned")))]
        rows = [(i, label, d) for i, label, d in rows if d.get("mean") is not None]
        if not rows:
            return
        x = np.array([i for i, _l, _d in rows], dtype=float)
        y = np.array([d["mean"] for _i, _l, d in rows], dtype=float)
        lo = np.array([(d.get("ci") or [m, m])[0] for (_i, _l, d), m in zip(rows, y)], dtype=float)
        hi = np.array([(d.get("ci") or [m, m])[1] for (_i, _l, d), m in zip(rows, y)], dtype=float)
        colors = ["#718096", "#2b6cb0"]
        plot.addItem(pg.ErrorBarItem(x=x, y=y, top=hi - y, bottom=y - lo, beam=0.18,
                                     pen=pg.mkPen("#4a5568", width=2)))
        plot.addItem(pg.ScatterPlotItem(x=x, y=y, size=13, pen=None,
                                        brush=[pg.mkBrush(colors[int(i)]) for i in x]))
        for xi, yi in zip(x, y):
            label = pg.TextItem(f"{yi:+.2f}", color="#1a202c", anchor=(-0.25, 0.5))
            label.setPos(xi, yi)
            plot.addItem(label)
        plot.getAxis("bottom").setTicks([[(i, label) for i, label, _d in rows]])
        plot.setXRange(-0.6, 1.9, padding=0)
        span = max(float(hi.max() - lo.min()), 0.2)
        plot.setYRange(float(lo.min()) - 0.15 * span, float(hi.max()) + 0.15 * span, padding=0)
        plot.setLabel("left", "score (logit units)")
        plot.setVisible(True)

    def _facts_html(self, v: dict) -> str:
        rows = []
        ev = v.get("evaluator")
        if ev:
            rows.append(("Evaluator", html.escape(f"{ev.get('judge')} judge, weights {ev.get('weights')}")
                         + f": {_num(ev.get('base_mean'))} → {_num(ev.get('aligned_mean'))}, "
                           f"<b>Δ {_num(ev.get('delta'), True)}</b> (paired, 95% CI {_ci(ev.get('delta_ci'), True)});"
                           " the round did not train on this judge"))
        elif "headline" in v:
            rows.append(("Evaluator", f"<span style='color:{MUTED}'>none available: only the training "
                                      "judge graded this round</span>"))
        lc = v.get("length_controlled")
        if lc and lc.get("delta") is not None:
            rows.append(("Length-controlled", f"Δ {_num(lc['delta'], True)} (95% CI {_ci(lc.get('delta_ci'), True)}): "
                                              "the evaluator's difference once log length is regressed out"))
        loops = v.get("looping")
        if loops:
            b, a = loops["base"], loops["aligned"]
            mark = (f"<span style='color:{BAD}'>⚠ rose</span>" if loops.get("rose") else
                    f"<span style='color:{GOOD}'>✓ did not rise</span>")
            rows.append(("Looping", f"{b['looping']} of {b['n']} base ({_pct(b.get('share'))}, CI "
                                    f"{_ci_pct(b.get('ci'))}) → {a['looping']} of {a['n']} aligned "
                                    f"({_pct(a.get('share'))}, CI {_ci_pct(a.get('ci'))}) {mark}"))
        rows += [("Base", f"{_num(v['base'].get('mean'))}  (95% CI {_ci(v['base'].get('ci'))})"),
                ("Aligned", f"{_num(v['aligned'].get('mean'))}  (95% CI {_ci(v['aligned'].get('ci'))})"),
                ("Difference", f"<b>{_num(v.get('delta'), True)}</b>  (paired, 95% CI "
                               f"{_ci(v.get('delta_ci'), True)})")]
        length = v.get("length") or {}
        if v.get("length_delta") is not None:
            rows.append(("Reply length", f"{_num(length.get('base_words'), digits=1)} → "
                                         f"{_num(length.get('aligned_words'), digits=1)} words  "
                                         f"({_num(v['length_delta'], True, 1)}); shorter replies score "
                                         "higher on several traits, so read the difference with this"))
        canary = v.get("canary")
        if canary:
            rows.append(("Drift canary", f"perplexity of held-out human chat {_canary_text(canary)}"))
        else:
            rows.append(("Drift canary", f"<span style='color:{MUTED}'>not measured</span>"))
        human = v.get("canary_human_chat")
        if human and "base_ppl" in human:
            rows.append(("Real chats", f"perplexity of {human.get('n_dialogues', '?')} held-out human "
                                       f"chats (Chit-Chat) {_canary_text(human)}"))
        unrated = v.get("unrated") or {}
        if unrated.get("base") or unrated.get("aligned"):
            rows.append(("Unscored", f"{unrated.get('base', 0)} base and {unrated.get('aligned', 0)} "
                                     "aligned replies could not be rated and are left out"))
        rows.append(("Trained on" if "headline" in v else "Judged by",
                     html.escape(f"{v.get('judge', '?')} judge, weights {v.get('weights', '?')}")
                     + (" (the Base, Aligned and Difference rows; it built the pairs, so it is not the "
                        "headline)" if "headline" in v else "")))
        cells = "".join(f"<tr><td style='color:{MUTED}; padding-right:12px'>{k}</td><td>{val}</td></tr>"
                        for k, val in rows)
        return f"<table cellspacing='4'>{cells}</table>"

    def _trait_plot(self, deltas: dict, title: str) -> None:
        plot = self.trait_plot
        plot.clear()
        items = sorted(((float(d), self.names.get(str(t), f"trait {t}")) for t, d in deltas.items()
                        if d is not None), key=lambda p: p[0])
        if not items:
            return
        d = np.array([p[0] for p in items])
        y = np.arange(len(items), dtype=float)
        brushes = [pg.mkBrush(GOOD if x > 0 else BAD if x < 0 else "#a0aec0") for x in d]
        plot.addItem(pg.BarGraphItem(x0=np.minimum(d, 0), width=np.abs(d), y=y, height=0.7,
                                     brushes=brushes, pens=[pg.mkPen(None)] * len(d)))
        plot.addItem(pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen("#4a5568")))
        plot.getAxis("left").setTicks([[(i, name) for i, (_d, name) in enumerate(items)]])
        plot.getAxis("left").setWidth(110)
        lim = max(float(np.abs(d).max()), 0.05) * 1.15
        plot.setXRange(-lim, lim, padding=0)
        plot.setYRange(-0.7, len(items) - 0.3, padding=0)
        if not d.any():
            title += ": no trait's mean rating changed"
        plot.setTitle(title, size="10pt")
        plot.setFixedHeight(60 + 19 * len(items))
        plot.setVisible(True)

    def _examples(self, examples: list[dict]) -> None:
        if not examples:
            return
        parts = [f"<p style='color:{MUTED}'>Held-out examples (same seed for both):</p>"]
        for ex in examples:
            esc = lambda s: html.escape(str(s or "")).replace("\n", "<br>")  # noqa: E731
            parts.append(
                f"<p><b>Prompt:</b> {esc(ex.get('prompt'))}<br>"
                f"<span style='color:{MUTED}'>Base ({_num(ex.get('base_score'), True)}):</span> "
                f"{esc(ex.get('base'))}<br>"
                f"<span style='color:#2b6cb0'>Aligned ({_num(ex.get('aligned_score'), True)}):</span> "
                f"{esc(ex.get('aligned'))}</p>")
        self.examples.setHtml("".join(parts))
        self.examples.setVisible(True)
