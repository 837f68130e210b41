"""One pane's model choice: base model, adapter, backend, and its load state."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFrame, QGridLayout, QLabel,
                               QSizePolicy, QWidget)

from studio.prefs import Prefs

BUNDLED_TEXT = "Bundled: SmolLM2-135M-Instruct"
OPEN_FILE, OPEN_DIR = "__open_file__", "__open_dir__"
OPEN_ADAPTER_DIR, OPEN_ADAPTER_FILE = "__open_adapter_dir__", "__open_adapter_file__"
BACKENDS = (("auto", "auto"), ("llama.cpp", "llamacpp"), ("transformers", "transformers"))
STATE_COLORS = {"loading": "#b7791f", "ready": "#2f855a", "error": "#c53030", "idle": "#718096"}

AskPath = Callable[[str, QWidget], str]


def ask_path_dialog(what: str, parent: QWidget) -> str:
    """Ask the researcher for a path; '' when they cancel."""
    if what == OPEN_FILE:
        path, _ = QFileDialog.getOpenFileName(parent, "Open a GGUF model", "",
                                              "GGUF models (*.gguf);;All files (*)")
    elif what == OPEN_ADAPTER_FILE:
        path, _ = QFileDialog.getOpenFileName(parent, "Open a GGUF LoRA adapter", "",
                                              "GGUF LoRA (*.gguf);;All files (*)")
    elif what == OPEN_DIR:
        path = QFileDialog.getExistingDirectory(parent, "Open a Hugging Face model folder")
    else:
        path = QFileDialog.getExistingDirectory(parent, "Open a PEFT adapter folder")
    return path or ""


class ModelPicker(QFrame):
    """Pickers for base model, adapter and backend, with a load-state line."""

    sig_spec_changed = Signal(dict)
    """The researcher chose a different model: {source, adapter, backend}."""

    def __init__(self, title: str, prefs: Prefs, parent: QWidget | None = None,
                 ask_path: AskPath = ask_path_dialog):
        super().__init__(parent)
        self.setObjectName("modelPicker")
        self._prefs = prefs
        self._ask_path = ask_path
        self._source = "bundled"
        self._adapter: str | None = None
        self.title = QLabel(title)
        self.title.setObjectName("pickerTitle")
        self.source_combo = QComboBox()
        self.source_combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.source_combo.setMinimumContentsLength(18)
        self.adapter_combo = QComboBox()
        self.adapter_combo.setMinimumContentsLength(10)
        self.backend_combo = QComboBox()
        for text, value in BACKENDS:
            self.backend_combo.addItem(text, value)
        self.backend_combo.setToolTip("auto: llama.cpp for .gguf files, transformers for folders")
        self.status = QLabel()
        self.status.setObjectName("pickerStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid = QGridLayout(self)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(4)
        grid.addWidget(self.title, 0, 0)
        grid.addWidget(self.source_combo, 0, 1)
        grid.addWidget(QLabel("Adapter"), 0, 2)
        grid.addWidget(self.adapter_combo, 0, 3)
        grid.addWidget(QLabel("Backend"), 0, 4)
        grid.addWidget(self.backend_combo, 0, 5)
        grid.addWidget(self.status, 1, 1, 1, 5)
        grid.setColumnStretch(1, 3)
        grid.setColumnStretch(3, 1)
        self._rebuild_sources()
        self._rebuild_adapters()
        self.source_combo.activated.connect(self.on_source_activated)
        self.adapter_combo.activated.connect(self.on_adapter_activated)
        self.backend_combo.activated.connect(lambda _i: self._emit())
        self.set_status("idle", "not loaded yet")

    # -- state ----------------------------------------------------------------------
    def spec(self) -> dict:
        return {"source": self._source, "adapter": self._adapter,
                "backend": self.backend_combo.currentData()}

    def set_spec(self, spec: dict, emit: bool = False) -> None:
        """Show ``spec`` (adding its paths to the recent lists)."""
        self._source = spec.get("source") or "bundled"
        self._adapter = spec.get("adapter") or None
        if self._source != "bundled":
            self._prefs.add_recent("models", self._source)
        if self._adapter:
            self._prefs.add_recent("adapters", self._adapter)
        self._rebuild_sources()
        self._rebuild_adapters()
        idx = self.backend_combo.findData(spec.get("backend") or "auto")
        self.backend_combo.setCurrentIndex(max(idx, 0))
        if emit:
            self._emit()

    def set_status(self, state: str, text: str) -> None:
        """Show loading / ready / error next to the picker."""
        color = STATE_COLORS.get(state, "#718096")
        self.status.setText(f"<span style='color:{color}'>●</span> "
                            f"<span style='color:{color if state == 'error' else '#4a5568'}'>"
                            f"{_escape(text)}</span>")
        self.status.setProperty("state", state)
        self.status.setToolTip(text)

    # -- combos ---------------------------------------------------------------------
    def _rebuild_sources(self) -> None:
        combo = self.source_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItem(BUNDLED_TEXT, "bundled")
        for path in self._prefs.recent("models"):
            combo.addItem(Path(path).name or path, path)
            combo.setItemData(combo.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
        combo.insertSeparator(combo.count())
        combo.addItem("Open .gguf file…", OPEN_FILE)
        combo.addItem("Open model folder…", OPEN_DIR)
        idx = combo.findData(self._source)
        if idx < 0:
            combo.insertItem(1, Path(self._source).name, self._source)
            idx = 1
        combo.setCurrentIndex(idx)
        combo.setToolTip(self._source)
        combo.blockSignals(False)

    def _rebuild_adapters(self) -> None:
        combo = self.adapter_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItem("none", None)
        for path in self._prefs.recent("adapters"):
            combo.addItem(Path(path).name or path, path)
            combo.setItemData(combo.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
        combo.insertSeparator(combo.count())
        combo.addItem("Open adapter folder (PEFT)…", OPEN_ADAPTER_DIR)
        combo.addItem("Open GGUF LoRA file…", OPEN_ADAPTER_FILE)
        idx = combo.findData(self._adapter) if self._adapter else 0
        if idx < 0:
            combo.insertItem(1, Path(self._adapter).name, self._adapter)
            idx = 1
        combo.setCurrentIndex(idx)
        combo.setToolTip(self._adapter or "no adapter: the base model alone")
        combo.blockSignals(False)

    def on_source_activated(self, index: int) -> None:
        value = self.source_combo.itemData(index)
        if value in (OPEN_FILE, OPEN_DIR):
            path = self._ask_path(value, self)
            if not path:
                self._rebuild_sources()  # back to what was selected
                return
            value = path
            self._prefs.add_recent("models", path)
        if value == self._source:
            self._rebuild_sources()
            return
        self._source = value
        self._rebuild_sources()
        self._emit()

    def on_adapter_activated(self, index: int) -> None:
        value = self.adapter_combo.itemData(index)
        if value in (OPEN_ADAPTER_DIR, OPEN_ADAPTER_FILE):
            path = self._ask_path(value, self)
            if not path:
                self._rebuild_adapters()
                return
            value = path
            self._prefs.add_recent("adapters", path)
        if value == self._adapter:
            self._rebuild_adapters()
            return
        self._adapter = value
        self._rebuild_adapters()
        self._emit()

    def _emit(self) -> None:
        self.sig_spec_changed.emit(self.spec())


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
