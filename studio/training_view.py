"""The Training tab: pick a round and its settings, start it, watch it, judge it.

Everything runs in the engine (``round.*`` commands on worker threads); this
view only sends commands and shows their events, so chatting in the Compare
tab goes on while a round trains. Metric events are buffered and drawn from a
timer (``MetricPlots``); progress updates a bar and a one-line status.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from PySide6.QtCore import QElapsedTimer, Qt, QTimer, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QProgressBar, QPushButton, QSplitter, QTabWidget,
                               QVBoxLayout, QWidget)

from studio.adapter_list import AdapterList
from studio.metric_plots import MetricPlots
from studio.round_history import RoundHistory, can_resume, kind_key
from studio.round_settings import RoundSettings
from studio.verdict_panel import VerdictPanel

# Failures that resuming would only repeat (the settings or the data must change first).
NOT_RESUMABLE = ("bad_config", "bad_request", "no_pairs", "round_busy", "not_found", "model_missing")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class TrainingView(QWidget):
    """Round settings on the left; progress, plots, verdict, adapters and past rounds on the right."""

    sig_use_adapter = Signal(str, str)
    """Put an adapter in a Compare pane: (slot 'a' or 'b', adapter folder)."""

    def __init__(self, client, parent: QWidget | None = None, redraw_ms: int = 120):
        super().__init__(parent)
        self.client = client
        self.kinds: dict[str, dict] = {}
        self._requests: dict[str, str] = {}  # command id -> what we asked
        self.run_id: str | None = None  # the running round's command id
        self.run_kind: str | None = None
        self.cancelling = False
        self.last_result: dict | None = None
        self.resume_row: dict | None = None
        self._failed_since: str | None = None
        self._progress: dict = {}
        self._since_progress = QElapsedTimer()
        self._build(redraw_ms)
        client.sig_progress.connect(self.on_progress)
        client.sig_metric.connect(self.on_metric)
        client.sig_result.connect(self.on_result)
        client.sig_error.connect(self.on_error)
        client.sig_state_changed.connect(self.on_engine_state)
        self.on_engine_state(client.state)

    # -- layout -----------------------------------------------------------------------------
    def _build(self, redraw_ms: int) -> None:
        self.settings = left = RoundSettings()
        self.kind_combo, self.preset_combo = left.kind_combo, left.preset_combo
        self.form, self.start_button = left.form, left.start_button
        left.start_button.clicked.connect(self.on_start)
        left.sig_changed.connect(self._update_controls)

        self.run_title = QLabel("No round running")
        self.run_title.setObjectName("runTitle")
        self.run_title.setStyleSheet("font-size: 12pt; font-weight: 600; color: #2d3748;")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.run_detail = QLabel("Choose a round and press Start.")
        self.run_detail.setObjectName("runDetail")
        self.run_detail.setWordWrap(True)
        # A fixed height: a longer line must not re-lay out (and so repaint) every plot.
        self.run_detail.setFixedHeight(2 * self.run_detail.fontMetrics().lineSpacing() + 4)
        self.run_detail.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.run_detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop at the end of the current step; the engine saves a checkpoint "
                                      "so the round can be resumed")
        self.cancel_button.clicked.connect(self.on_cancel)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the stopped round from its last checkpoint, with its settings")
        self.resume_button.clicked.connect(lambda: self.resume(self.resume_row))
        head = QHBoxLayout()
        head.addWidget(self.run_title, 1)
        head.addWidget(self.resume_button)
        head.addWidget(self.cancel_button)
        self.plots = MetricPlots(redraw_ms=redraw_ms)
        self.verdict = VerdictPanel()
        self.verdict.sig_use_adapter.connect(self.sig_use_adapter)
        self.adapters = AdapterList()
        self.adapters.sig_use_adapter.connect(self.sig_use_adapter)
        self.adapters.sig_refresh_requested.connect(self.refresh_lists)
        self.adapters.sig_rename_adapter.connect(
            lambda aid, name: self._ask("adapter.rename", {"id": aid, "name": name}, "rename"))
        self.history = RoundHistory()
        self.history.sig_refresh_requested.connect(self.refresh_lists)
        self.history.sig_show_requested.connect(self.on_show_round)
        self.history.sig_resume_requested.connect(self.resume)
        self.history.sig_export_requested.connect(self.on_export_round)
        self.tabs = QTabWidget()
        for widget, title in ((self.plots, "Live metrics"), (self.verdict, "Verdict"),
                              (self.adapters, "Adapters"), (self.history, "Rounds")):
            self.tabs.addTab(widget, title)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(8, 8, 8, 8)
        rl.addLayout(head)
        rl.addWidget(self.progress)
        rl.addWidget(self.run_detail)
        rl.addWidget(self.tabs, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.setChildrenCollapsible(False)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([400, 1000])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(split)
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._show_progress)
        self._update_controls()

    # -- engine ------------------------------------------------------------------------------
    def _ask(self, type_: str, content: dict | None, purpose: str) -> str:
        cid = self.client.send(type_, content or {})
        self._requests[cid] = purpose
        return cid

    def on_engine_state(self, state: str) -> None:
        if state == "ready":
            if not self.kinds:
                self._ask("round.kinds", {}, "kinds")
            self.refresh_lists()
        self._update_controls()

    def refresh_lists(self) -> None:
        if self.client.state != "ready":
            return
        self._ask("adapter.list", {}, "adapters")
        self._ask("round.list", {"limit": 50}, "rounds")
        self._ask("score.config", {}, "scoring")

    def on_result(self, cid: str, content: dict) -> None:
        if cid == self.run_id:
            self._finished(content)
            return
        purpose = self._requests.pop(cid, None)
        if purpose == "kinds":
            self.set_kinds(content.get("kinds") or [])
        elif purpose == "adapters":
            self.adapters.set_adapters(content.get("adapters") or [])
            self.settings.set_adapters(content.get("adapters") or [])
        elif purpose == "scoring":
            self.settings.set_scoring(content)
        elif purpose == "rename":
            self.adapters.note.setText(f"Renamed to {content.get('name')!r}; Results show the new name.")
            self.refresh_lists()
        elif purpose == "export":
            self.history.note.setText(f"Exported to {content.get('folder')}: run launch.sh there "
                                      "(NUM_GPUS=8 MODEL=... ./launch.sh)")
        elif purpose == "rounds":
            rows = content.get("rounds") or []
            self.history.set_rounds(rows)
            self._offer_resume_from(rows)

    def on_error(self, cid: str, content: dict) -> None:
        if cid == self.run_id:
            self._failed(content)
            return
        purpose = self._requests.pop(cid, None)
        if purpose == "kinds":
            self.settings.form_error.setText(f"Could not read the round types: {content.get('message')}")
        elif purpose == "rename":
            self.adapters.note.setText(f"Not renamed: {content.get('message')}")
        elif purpose == "export":
            self.history.note.setText(f"Export failed: {content.get('message')}")
        elif purpose == "scoring":
            pass  # an engine without scoring commands: Judge and Weights keep "auto" and free text
        elif purpose is not None:
            self.run_detail.setText(f"Could not read the {purpose}: {content.get('message')}")

    # -- kinds ---------------------------------------------------------------------------------
    def set_kinds(self, kinds: list[dict]) -> None:
        """Round types from ``round.kinds``: the form, and which kinds can resume."""
        self.kinds = {k["kind"]: k for k in kinds}
        resumable = {k["kind"] for k in kinds if any(f["name"] == "resume" for f in k.get("fields", []))}
        self.history.set_kinds({k["kind"]: k.get("title") or k["kind"] for k in kinds}, resumable)
        self.history.set_rounds(self.history.rows)
        self.settings.set_kinds(kinds)

    def current_kind(self) -> str | None:
        return self.settings.current_kind()

    # -- running ---------------------------------------------------------------------------------
    def on_start(self) -> None:
        if self.run_id:
            return
        try:
            request = self.settings.request()
        except ValueError:
            return  # the form says what is wrong
        self._launch(request["kind"], request)

    def resume(self, row: dict | None) -> None:
        """Start a stopped round again from its last checkpoint (the engine keeps its settings)."""
        if not row or self.run_id:
            return
        kind = kind_key(row.get("kind"))
        self._launch(kind, {"kind": kind, "config": {"resume": row["id"]}}, resumed=row["id"])

    def _launch(self, kind: str, content: dict, resumed: str | None = None) -> None:
        self.run_kind, self.cancelling, self.last_result = kind, False, None
        self.resume_row, self._failed_since, self._failed_round_id = None, None, None
        self._started_at = _now()
        self._progress = {}
        self.plots.setup(kind)
        self.verdict.clear("The verdict appears here when this round finishes.")
        title = self.kinds.get(kind, {}).get("title", kind)
        self.run_title.setText(f"{title} · resuming" if resumed else f"{title} · running")
        self.run_title.setStyleSheet("font-size: 12pt; font-weight: 600; color: #2d3748;")
        self.progress.setValue(0)
        self.run_detail.setText("Starting… (the engine checks the settings before any work)")
        self.run_id = self.client.send("round.start", content)
        self.tabs.setCurrentWidget(self.plots)
        self._since_progress.start()
        self._tick.start()
        self._update_controls()

    def on_cancel(self) -> None:
        if self.run_id and not self.cancelling:
            self.cancelling = True
            self.client.cancel(self.run_id)
            self.run_detail.setText("Cancelling: the engine stops at the end of the current step and "
                                    "saves a checkpoint there…")
            self._update_controls()

    def on_progress(self, cid: str, content: dict) -> None:
        if cid != self.run_id:
            return
        self._progress = dict(content)
        self._since_progress.restart()
        total = float(content.get("total") or 0)
        if total > 0:
            self.progress.setValue(int(1000 * min(1.0, float(content.get("done") or 0) / total)))
        self._show_progress()

    def _show_progress(self) -> None:
        if not self.run_id or not self._progress:
            return
        p = self._progress
        since = self._since_progress.elapsed() / 1000.0
        elapsed = (p.get("elapsed_s") or 0) + since
        eta = p.get("eta_s")
        eta_text = f" · about {_duration(max(0.0, eta - since))} left" if eta is not None else ""
        prefix = "Cancelling after this step · " if self.cancelling else ""
        self.run_detail.setText(f"{prefix}{p.get('message') or 'working'} · {_duration(elapsed)} elapsed"
                                f"{eta_text}")

    def on_metric(self, cid: str, content: dict) -> None:
        if cid == self.run_id and "name" in content:
            try:
                self.plots.add(str(content["name"]), float(content.get("step", 0)), float(content["value"]))
            except (TypeError, ValueError):
                pass  # a malformed metric is not worth a crash

    def _stop_run(self) -> None:
        self.run_id = None
        self.cancelling = False
        self._tick.stop()
        self._update_controls()

    def _finished(self, result: dict) -> None:
        kind = self.run_kind or ""
        title = self.kinds.get(kind, {}).get("title", kind)
        self.last_result = result
        self._stop_run()
        if result.get("cancelled"):
            self.run_title.setText(f"{title} · cancelled")
            self.run_title.setStyleSheet("font-size: 12pt; font-weight: 600; color: #975a16;")
            steps = result.get("steps")
            self.run_detail.setText("Cancelled" + (f" after {steps} step{'s' if steps != 1 else ''}"
                                                   if steps is not None else "")
                                    + ". The last checkpoint is kept; Resume continues from it.")
            self.resume_row = {"id": result.get("round_id"), "kind": kind, "status": "cancelled"}
            self.verdict.clear("This round was cancelled, so there is no verdict.")
        else:
            self.progress.setValue(1000)
            self.run_title.setText(f"{title} · finished")
            self.run_title.setStyleSheet("font-size: 12pt; font-weight: 600; color: #2f855a;")
            share = result.get("verdict_share")
            self.run_detail.setText(f"Finished in {_duration(result.get('seconds'))}"
                                    + (f", {result['steps']} steps" if result.get("steps") else "")
                                    + (f" (the verdict and its canaries took {100 * share:.0f}% of it)"
                                       if isinstance(share, (int, float)) and result.get("verdict") else "")
                                    + (". The adapter is in the Adapters list." if result.get("adapter") else "."))
            self.verdict.show_result(kind, result)
            self.tabs.setCurrentWidget(self.verdict)
        self.refresh_lists()
        self._update_controls()

    def _failed(self, error: dict) -> None:
        kind = self.run_kind or ""
        title = self.kinds.get(kind, {}).get("title", kind)
        self._stop_run()
        self.run_title.setText(f"{title} · failed")
        self.run_title.setStyleSheet("font-size: 12pt; font-weight: 600; color: #c53030;")
        message = error.get("message") or error.get("kind") or "unknown error"
        named = f" · round {error['round_id'][:8]}" if error.get("round_id") else ""
        self.run_detail.setText(f"{message}  [{error.get('kind', 'error')}{named}]")
        self._failed_round_id = error.get("round_id")  # absent when the engine itself died
        self.verdict.clear("The round failed, so there is no verdict.")
        if error.get("kind") in NOT_RESUMABLE:
            self.refresh_lists()
            return
        # The round's row (if one was written) says whether it can resume; look once the
        # engine answers again (after a crash, once it is restarted).
        since = datetime.fromisoformat(self._started_at) - timedelta(seconds=2)
        self._failed_since = since.isoformat(timespec="milliseconds")
        self.refresh_lists()

    def _offer_resume_from(self, rows: list[dict]) -> None:
        if self._failed_since is None or self.run_id:
            return
        named = getattr(self, "_failed_round_id", None)
        if named:
            mine = [r for r in rows if r.get("id") == named]
        else:  # the engine died: the newest row of this kind since the start
            mine = [r for r in rows if str(r.get("created_at", "")) >= self._failed_since
                    and kind_key(r.get("kind")) == self.run_kind]
        if mine and can_resume(mine[0], self.history.resumable):
            self.resume_row = mine[0]
            self.run_detail.setText(self.run_detail.text() + "  Resume continues it from its last checkpoint.")
        self._failed_since = None
        self._update_controls()

    def on_export_round(self, row: dict, folder: str | None = None) -> None:
        """Write a round as a folder for a multi-GPU machine (``round.export``)."""
        if folder is None:
            from PySide6.QtWidgets import QFileDialog

            folder, _ = QFileDialog.getSaveFileName(self, "Export the round to a new folder",
                                                    f"hal-round-{str(row.get('id'))[:8]}")
        if folder:
            self._ask("round.export", {"round_id": row["id"], "folder": folder}, "export")

    def on_show_round(self, row: dict) -> None:
        """Show a stored round: its logged metrics and its verdict."""
        metrics = row.get("metrics") if isinstance(row.get("metrics"), dict) else {}
        kind = kind_key(row.get("kind"))
        self.plots.load_history(kind, metrics.get("history") or [])
        verdict = row.get("verdict") if isinstance(row.get("verdict"), dict) else None
        adapter = next((a for a in self.adapters.rows if a.get("id") == row.get("adapter_id")), None)
        result = {"verdict": verdict, "metrics": metrics,
                  "adapter_path": adapter.get("peft_path") if adapter else None}
        if row.get("status") == "done":
            self.verdict.show_result(kind, result)
        else:
            self.verdict.clear(f"This round is {row.get('status')}: "
                               f"{row.get('error') or 'no verdict'}")
        self.tabs.setCurrentWidget(self.verdict if row.get("status") == "done" else self.plots)

    # -- controls -------------------------------------------------------------------------------
    def _update_controls(self) -> None:
        ready = self.client.state == "ready"
        running = self.run_id is not None
        self.settings.set_enabled(ready, running)
        self.cancel_button.setVisible(running)
        self.cancel_button.setEnabled(running and not self.cancelling)
        self.resume_button.setVisible(not running and self.resume_row is not None)
        self.resume_button.setEnabled(ready)
        waiting = ("Waiting for the engine…", "The engine is not running; restart it from the Engine menu.")
        if not ready and not running and self.run_kind is None:
            self.run_detail.setText(waiting[0] if self.client.state == "starting" else waiting[1])
        elif ready and not running and self.run_detail.text() in waiting:
            self.run_detail.setText("Choose a round type and its settings, then start.")
