"""The compare view's controller: turns prompts into engine commands and store rows.

The studio writes conversations, turns and ratings to the store itself (a
rating never waits on the engine); the engine writes each reply row when the
``generate`` command carries ``persist``. Widgets listen to the signals here
and never talk to the engine or the store directly.
"""

from __future__ import annotations

import random

from PySide6.QtCore import QObject, QTimer, Signal

from engine.store import Store, StoreError, StoreQueued
from studio.conversation import SIDES, SLOTS, Reply, Turn, spec_label, thread_for, turns_from_store
from studio.engine_client import EngineClient
from studio.score_tracker import ScoreTracker

GONE = ("engine_crashed", "engine_stopped", "engine_not_running")


class CompareSession(QObject):
    """Holds the open conversation and routes engine events into it."""

    sig_reset = Signal()
    """The whole conversation was replaced (new or reopened)."""
    sig_turn_added = Signal(int)
    """A turn was added: its index."""
    sig_reply_text = Signal(int, str)
    """Streamed text arrived for a reply: (turn index, slot)."""
    sig_reply_changed = Signal(int, str)
    """A reply's status, text or stats changed: (turn index, slot)."""
    sig_rating_changed = Signal(int)
    """A turn's rating was saved (or its target turn changed): turn index."""
    sig_load_state = Signal(str, str, str)
    """A model slot's load state: (slot, loading|ready|error, message)."""
    sig_store_changed = Signal()
    """Rows were added to the store (the history list should refresh)."""
    sig_busy_changed = Signal(bool)
    """Whether any reply is still streaming."""

    def __init__(self, client: EngineClient, store: Store, parent: QObject | None = None):
        super().__init__(parent)
        self.client = client
        self.store = store
        self.blind = False
        self.specs: dict[str, dict] = {s: {"source": "bundled", "adapter": None,
                                           "backend": "auto"} for s in SLOTS}
        self.conversation_id: str | None = None
        self.turns: list[Turn] = []
        self._requests: dict[str, tuple[int, str]] = {}  # generate id -> (turn idx, slot)
        self._loads: dict[str, str] = {}  # load id -> slot
        self._busy = False
        client.sig_token.connect(self.on_token)
        client.sig_result.connect(self.on_result)
        client.sig_error.connect(self.on_error)
        self.scores = ScoreTracker(client, self, self)  # scores finished replies as they come
        # writes the store could not take at once (another program held it) wait in a queue
        # on disk; this timer writes them as soon as the store is free
        self._flush_timer = QTimer(self)
        self._flush_timer.setInterval(1000)
        self._flush_timer.timeout.connect(self.flush_queued)
        try:
            if store.pending_writes():
                self._flush_timer.start()
        except OSError:
            pass

    # -- models ---------------------------------------------------------------------
    def set_model(self, slot: str, spec: dict, load: bool = True) -> None:
        self.specs[slot] = dict(spec)
        if load:
            self.load(slot)

    def load(self, slot: str) -> None:
        """Ask the engine to load a slot's model now, so errors show in the picker."""
        for cid, s in list(self._loads.items()):
            if s == slot:
                del self._loads[cid]
        if self.client.state in ("crashed", "stopped"):
            return
        self._loads[self.client.send("load", {"model": self.specs[slot]})] = slot
        self.sig_load_state.emit(slot, "loading", "loading…")

    def label(self, slot: str) -> str:
        from engine.results.names import AdapterNames

        return spec_label(self.specs[slot], AdapterNames(self.store))

    # -- conversation ---------------------------------------------------------------
    @property
    def latest(self) -> Turn | None:
        return self.turns[-1] if self.turns else None

    def busy(self) -> bool:
        return any(t.live for t in self.turns)

    def new_conversation(self) -> None:
        for request_id in list(self._requests):
            self.client.cancel(request_id)
        self._requests.clear()
        self.conversation_id = None
        self.turns = []
        self.sig_reset.emit()
        self._update_busy()

    def open_conversation(self, conversation_id: str) -> dict:
        """Reopen a stored conversation; new prompts continue it."""
        conv = self.store.conversation(conversation_id)
        self.new_conversation()
        self.conversation_id = conversation_id
        self.turns = turns_from_store(conv)
        self.sig_reset.emit()
        return conv

    def send_prompt(self, prompt: str, sampling: dict) -> Turn:
        """Create the turn row and start both replies (raises StoreError)."""
        prompt = prompt.strip()
        if not prompt:
            raise ValueError("empty prompt")
        if self.conversation_id is None:
            self.conversation_id = self.store.create_conversation(
                self.specs["a"], self.specs["b"], sampling, self.blind, title=prompt[:80])
        a_side = random.choice(SIDES) if self.blind else "left"
        turn_id = self.store.add_turn(self.conversation_id, prompt, self.blind, a_side)
        turn = Turn(id=turn_id, idx=len(self.turns), prompt=prompt, blind=self.blind,
                    a_side=a_side, sampling=dict(sampling))
        self.turns.append(turn)
        for slot in SLOTS:
            turn.replies[slot] = Reply(slot=slot, side=turn.side_of(slot),
                                       model_label=self.label(slot))
        self.sig_turn_added.emit(turn.idx)
        for slot in SLOTS:  # back to back: the engine runs both at once
            self._generate(turn, slot, sampling)
        self.sig_store_changed.emit()
        self._update_busy()
        return turn

    def regenerate(self, side: str, sampling: dict) -> None:
        """Replace the latest turn's reply on one side (the store supersedes it)."""
        turn = self.latest
        if turn is None:
            return
        slot = turn.slot_on(side)
        old = turn.replies.get(slot)
        if old is not None and old.live:
            return
        turn.replies[slot] = Reply(slot=slot, side=side, model_label=self.label(slot))
        if turn.rating is not None:
            turn.rating_stale = True
        turn.sampling = dict(sampling)
        self.sig_reply_changed.emit(turn.idx, slot)
        self._generate(turn, slot, sampling)
        self.sig_rating_changed.emit(turn.idx)
        self._update_busy()

    def stop(self, side: str) -> None:
        turn = self.latest
        if turn is None:
            return
        reply = turn.reply_on(side)
        if reply is not None and reply.live and reply.request_id:
            self.client.cancel(reply.request_id)

    def _generate(self, turn: Turn, slot: str, sampling: dict) -> None:
        content = {"model": self.specs[slot],
                   "messages": thread_for(self.turns, slot, turn.idx, turn.prompt),
                   "sampling": sampling,
                   "persist": {"turn_id": turn.id, "slot": slot, "side": turn.side_of(slot)}}
        request_id = self.client.send("generate", content)
        turn.replies[slot].request_id = request_id
        self._requests[request_id] = (turn.idx, slot)

    # -- rating ---------------------------------------------------------------------
    def rate(self, verdict: str, note: str = "") -> dict:
        """Save the verdict on the latest turn at once; returns the stored row."""
        turn = self.latest
        if turn is None or not turn.complete:
            raise ValueError("the latest turn has no two finished replies to rate")
        left, right = turn.reply_on("left"), turn.reply_on("right")
        try:
            self.store.rate(turn.id, left.reply_id, right.reply_id, verdict, note=note,
                            blind=turn.blind, a_side=turn.a_side)
        except StoreQueued as exc:  # kept on disk; written by flush_queued when the store is free
            turn.rating = {"id": None, "turn_id": turn.id, "left_reply_id": left.reply_id,
                           "right_reply_id": right.reply_id, "verdict": verdict, "note": note,
                           "blind": int(turn.blind), "a_side": turn.a_side, "queued": str(exc)}
            turn.rating_stale = False
            self._flush_timer.start()
            self.sig_rating_changed.emit(turn.idx)
            return turn.rating
        turn.rating = self.store.rating_for_turn(turn.id)
        turn.rating_stale = False
        self.sig_rating_changed.emit(turn.idx)
        self.sig_store_changed.emit()
        return turn.rating

    def flush_queued(self) -> int:
        """Write queued ratings and replies if the store is free; returns how many still wait."""
        try:
            _written, left = self.store.flush_pending(wait_s=0.2)
        except (StoreError, OSError):
            return -1
        if left == 0:
            self._flush_timer.stop()
            for turn in self.turns:
                if turn.rating is not None and turn.rating.get("queued"):
                    turn.rating = self.store.rating_for_turn(turn.id)
                    self.sig_rating_changed.emit(turn.idx)
            self.sig_store_changed.emit()
        return left

    def set_note(self, note: str) -> None:
        turn = self.latest
        if turn is None or turn.rating is None or turn.rating.get("note", "") == note:
            return
        if turn.rating.get("queued"):  # not in the store yet: queue the verdict again with the note
            self.rate(turn.rating["verdict"], note)
            return
        self.store.set_note(turn.rating["id"], note)
        turn.rating = self.store.rating_for_turn(turn.id)
        self.sig_rating_changed.emit(turn.idx)

    # -- engine events --------------------------------------------------------------
    def _reply_for(self, request_id: str) -> tuple[Turn, Reply] | None:
        where = self._requests.get(request_id)
        if where is None:
            return None
        idx, slot = where
        if idx >= len(self.turns):
            return None
        reply = self.turns[idx].replies.get(slot)
        if reply is None or reply.request_id != request_id:
            return None
        return self.turns[idx], reply

    def on_token(self, request_id: str, text: str) -> None:
        found = self._reply_for(request_id)
        if found is None:
            return
        turn, reply = found
        reply.text += text
        if reply.status == "waiting":
            reply.status = "streaming"
            self.sig_reply_changed.emit(turn.idx, reply.slot)
        self.sig_reply_text.emit(turn.idx, reply.slot)

    def on_result(self, request_id: str, content: dict) -> None:
        if request_id in self._loads:
            slot = self._loads.pop(request_id)
            self.sig_load_state.emit(slot, "ready", _load_summary(content.get("info") or {}))
            return
        found = self._reply_for(request_id)
        self._requests.pop(request_id, None)
        if found is None:
            return
        turn, reply = found
        reply.text = str(content.get("text", reply.text))
        reply.finish_reason = str(content.get("finish_reason", ""))
        reply.stats = dict(content.get("stats") or {})
        reply.reply_id = content.get("reply_id")
        reply.looping = bool(content.get("looping"))
        reply.loop_reason = content.get("loop_reason") if reply.looping else None
        reply.status = "cancelled" if reply.finish_reason == "cancelled" else "done"
        self.sig_reply_changed.emit(turn.idx, reply.slot)
        if turn.complete:
            self.sig_rating_changed.emit(turn.idx)
        self.sig_store_changed.emit()
        self._update_busy()

    def on_error(self, request_id: str, content: dict) -> None:
        if request_id in self._loads:
            slot = self._loads.pop(request_id)
            if content.get("kind") not in GONE:
                self.sig_load_state.emit(slot, "error", content.get("message") or "failed")
            else:
                self.sig_load_state.emit(slot, "idle", "engine not running")
            return
        found = self._reply_for(request_id)
        self._requests.pop(request_id, None)
        if found is None:
            return
        turn, reply = found
        reply.status = "interrupted" if content.get("kind") in GONE else "error"
        reply.error = content.get("message") or content.get("kind") or "failed"
        self.sig_reply_changed.emit(turn.idx, reply.slot)
        self.sig_rating_changed.emit(turn.idx)
        self._update_busy()

    def _update_busy(self) -> None:
        busy = self.busy()
        if busy != self._busy:
            self._busy = busy
            self.sig_busy_changed.emit(busy)


def _load_summary(info: dict) -> str:
    """'ready · llama.cpp · ctx 8192' from a model's info dict."""
    parts = ["ready"]
    backend = info.get("backend")
    if backend:
        parts.append({"llamacpp": "llama.cpp"}.get(backend, backend))
    if info.get("n_ctx"):
        parts.append(f"ctx {info['n_ctx']}")
    return " · ".join(parts)
