"""Sampling settings shared by both panes: every turn sends both the same ones."""

from __future__ import annotations

import random

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QDoubleSpinBox, QFormLayout, QLabel, QPlainTextEdit,
                               QSpinBox, QVBoxLayout, QWidget)

# The engine's chat defaults (engine/models/base.py CHAT_DEFAULTS, chosen by
# `hal bench loops`; a test keeps the two equal).
DEFAULTS = {"temperature": 0.7, "top_p": 1.0, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.15,
            "max_tokens": 256, "seed": 0, "stop": [], "system_prompt": "", "random_seed": True}
MAX_SEED = 2**31 - 1


def _spin(box, lo, hi, step):
    if isinstance(box, QDoubleSpinBox):
        box.setDecimals(2)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    return box


class SamplingPanel(QWidget):
    """Temperature, top-p, top-k, min-p, repetition penalty, max tokens, stop
    strings, seed and the persona (system prompt)."""

    sig_changed = Signal(dict)
    """A setting changed: the full settings dict (for saving preferences)."""

    def __init__(self, initial: dict | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        values = {**DEFAULTS, **(initial or {})}
        self.temperature = _spin(QDoubleSpinBox(), 0.0, 2.0, 0.05)
        self.temperature.setToolTip("0 = always the most likely token")
        self.top_p = _spin(QDoubleSpinBox(), 0.05, 1.0, 0.05)
        self.top_p.setToolTip("Nucleus sampling: keep the likeliest tokens that together reach this "
                              "probability; 1 = off")
        self.top_k = _spin(QSpinBox(), 0, 1000, 5)
        self.top_k.setSpecialValueText("off")
        self.top_k.setToolTip("Keep only the K likeliest tokens; 0 = off")
        self.min_p = _spin(QDoubleSpinBox(), 0.0, 1.0, 0.01)
        self.min_p.setSpecialValueText("off")
        self.min_p.setToolTip("Drop tokens less than this fraction as likely as the likeliest one; 0 = off")
        self.repeat_penalty = _spin(QDoubleSpinBox(), 1.0, 3.0, 0.05)
        self.repeat_penalty.setSpecialValueText("off")
        self.repeat_penalty.setToolTip("Make tokens the reply already used (its last 64) less likely; "
                                       "1 = off. Small models loop without it.")
        self.stop = QPlainTextEdit()
        self.stop.setPlaceholderText("Stop strings, one per line (\\n for a line break)")
        self.stop.setToolTip("A reply ends before the first of these that it writes; the stop string "
                             "itself is not part of the reply.")
        self.stop.setMaximumHeight(54)
        self.max_tokens = _spin(QSpinBox(), 1, 8192, 32)
        self.seed = _spin(QSpinBox(), 0, MAX_SEED, 1)
        self.random_seed = QCheckBox("Random seed each turn")
        self.random_seed.setToolTip("Both panes always share the turn's seed; the one used "
                                    "is shown above and stored with every reply.")
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setPlaceholderText("Persona / system prompt for both models "
                                              "(optional), e.g. “You are Sam, a 34-year-old "
                                              "nurse from Leeds. Chat casually.”")
        self.system_prompt.setMinimumHeight(90)
        self.system_prompt.setMaximumHeight(260)
        note = QLabel("Both panes always get identical settings.")
        note.setObjectName("hint")
        note.setWordWrap(True)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setVerticalSpacing(6)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Top-k", self.top_k)
        form.addRow("Min-p", self.min_p)
        form.addRow("Repeat penalty", self.repeat_penalty)
        form.addRow("Max tokens", self.max_tokens)
        form.addRow("Stop", self.stop)
        form.addRow("Seed", self.seed)
        form.addRow(self.random_seed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 10)
        layout.addLayout(form)
        layout.addSpacing(6)
        layout.addWidget(QLabel("System prompt / persona"))
        layout.addWidget(self.system_prompt, 1)
        layout.addWidget(note)
        layout.addStretch(1)
        self.set_values(values)
        for box in (self.temperature, self.top_p, self.top_k, self.min_p, self.repeat_penalty,
                    self.max_tokens, self.seed):
            box.valueChanged.connect(self._changed)
        self.stop.textChanged.connect(self._changed)
        self.random_seed.toggled.connect(self._changed)
        self.random_seed.toggled.connect(lambda on: self.seed.setEnabled(not on))
        self.system_prompt.textChanged.connect(self._changed)

    def set_values(self, values: dict) -> None:
        self.temperature.setValue(float(values.get("temperature", DEFAULTS["temperature"])))
        self.top_p.setValue(float(values.get("top_p", DEFAULTS["top_p"])))
        self.top_k.setValue(int(values.get("top_k", DEFAULTS["top_k"])))
        self.min_p.setValue(float(values.get("min_p", DEFAULTS["min_p"])))
        self.repeat_penalty.setValue(float(values.get("repeat_penalty", DEFAULTS["repeat_penalty"])))
        stops = values.get("stop", DEFAULTS["stop"])
        self.stop.setPlainText("\n".join(s.replace("\n", "\\n") for s in stops if isinstance(s, str))
                               if isinstance(stops, list) else "")
        self.max_tokens.setValue(int(values.get("max_tokens", DEFAULTS["max_tokens"])))
        self.seed.setValue(int(values.get("seed", 0)))
        self.random_seed.setChecked(bool(values.get("random_seed", True)))
        self.seed.setEnabled(not self.random_seed.isChecked())
        self.system_prompt.setPlainText(str(values.get("system_prompt", "")))

    def values(self) -> dict:
        """The settings as shown, including the random-seed toggle."""
        return {**self.sampling(new_turn=False), "random_seed": self.random_seed.isChecked()}

    def sampling(self, new_turn: bool = True) -> dict:
        """The ``sampling`` content for a generate command; a new turn draws a
        fresh seed when the toggle is on (and shows it)."""
        if new_turn and self.random_seed.isChecked():
            self.seed.setValue(random.randint(0, MAX_SEED))
        return {"temperature": round(self.temperature.value(), 3),
                "top_p": round(self.top_p.value(), 3), "top_k": self.top_k.value(),
                "min_p": round(self.min_p.value(), 3), "repeat_penalty": round(self.repeat_penalty.value(), 3),
                "max_tokens": self.max_tokens.value(), "seed": self.seed.value(), "stop": self.stops(),
                "system_prompt": self.system_prompt.toPlainText().strip()}

    def stops(self) -> list[str]:
        """The stop strings as typed: one per line, ``\\n`` standing for a line break."""
        out = []
        for line in self.stop.toPlainText().split("\n"):
            text = line.replace("\\n", "\n")
            if line.strip() and text not in out:
                out.append(text)
        return out[:16]

    def _changed(self, *_args) -> None:
        self.sig_changed.emit(self.values())
