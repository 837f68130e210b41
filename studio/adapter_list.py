"""The trained adapters with their lineage, and one click to chat with one.

Rows come from the engine's ``adapter.list``; an adapter goes into a pane as
its PEFT folder (the engine picks the GGUF LoRA twin inside it for llama.cpp),
on the base model it was trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QHeaderView, QInputDialog, QLabel, QLineEdit, QPushButton,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

COLUMNS = ("Adapter", "Created", "Round", "Trained on", "Judge · weights", "Continues", "llama.cpp")
KIND_TITLES = {"dpo": "DPO", "online": "Online RL (GRPO)"}


def adapter_spec(current: dict, adapter_path: str) -> dict:
    """A pane's model spec with ``adapter_path`` on the base that adapter was trained on."""
    spec = {**current, "adapter": adapter_path}
    try:
        meta = json.loads((Path(adapter_path) / "hal_adapter.json").read_text(encoding="utf-8"))
        if meta.get("base_model"):
            spec["source"] = meta["base_model"]
    except (OSError, ValueError):
        pass  # not one of ours: keep the pane's base
    return spec


def lineage_text(row: dict) -> str:
    """What an adapter was trained on, in a few words."""
    lin = row.get("lineage") or {}
    parts = []
    if lin.get("n_pairs") is not None:
        parts.append(f"{lin['n_pairs']} pairs ({lin.get('n_sampled', 0)} sampled, "
                     f"{lin.get('n_rating', 0)} from ratings)")
    elif lin.get("prompt_ids"):
        parts.append(f"{len(lin['prompt_ids'])} prompts")
    if lin.get("prompt_set"):
        parts.append(f"prompt set {Path(str(lin['prompt_set'])).name}")
    return ", ".join(parts) or "–"


def _name(row: dict) -> str:
    """What the researcher calls an adapter (the engine sends display_name)."""
    return row.get("display_name") or row.get("name") or str(row.get("id"))[:8]


def _tooltip(row: dict) -> str:
    lin = {k: v for k, v in (row.get("lineage") or {}).items() if k not in ("prompt_ids", "rating_ids")}
    lin["n_prompt_ids"] = len((row.get("lineage") or {}).get("prompt_ids") or [])
    lines = [f"id {row.get('id')}", f"round {row.get('round_id')}", f"base {row.get('base_model')}",
             f"PEFT folder {row.get('peft_path')}", f"GGUF LoRA {row.get('gguf_path') or 'none'}",
             "lineage: " + json.dumps(lin, indent=1, default=str)]
    return "\n".join(lines)


class AdapterList(QWidget):
    """A table of adapters (newest first) with "Use in pane A / B"."""

    sig_use_adapter = Signal(str, str)
    """Put an adapter in a pane: (slot 'a' or 'b', adapter folder)."""
    sig_refresh_requested = Signal()
    """The researcher asked for the list again."""
    sig_rename_adapter = Signal(str, str)
    """Give an adapter a new name: (adapter id, name); results and exports show it."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.rows: list[dict] = []
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("adapterTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self.on_selection)
        self.table.cellDoubleClicked.connect(lambda r, _c: self.use(r, "a"))
        self.use_buttons = {s: QPushButton(f"Use in pane {s.upper()}") for s in ("a", "b")}
        for slot, button in self.use_buttons.items():
            button.setToolTip(f"Chat with the selected adapter in pane {slot.upper()} of the Compare tab")
            button.clicked.connect(lambda _c=False, s=slot: self.use(self.table.currentRow(), s))
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.sig_refresh_requested)
        self.rename_button = QPushButton("Rename…")
        self.rename_button.setToolTip("Give the selected adapter a name of your own; Results, exports and "
                                      "the HTML report show it instead of 'DPO round 3 · default'")
        self.rename_button.clicked.connect(lambda: self.rename(self.table.currentRow()))
        self.note = QLabel("")
        self.note.setStyleSheet("color: #718096;")
        row = QHBoxLayout()
        row.addWidget(self.note, 1)
        row.addWidget(self.refresh_button)
        row.addWidget(self.rename_button)
        for button in self.use_buttons.values():
            row.addWidget(button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.table, 1)
        lay.addLayout(row)
        self.set_adapters([])

    def set_adapters(self, rows: list[dict]) -> None:
        keep = self.selected_id()
        self.rows = list(rows)
        by_id = {r.get("id"): r for r in self.rows}
        self.table.setRowCount(len(self.rows))
        for i, r in enumerate(self.rows):
            lin = r.get("lineage") or {}
            parent = by_id.get(lin.get("parent_adapter"))
            cells = (_name(r), str(r.get("created_at", ""))[:16].replace("T", " "),
                     KIND_TITLES.get(lin.get("round_kind"), lin.get("round_kind") or "–"), lineage_text(r),
                     f"{lin.get('judge') or '–'} · {lin.get('weights') or '–'}",
                     (_name(parent) if parent else str(lin.get("parent_adapter"))[:8])
                     if lin.get("parent_adapter") else "–",
                     "yes" if r.get("gguf_path") else "no (transformers only)")
            tip = _tooltip(r)
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                if not r.get("exists", True):
                    item.setForeground(Qt.GlobalColor.gray)
                self.table.setItem(i, j, item)
        self.note.setText(f"{len(self.rows)} adapter{'s' if len(self.rows) != 1 else ''}"
                          if self.rows else "No adapters yet: a DPO or online RL round makes one.")
        ids = [r.get("id") for r in self.rows]
        self.table.selectRow(ids.index(keep) if keep in ids else 0)
        self.on_selection()

    def selected_id(self) -> str | None:
        i = self.table.currentRow()
        return self.rows[i].get("id") if 0 <= i < len(self.rows) else None

    def on_selection(self) -> None:
        i = self.table.currentRow()
        ok = 0 <= i < len(self.rows) and self.rows[i].get("exists", True)
        for button in self.use_buttons.values():
            button.setEnabled(bool(ok))
        self.rename_button.setEnabled(0 <= i < len(self.rows) and bool(self.rows[i].get("id")))

    def rename(self, row: int) -> None:
        """Ask for a new name for the adapter in ``row``; the engine stores it."""
        if not 0 <= row < len(self.rows) or not self.rows[row].get("id"):
            return
        current = _name(self.rows[row])
        name, ok = QInputDialog.getText(self, "Rename adapter", "Name shown in Results, exports and reports:",
                                        QLineEdit.EchoMode.Normal, current)
        name = " ".join((name or "").split())
        if ok and name and name != current:
            self.sig_rename_adapter.emit(str(self.rows[row]["id"]), name)

    def use(self, row: int, slot: str) -> None:
        if 0 <= row < len(self.rows) and self.rows[row].get("peft_path"):
            self.sig_use_adapter.emit(slot, str(self.rows[row]["peft_path"]))
