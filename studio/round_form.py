"""A round's settings form, built from the engine's described config fields.

The engine owns the settings (``round.kinds`` sends each field's type, default,
help text and range); this form only shows them, checks what is typed against
the same ranges, and sends back the fields the researcher changed, so the
chosen preset fills in the rest on the engine side.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QFrame, QLabel, QLineEdit,
                               QScrollArea, QToolButton, QVBoxLayout, QWidget)

# Which section a setting is shown in; fields not named here go to "Other".
SECTIONS = (
    ("Model and reward", ("model", "continue_adapter", "encoder", "judge", "weights", "new_id", "reward_model",
               "reward_model_weight", "base_gguf")),
    ("Training", ("max_steps", "epochs", "learning_rate", "batch_size", "grad_accum", "beta", "loss_type",
                  "kl_beta", "num_generations", "max_completion_length", "temperature", "max_length",
                  "warmup_ratio", "save_steps", "seed", "threads", "prior", "min_votes", "min_pairs")),
    ("Data", ("prompts", "n_prompts", "k", "margin", "margin_std", "max_pairs_per_prompt", "pair_set",
              "max_pairs", "use_ratings", "likely_weight", "certainly_weight", "rating_repeat",
              "contrastive", "contrastive_max", "vote_weight", "holdout_share", "min_words",
              "max_words", "length_penalty")),
    ("LoRA", ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")),
    ("Sampling", ("sampler", "sample_temperature", "sample_top_p", "sample_max_tokens",
                  "sample_threads")),
    ("Verdict", ("verdict", "verdict_prompts", "verdict_seeds", "canary")),
)
OPEN_SECTIONS = ("Model and reward", "Training")
HIDDEN = ("resume",)  # the Resume button sets it
# Settings that name an adapter: an editable list of the trained ones.
ADAPTER_FIELDS = {"continue_adapter": "none: a new LoRA on the base"}
# Settings that name a judge or saved weights: a list of what exists (score.config), "auto" first.
SCORING_FIELDS = ("judge", "weights")
ERROR_STYLE = "QLineEdit { border: 1px solid #c53030; background: #fff5f5; }"


def field_kind(field: dict) -> str:
    """bool, int, float, list or str, from the described type's text."""
    text = str(field.get("type", ""))
    for kind in ("bool", "int", "float", "list"):
        if kind in text:
            return kind
    return "str"


