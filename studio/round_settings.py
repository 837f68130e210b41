"""The Training tab's left column: round type, preset, settings form, Start.

Round types, their presets and their described settings come from the
engine's ``round.kinds``; a preset's own values come with them when the engine
sends ``preset_values`` (otherwise the engine fills them in for every setting
left as shown).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from studio.round_form import RoundForm

ABOUT = {
    "dpo": "Samples replies to the training prompts, ranks them with the human-likeness score (and "
           "your decisive ratings), and trains a LoRA adapter on the pairs with DPO.",
    "online": "Online RL with TRL's GRPOTrainer: the model answers each prompt several times and the "
              "replies the score prefers are pushed up. GRPO is a PPO-style clipped policy objective that "
              "uses each prompt's group of replies as the baseline instead of a value model (TRL 1.x no "
              "longer ships PPOTrainer); a KL term holds the model near the base, and a length guard "
              "stops it gaming the score with empty or runaway replies. Makes a LoRA adapter.",
    "reward-weights": "Refits the score's trait weights with your pairwise ratings added "
                      "(Bradley–Terry) and reports agreement on held-out ratings. No adapter.",
    "reward-model": "Trains a small learned reward model on your ratings and score-ranked pairs; "
                    "usable as an extra reward in online RL. No adapter.",
}
PRESET_TIPS = {"smoke": "under a minute: checks that everything works, changes little",
               "default": "works on the bundled model on 2 cores (DPO: under 10 minutes)"}
ERROR_STYLE = "color: #c53030;"


class RoundSettings(QFrame):
    """Choose a round and its settings; ``request()`` is what ``round.start`` gets."""

    sig_changed = Signal()
    """The choice or the settings' validity changed (buttons elsewhere may follow)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("roundSettings")
        self.kinds: dict[str, dict] = {}
        self.kind_combo = QComboBox()
        self.kind_combo.setObjectName("roundKind")
        self.kind_combo.currentIndexChanged.connect(self.on_kind_changed)
        self.about = QLabel("")
        self.about.setWordWrap(True)
        self.about.setStyleSheet("color: #4a5568;")
        self.preset_combo = QComboBox()
        self.preset_combo.currentIndexChanged.connect(self.on_preset_changed)
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Put every setting back to the preset's value")
        self.reset_button.clicked.connect(self.on_preset_changed)
        self.preset_note = QLabel("")
        self.preset_note.setWordWrap(True)
        self.preset_note.setStyleSheet("color: #718096; font-size: 8.5pt;")
        self.form = RoundForm()
        self.form.sig_validity_changed.connect(self.on_validity_changed)
        self.form_error = QLabel("")
        self.form_error.setWordWrap(True)
        self.form_error.setStyleSheet(ERROR_STYLE)
        self.start_button = QPushButton("Start round")
        self.start_button.setObjectName("sendButton")
        heading = QLabel("Round type")
        heading.setStyleSheet("font-weight: 600; color: #2d3748;")
        presets = QHBoxLayout()
        presets.addWidget(QLabel("Preset"))
        presets.addWidget(self.preset_combo, 1)
        presets.addWidget(self.reset_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        for w in (heading, self.kind_combo, self.about):
            lay.addWidget(w)
        lay.addLayout(presets)
        lay.addWidget(self.preset_note)
        lay.addWidget(self.form, 1)
        lay.addWidget(self.form_error)
        lay.addWidget(self.start_button)
        self.setMinimumWidth(360)

    # -- kinds and presets ---------------------------------------------------------------
    def set_kinds(self, kinds: list[dict]) -> None:
        """Fill the round-type list from ``round.kinds``."""
        self.kinds = {k["kind"]: k for k in kinds}
        self.kind_combo.blockSignals(True)
        self.kind_combo.clear()
        for k in kinds:
            self.kind_combo.addItem(k.get("title") or k["kind"], k["kind"])
        self.kind_combo.blockSignals(False)
        self.on_kind_changed()

    def current_kind(self) -> str | None:
        return self.kind_combo.currentData()

    def current_preset(self) -> str:
        return self.preset_combo.currentData() or "default"

    def on_kind_changed(self, *_args) -> None:
        info = self.kinds.get(self.current_kind() or "", {})
        self.about.setText(ABOUT.get(info.get("kind", ""), ""))
        self.preset_combo.blockSignals(True)
        self.preset_combo.clear()
        for name in info.get("presets") or ["default"]:
            self.preset_combo.addItem(name, name)
            self.preset_combo.setItemData(self.preset_combo.count() - 1, PRESET_TIPS.get(name, ""),
                                          Qt.ItemDataRole.ToolTipRole)
        self.preset_combo.setCurrentIndex(max(0, self.preset_combo.findData("default")))
        self.preset_combo.blockSignals(False)
        adapters = getattr(self, "_adapters", [])
        self.form.build(info.get("fields") or [], self._preset_values())
        self.form.set_adapters(adapters)
        self.form.set_scoring(getattr(self, "_scoring", {}))
        self.on_preset_changed()

    def _preset_values(self) -> dict | None:
        info = self.kinds.get(self.current_kind() or "", {})
        return (info.get("preset_values") or {}).get(self.preset_combo.currentData())

    def on_preset_changed(self, *_args) -> None:
        values = self._preset_values()
        self.form.reset(values)
        tip = PRESET_TIPS.get(self.preset_combo.currentData() or "", "")
        if values is None and self.current_kind():
            tip += (". The engine fills in the preset's own values for every setting you leave as it "
                    "is; bold ones are sent as you set them.")
        self.preset_note.setText(tip[:1].upper() + tip[1:] if tip else "")
        self.on_validity_changed()

    def set_adapters(self, rows: list[dict]) -> None:
        self._adapters = list(rows)
        self.form.set_adapters(rows)

    def set_scoring(self, config: dict) -> None:
        """The judges and weights the engine has (``score.config``), for the Judge and Weights fields."""
        self._scoring = dict(config)
        self.form.set_scoring(config)

    # -- state -------------------------------------------------------------------------------
    def on_validity_changed(self, *_args) -> None:
        self.form_error.setText("" if self.form.is_valid() else self.form.error_text())
        self.sig_changed.emit()

    def request(self) -> dict:
        """``round.start``'s content: kind, preset and the changed settings (ValueError if invalid)."""
        kind = self.current_kind()
        if not kind:
            raise ValueError("The round types have not arrived from the engine yet.")
        try:
            overrides = self.form.overrides()
        except ValueError as exc:
            self.form_error.setText(str(exc))
            raise
        return {"kind": kind, "preset": self.current_preset(), "config": overrides}

    def set_enabled(self, can_start: bool, running: bool) -> None:
        self.start_button.setEnabled(can_start and not running and self.form.is_valid()
                                     and self.current_kind() is not None)
        self.start_button.setText("Round running…" if running else "Start round")
        self.kind_combo.setEnabled(not running)
