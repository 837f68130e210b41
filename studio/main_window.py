"""The compare window: two model pickers, two panes, one prompt, a rating bar.

It wires widgets to the ``CompareSession`` and the ``EngineClient``'s health;
it holds no conversation state of its own.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (QCheckBox, QDockWidget, QFrame, QHBoxLayout, QLabel, QMainWindow,
                               QPushButton, QSplitter, QTabWidget, QVBoxLayout, QWidget)

from engine.store import Store, StoreError
from studio.chat_pane import ChatPane
from studio.crash_banner import CrashBanner
from studio.engine_client import EngineClient
from studio.history_panel import HistoryPanel
from studio.log_panel import LogPanel
from studio.model_picker import ModelPicker
from studio.prefs import Prefs
from studio.prompt_box import PromptBox
from studio.rating_bar import RatingBar
from studio.results_view import ResultsView
from studio.sampling_panel import SamplingPanel
from studio.session import CompareSession
from studio.training_view import TrainingView
from studio.traits_view import TraitsView

ENGINE_STATES = {"starting": ("#b7791f", "Engine starting…"), "ready": ("#2f855a", "Engine ready"),
                 "crashed": ("#c53030", "Engine crashed"), "stopped": ("#718096", "Engine stopped")}


STORE_WATCH_MS = 2000  # how often the studio checks that its store file and WAL are still its own

class MainWindow(QMainWindow):
    def __init__(self, client: EngineClient, store: Store, prefs: Prefs,
                 initial_spec: dict | None = None):
        super().__init__()
        self.setWindowTitle("HAL studio — compare")
        self.client, self.store, self.prefs = client, store, prefs
        self.session = CompareSession(client, store, self)
        self.session.blind = bool(prefs.get("blind", False))
        self.pickers = {s: ModelPicker(f"Model {s.upper()}", prefs) for s in ("a", "b")}
        for slot, picker in self.pickers.items():
            spec = initial_spec or prefs.get(f"model_{slot}") or {"source": "bundled"}
            picker.set_spec(spec)
            self.session.set_model(slot, picker.spec(), load=False)
            picker.sig_spec_changed.connect(lambda sp, s=slot: self.on_model_changed(s, sp))
        self.blind_toggle = QCheckBox("Blind mode")
        self.blind_toggle.setToolTip("Each turn, A and B go to random sides; names stay hidden "
                                     "until you rate the turn. Applies from the next prompt.")
        self.blind_toggle.setChecked(self.session.blind)
        self.blind_toggle.toggled.connect(self.on_blind_toggled)
        self.banner = CrashBanner()
        self.panes = {side: ChatPane(side, self.session) for side in ("left", "right")}
        self.rating = RatingBar()
        self.prompt = PromptBox()
        self.send_button = QPushButton("Send to both  (Ctrl+Enter)")
        self.send_button.setObjectName("sendButton")
        self.new_button = QPushButton("New conversation")
        self.sampling = SamplingPanel(prefs.get("sampling"))
        self.history = HistoryPanel()
        self.log = LogPanel()
        self.engine_status = QLabel()
        self.engine_status.setObjectName("engineStatus")
        self._build_layout()
        self._build_menus()
        self._connect()
        self.on_engine_state(client.state)
        self.refresh_rating()
        self.refresh_history()
        self.resize(1500, 940)

    # -- layout -----------------------------------------------------------------------
    def _build_layout(self) -> None:
        models = QFrame()
        models.setObjectName("modelsFrame")
        ml = QVBoxLayout(models)
        ml.setContentsMargins(2, 2, 10, 2)
        ml.setSpacing(0)
        for slot in ("a", "b"):
            ml.addWidget(self.pickers[slot])
        top = QHBoxLayout()
        top.addWidget(models, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        splitter.setHandleWidth(10)
        splitter.addWidget(self.panes["left"])
        splitter.addWidget(self.panes["right"])
        self.prompt.setFixedHeight(86)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.new_button)
        buttons.addWidget(self.blind_toggle)
        buttons.addStretch(1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.prompt, 1)
        bottom.addLayout(buttons)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(8)
        layout.addLayout(top)
        layout.addWidget(self.banner)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.rating)
        layout.addLayout(bottom)
        self.compare_tab = central
        self.results_view = ResultsView(self.store)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(central, "Compare")
        self.tabs.addTab(self.results_view, "Results")
        self.training_view = TrainingView(self.client)
        self.training_view.sig_use_adapter.connect(self.on_use_adapter)
        self.tabs.addTab(self.training_view, "Training")
        self.tabs.addTab(TraitsView(self.client), "Traits")
        from studio.discovery_view import DiscoveryView  # trait discovery (issue 7)

        self.tabs.addTab(DiscoveryView(self.client), "Discovery")
        self.setCentralWidget(self.tabs)
        self.docks = {}
        for key, title, widget, area in (
                ("history", "Conversations", self.history, Qt.DockWidgetArea.LeftDockWidgetArea),
                ("sampling", "Sampling (both panes)", self.sampling,
                 Qt.DockWidgetArea.RightDockWidgetArea),
                ("log", "Engine log", self.log, Qt.DockWidgetArea.BottomDockWidgetArea)):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"{key}Dock")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            self.docks[key] = dock
        self.history.setMinimumWidth(220)
        self.sampling.setMinimumWidth(240)
        self.docks["log"].hide()  # shown on demand, and when the engine crashes
        self.log_button = QPushButton("Engine log")
        self.log_button.setObjectName("logToggle")
        self.log_button.setCheckable(True)
        self.log_button.setFlat(True)
        self.log_button.toggled.connect(self.docks["log"].setVisible)
        self.docks["log"].visibilityChanged.connect(self.log_button.setChecked)
        self.statusBar().addPermanentWidget(self.log_button)
        self.statusBar().addPermanentWidget(self.engine_status)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        new = QAction("New conversation", self, shortcut=QKeySequence("Ctrl+N"))
        new.triggered.connect(self.on_new_conversation)
        quit_ = QAction("Quit", self, shortcut=QKeySequence("Ctrl+Q"))
        quit_.triggered.connect(self.close)
        file_menu.addActions([new, quit_])
        engine_menu = self.menuBar().addMenu("&Engine")
        restart = QAction("Restart engine", self)
        restart.triggered.connect(self.on_restart_engine)
        engine_menu.addAction(restart)
        view_menu = self.menuBar().addMenu("&View")
        for dock in self.docks.values():
            view_menu.addAction(dock.toggleViewAction())

    def _connect(self) -> None:
        s = self.session
        s.sig_reset.connect(self.on_reset)
        s.sig_turn_added.connect(self.on_turn_added)
        s.sig_reply_text.connect(self.on_reply_text)
        s.sig_reply_changed.connect(self.on_reply_changed)
        s.sig_rating_changed.connect(self.on_rating_changed)
        s.sig_load_state.connect(lambda slot, st, msg: self.pickers[slot].set_status(st, msg))
        s.sig_store_changed.connect(lambda: self._history_timer.start())
        s.sig_busy_changed.connect(self.on_busy_changed)
        self.client.sig_state_changed.connect(self.on_engine_state)
        self.client.sig_log.connect(self.log.on_line)
        self.banner.sig_restart_requested.connect(self.on_restart_engine)
        for pane in self.panes.values():
            pane.sig_stop_requested.connect(self.session.stop)
            pane.sig_regenerate_requested.connect(self.on_regenerate)
        self.rating.sig_rated.connect(self.on_rated)
        self.rating.sig_note_edited.connect(self.on_note_edited)
        self.rating.install_shortcuts(self)
        self.prompt.sig_submit.connect(self.on_submit)
        self.send_button.clicked.connect(self.on_submit)
        self.new_button.clicked.connect(self.on_new_conversation)
        self.history.sig_open_requested.connect(self.on_open_conversation)
        self.sampling.sig_changed.connect(lambda v: self.prefs.set("sampling", v))
        stop = QShortcut(QKeySequence("Esc"), self)
        stop.activated.connect(lambda: [self.session.stop(side) for side in ("left", "right")])
        self.results_view.sig_status.connect(lambda m: self.statusBar().showMessage(m, 8000))
        self.tabs.currentChanged.connect(self.on_tab_changed)
        self._history_timer = QTimer(self, singleShot=True, interval=250)
        self._history_timer.timeout.connect(self.refresh_history)
        # The store's file or WAL deleted or replaced under us: say so at once, not at the next rating.
        self._store_watch = QTimer(self, interval=STORE_WATCH_MS)
        self._store_watch.timeout.connect(self.check_store_files)
        self._store_watch.start()

    def on_tab_changed(self, index: int) -> None:
        """Compare-only docks follow the Compare tab; other views refresh when shown."""
        on_compare = self.tabs.widget(index) is self.compare_tab
        for key in ("history", "sampling"):
            self.docks[key].setVisible(on_compare)
        if self.tabs.widget(index) is self.results_view:
            self.results_view.refresh()

    # -- prompts ------------------------------------------------------------------------
    def on_submit(self) -> None:
        text = self.prompt.toPlainText().strip()
        if not text:
            return
        if self.client.state in ("crashed", "stopped"):
            self.statusBar().showMessage("The engine is not running: restart it, then send "
                                         "again (your prompt is kept).", 8000)
            return
        if self.session.busy():
            self.statusBar().showMessage("Both replies must finish (or be stopped with Esc) "
                                         "before the next prompt.", 6000)
            return
        try:
            self.session.send_prompt(text, self.sampling.sampling(new_turn=True))
        except StoreError as exc:
            self.statusBar().showMessage(str(exc), 15000)
            return
        self.prompt.clear()

    def on_regenerate(self, side: str) -> None:
        if self.client.state in ("crashed", "stopped"):
            self.statusBar().showMessage("The engine is not running: restart it first.", 6000)
            return
        self.session.regenerate(side, self.sampling.sampling(new_turn=True))

    def on_new_conversation(self) -> None:
        self.session.new_conversation()
        self.statusBar().showMessage("New conversation: the next prompt starts it.", 4000)
        self.prompt.setFocus()

    def on_open_conversation(self, conversation_id: str) -> None:
        try:
            conv = self.session.open_conversation(conversation_id)
        except (StoreError, KeyError, Exception) as exc:  # a damaged row must not crash the GUI
            self.statusBar().showMessage(f"Could not open that conversation: {exc}", 10000)
            return
        for slot in ("a", "b"):
            spec = conv.get(f"model_{slot}") or {}
            if spec and spec != self.pickers[slot].spec():
                self.pickers[slot].set_spec(spec)
                self.on_model_changed(slot, self.pickers[slot].spec())
        self.refresh_history()
        self.statusBar().showMessage(f"Reopened a conversation of {len(self.session.turns)} "
                                     "turns; a new prompt continues it.", 8000)

    # -- models ---------------------------------------------------------------------------
    def on_use_adapter(self, slot: str, adapter_path: str) -> None:
        """Put a trained adapter (on the base it was trained on) in pane A or B."""
        from studio.adapter_list import adapter_spec

        self.pickers[slot].set_spec(adapter_spec(self.pickers[slot].spec(), adapter_path), emit=True)
        self.statusBar().showMessage(f"Model {slot.upper()} now uses adapter {adapter_path}.", 8000)

    def on_model_changed(self, slot: str, spec: dict) -> None:
        self.prefs.set(f"model_{slot}", spec)
        self.session.set_model(slot, spec)
        for pane in self.panes.values():
            pane.refresh_header()

    def on_blind_toggled(self, on: bool) -> None:
        self.session.blind = on
        self.prefs.set("blind", on)
        for pane in self.panes.values():
            pane.refresh_header()

    # -- session events ---------------------------------------------------------------------
    def on_reset(self) -> None:
        for pane in self.panes.values():
            pane.rebuild()
        self.refresh_rating()
        self.refresh_history()

    def on_turn_added(self, idx: int) -> None:
        for pane in self.panes.values():
            pane.add_turn(idx)
        self.refresh_rating()

    def on_reply_text(self, idx: int, slot: str) -> None:
        for pane in self.panes.values():
            if pane.shows(idx, slot):
                pane.mark_streamed(idx)

    def on_reply_changed(self, idx: int, _slot: str) -> None:
        for pane in self.panes.values():
            pane.refresh_turn(idx)

    def on_rating_changed(self, idx: int) -> None:
        for pane in self.panes.values():
            pane.refresh_turn(idx)
        self.refresh_rating()

    def on_busy_changed(self, busy: bool) -> None:
        self.send_button.setEnabled(not busy)
        self.refresh_rating()

    def refresh_rating(self) -> None:
        turn = self.session.latest
        if turn is None:
            self.rating.set_target(False, "Rate the latest turn once both replies are in")
            return
        n = turn.idx + 1
        if turn.live:
            self.rating.set_target(False, f"Turn {n} · waiting for both replies…")
        elif not turn.complete:
            self.rating.set_target(False, f"Turn {n} cannot be rated: a reply is missing "
                                          "(regenerate it)", turn.rating)
        else:
            blind = "  (blind)" if turn.blind else ""
            self.rating.set_target(True, f"Turn {n} · Which reply sounds more like a "
                                         f"person?{blind}", turn.rating, turn.rating_stale)

    def check_store_files(self) -> str:
        """'' while the store's files are the ones it opened; else the problem, shown once
        (in the rating bar and the status bar) and the watch stops."""
        try:
            self.store.check_files()
        except StoreError as exc:
            self._store_watch.stop()
            self.rating.show_error(str(exc))
            self.statusBar().showMessage(str(exc))
            return str(exc)
        return ""

    def on_rated(self, verdict: str, note: str) -> None:
        try:
            self.session.rate(verdict, note)
        except (StoreError, ValueError) as exc:
            self.rating.show_error(str(exc))

    def on_note_edited(self, note: str) -> None:
        try:
            self.session.set_note(note)
        except StoreError as exc:
            self.rating.show_error(str(exc))

    def refresh_history(self) -> None:
        try:
            rows = self.store.conversations()
        except Exception as exc:  # the list is a convenience; say why it is empty
            self.statusBar().showMessage(f"Could not read past conversations: {exc}", 10000)
            return
        self.history.set_conversations(rows, self.session.conversation_id)

    # -- engine -------------------------------------------------------------------------------
    def on_engine_state(self, state: str) -> None:
        color, text = ENGINE_STATES.get(state, ("#718096", state))
        pid = self.client.info.get("pid") if state == "ready" else None
        self.engine_status.setText(f"<span style='color:{color}'>●</span> {text}"
                                   + (f"  <span style='color:#a0aec0'>pid {pid}</span>"
                                      if pid else ""))
        if state == "crashed":
            self.banner.show_crash(self.client.crash_message or "The engine stopped.",
                                   self.client.stderr_tail(), self.client.crash_reason())
            self.docks["log"].show()
            for slot, picker in self.pickers.items():
                picker.set_status("idle", "engine not running")
        elif state in ("ready", "starting"):
            self.banner.hide()
        if state == "ready":
            for slot in ("a", "b"):
                self.session.load(slot)
        for pane in self.panes.values():
            pane.refresh_header()

    def on_restart_engine(self) -> None:
        self.client.restart()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        if not getattr(self, "_sized", False):  # docks size only once the window is laid out
            self._sized = True
            QTimer.singleShot(0, self._size_docks)

    def _size_docks(self) -> None:
        self.resizeDocks([self.docks["history"], self.docks["sampling"]], [250, 260],
                         Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["log"]], [150], Qt.Orientation.Vertical)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt API)
        self.prefs.set("sampling", self.sampling.values())
        self.client.shutdown()
        super().closeEvent(event)