def _show(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def parse(field: dict, text: str):
    """The typed text as the field's value; ValueError says what is wrong."""
    kind, text = field_kind(field), text.strip()
    optional = "None" in str(field.get("type", ""))
    if kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind == "str":
        return text
    if not text:
        if optional:
            return None
        raise ValueError("needs a value")
    try:
        value = float(text) if kind == "float" else int(text)
    except ValueError:
        raise ValueError("must be a whole number" if kind == "int" else "must be a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    lo, hi = field.get("min"), field.get("max")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise ValueError(f"must be between {_show(lo) if lo is not None else '−∞'} "
                         f"and {_show(hi) if hi is not None else '∞'}")
    return value


def humanize(name: str) -> str:
    return name.replace("_", " ").capitalize().replace("Lora", "LoRA").replace("Kl ", "KL ")


class _Section(QWidget):
    """A titled, collapsible group of settings."""

    def __init__(self, title: str, expanded: bool):
        super().__init__()
        self.toggle = QToolButton()
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setChecked(expanded)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setStyleSheet("QToolButton { border: none; font-weight: 600; color: #2d3748; }")
        self.body = QWidget()
        self.form = QFormLayout(self.body)
        self.form.setContentsMargins(14, 2, 4, 6)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.toggle)
        lay.addWidget(self.body)
        self.toggle.toggled.connect(self.on_toggled)
        self.on_toggled(expanded)

    def on_toggled(self, on: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.body.setVisible(on)


class RoundForm(QScrollArea):
    """Editors for one round kind's settings, grouped, with help as tooltips."""

    sig_validity_changed = Signal(bool)
    """Whether every setting currently parses and lies in its range."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.fields: dict[str, dict] = {}
        self.editors: dict[str, QWidget] = {}
        self.sections: dict[str, _Section] = {}
        self.baseline: dict = {}
        self._errors: dict[str, str] = {}
        self._valid = True
        self.setWidget(QWidget())

    # -- building ------------------------------------------------------------------------
    def build(self, fields: list[dict], baseline: dict | None = None) -> None:
        """Show editors for ``fields`` (from ``round.kinds``), filled from ``baseline``."""
        self.fields = {f["name"]: f for f in fields if f["name"] not in HIDDEN}
        self.editors, self.sections, self._errors = {}, {}, {}
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        groups = [(title, [n for n in names if n in self.fields]) for title, names in SECTIONS]
        rest = [n for n in self.fields if not any(n in names for _t, names in SECTIONS)]
        for title, names in groups + [("Other", rest)]:
            if not names:
                continue
            section = _Section(title, title in OPEN_SECTIONS)
            for name in names:
                editor = self._editor(self.fields[name])
                label = QLabel(humanize(name))
                label.setToolTip(editor.toolTip())
                section.form.addRow(label, editor)
                self.editors[name] = editor
            self.sections[title] = section
            lay.addWidget(section)
        lay.addStretch(1)
        self.setWidget(page)
        self.reset(baseline)

    def _editor(self, field: dict) -> QWidget:
        kind = field_kind(field)
        tip = field.get("help") or field["name"]
        lo, hi = field.get("min"), field.get("max")
        if lo is not None or hi is not None:
            tip += f"\nAllowed: {_show(lo) if lo is not None else '−∞'} … {_show(hi) if hi is not None else '∞'}"
        tip += f"\nDefault: {_show(field.get('default')) or '(empty)'}  ·  setting: {field['name']}"
        if field["name"] in ADAPTER_FIELDS:
            editor = QComboBox()
            editor.setEditable(True)
            editor.addItem(ADAPTER_FIELDS[field["name"]], "")
            editor.currentTextChanged.connect(lambda _t, n=field["name"]: self._check(n))
        elif field["name"] in SCORING_FIELDS and kind == "str" and not field.get("choices"):
            editor = QComboBox()
            editor.setEditable(True)  # an id@version typed by hand still works
            editor.addItem("auto", "auto")
            editor.currentTextChanged.connect(lambda _t, n=field["name"]: self._check(n))
        elif kind == "bool":
            editor = QCheckBox()
            editor.toggled.connect(lambda _on, n=field["name"]: self._check(n))
        elif field.get("choices"):
            editor = QComboBox()
            for choice in field["choices"]:
                editor.addItem(_show(choice), choice)
            editor.currentIndexChanged.connect(lambda _i, n=field["name"]: self._check(n))
        else:
            editor = QLineEdit()
            if kind == "list":
                editor.setPlaceholderText("comma-separated")
            elif "None" in str(field.get("type")):
                editor.setPlaceholderText("empty = automatic")
            editor.textChanged.connect(lambda _t, n=field["name"]: self._check(n))
        editor.setToolTip(tip)
        editor.setObjectName(f"field_{field['name']}")
        return editor

    # -- values ---------------------------------------------------------------------------
    def reset(self, baseline: dict | None = None) -> None:
        """Fill every editor from ``baseline`` (a preset's values over the defaults)."""
        self.baseline = {n: f.get("default") for n, f in self.fields.items()}
        self.baseline.update({k: v for k, v in (baseline or {}).items() if k in self.fields})
        for name, value in self.baseline.items():
            self.set_value(name, value)
        self._update_validity()

    def set_value(self, name: str, value) -> None:
        editor = self.editors[name]
        if isinstance(editor, QCheckBox):
            editor.setChecked(bool(value))
        elif isinstance(editor, QComboBox):
            idx = editor.findData(value)
            if idx < 0 and editor.isEditable():
                editor.setEditText(_show(value))
            else:
                editor.setCurrentIndex(max(idx, 0))
        else:
            editor.setText(_show(value))

    def value(self, name: str):
        """The editor's value; ValueError when it does not parse or is out of range."""
        editor = self.editors[name]
        if isinstance(editor, QCheckBox):
            return editor.isChecked()
        if isinstance(editor, QComboBox):
            idx = editor.currentIndex()
            if editor.isEditable() and (idx < 0 or editor.currentText() != editor.itemText(idx)):
                return editor.currentText().strip()
            return editor.currentData()
        return parse(self.fields[name], editor.text())

    def set_adapters(self, adapters: list[dict]) -> None:
        """Offer the trained adapters (``adapter.list`` rows) where a setting names one."""
        for name, empty_text in ADAPTER_FIELDS.items():
            editor = self.editors.get(name)
            if editor is None:
                continue
            keep = self.value(name)
            editor.blockSignals(True)
            editor.clear()
            editor.addItem(empty_text, "")
            for row in adapters:
                editor.addItem(f"{row.get('name') or 'adapter'} · {str(row['id'])[:8]}", row["id"])
            editor.blockSignals(False)
            self.set_value(name, keep)

    def set_scoring(self, config: dict) -> None:
        """Offer the judges and saved weights that exist (``score.config``), "auto" explained first."""
        default = config.get("default") or {}
        items = {
            "judge": [("auto", f"auto: {str(default.get('judge', 'lexical')).split('@')[0]}, the judge "
                               "that scores reply badges")]
            + [(j["name"], j["name"] + (f": {j['note']}" if j.get("note") else ""))
               for j in config.get("judges") or [] if j.get("available", True) and j.get("score")],
            "weights": [("auto", f"auto: {default.get('weights', 'the shipped fit')}, fitted on the "
                                 "judge's own ratings, the same on every machine")]
            + [(w["ref"], w["ref"] + (f" · fitted on {w['fitted_on_judge']}" if w.get("fitted_on_judge") else
                                      " · not fitted")
                + (f" · {w['cv_accuracy']:.0%}" if isinstance(w.get("cv_accuracy"), (int, float)) else ""))
               for w in config.get("weights") or []],
        }
        for name, choices in items.items():
            editor = self.editors.get(name)
            if not isinstance(editor, QComboBox) or name not in SCORING_FIELDS:
                continue
            keep = self.value(name)
            editor.blockSignals(True)
            editor.clear()
            for data, text in choices:
                editor.addItem(text, data)
            editor.blockSignals(False)
            self.set_value(name, keep)

    def errors(self) -> dict[str, str]:
        return dict(self._errors)

    def is_valid(self) -> bool:
        return not self._errors

    def overrides(self) -> dict:
        """The settings that differ from the baseline (what the engine needs beyond the preset)."""
        if self._errors:
            name, message = next(iter(self._errors.items()))
            raise ValueError(f"{humanize(name)} {message}")
        out = {}
        for name in self.fields:
            value = self.value(name)
            base = self.baseline.get(name)
            same = value == base or (isinstance(base, tuple) and list(base) == value)
            if not same:
                out[name] = value
        return out

    def _check(self, name: str) -> None:
        editor = self.editors.get(name)
        if editor is None:
            return
        try:
            value = self.value(name)
            self._errors.pop(name, None)
            changed = value != self.baseline.get(name)
            if isinstance(editor, QLineEdit):
                editor.setStyleSheet("QLineEdit { font-weight: 600; }" if changed else "")
        except ValueError as exc:
            self._errors[name] = str(exc)
            if isinstance(editor, QLineEdit):
                editor.setStyleSheet(ERROR_STYLE)
        self._update_validity()

    def _update_validity(self) -> None:
        valid = not self._errors
        for name, message in self._errors.items():  # show the trouble where it is
            section = next((s for t, s in self.sections.items()
                            if s.form.indexOf(self.editors[name]) >= 0), None)
            if section is not None and not section.toggle.isChecked():
                section.toggle.setChecked(True)
        if valid != self._valid:
            self._valid = valid
            self.sig_validity_changed.emit(valid)

    def error_text(self) -> str:
        return "; ".join(f"{humanize(n)} {m}" for n, m in self._errors.items())
