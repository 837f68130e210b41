"""The human-likeness score of every finished reply in the compare view.

When a reply finishes (it has a ``reply_id``), the tracker asks the engine's
``score.reply`` for it and keeps the answer; reopened conversations are
scored as a batch. It asks only when the engine says it knows
``score.reply``, so a studio on an older engine simply shows no badges.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from studio.engine_calls import EngineCalls
from studio.engine_client import EngineClient

ENGINE_GONE = ("engine_crashed", "engine_stopped", "engine_not_running", "cancelled")


class ScoreTracker(QObject):
    """Scores by reply id, asked for as replies finish; widgets read them here."""

    sig_scored = Signal(str)
    """A reply's score, or the reason it has none, arrived (or is being redone): reply id."""

    def __init__(self, client: EngineClient, session, parent: QObject | None = None):
        super().__init__(parent)
        self.client = client
        self.session = session
        self.calls = EngineCalls(client, self)
        self.entries: dict[str, dict] = {}  # reply id -> score entry, or {"error": {...}}
        self.pending: set[str] = set()
        self.traits: dict[str, list[dict]] = {}  # questionnaire ref -> [{id, name, statement, theme}]
        self.scoring: dict[tuple[str, str], dict] = {}  # (judge, weights) -> how and why
        session.sig_reply_changed.connect(self.on_reply_changed)
        session.sig_reset.connect(self.on_reset)
        client.sig_state_changed.connect(self.on_engine_state)

    # -- reading --------------------------------------------------------------------
    def enabled(self) -> bool:
        return self.calls.supports("score.reply")

    def get(self, reply_id: str | None) -> dict | None:
        return self.entries.get(reply_id) if reply_id else None

    def is_pending(self, reply_id: str | None) -> bool:
        return bool(reply_id) and reply_id in self.pending

    def scoring_of(self, entry: dict | None) -> dict:
        """The judge, weights and the note on those weights that produced a score."""
        if not entry or "error" in entry:
            return {}
        return self.scoring.get((entry.get("judge"), entry.get("weights")), {})

    def trait_names(self, questionnaire: str | None) -> dict[str, dict]:
        return {str(t["id"]): t for t in self.traits.get(questionnaire or "", [])}

    # -- asking ---------------------------------------------------------------------
    def request(self, reply_ids: list[str], force: bool = False) -> None:
        """Ask for scores of these replies (those known or on the way are skipped unless forced)."""
        if not self.enabled() or self.client.state != "ready":
            return  # asked again for every finished reply once the engine is ready
        wanted = [r for r in dict.fromkeys(reply_ids) if r and r not in self.pending
                  and (force or r not in self.entries)]
        if not wanted:
            return
        self.pending.update(wanted)
        self.calls.call("score.reply", {"reply_ids": wanted},
                        on_result=lambda c, ids=wanted: self.on_scores(ids, c),
                        on_error=lambda c, ids=wanted: self.on_failed(ids, c))
        for reply_id in wanted:
            self.sig_scored.emit(reply_id)  # the badge shows "scoring…"

    def request_all(self, force: bool = False) -> None:
        ids = [r.reply_id for t in self.session.turns for r in t.replies.values() if r.finished]
        self.request(ids, force)

    # -- slots ----------------------------------------------------------------------
    def on_reply_changed(self, idx: int, slot: str) -> None:
        if idx < len(self.session.turns):
            reply = self.session.turns[idx].replies.get(slot)
            if reply is not None and reply.finished:
                self.request([reply.reply_id])

    def on_reset(self) -> None:
        self.request_all()

    def on_engine_state(self, state: str) -> None:
        if state == "ready":
            self.request_all()

    def on_scores(self, reply_ids: list[str], content: dict) -> None:
        self.traits.update(content.get("traits") or {})
        how = content.get("scoring") or {}
        if how:
            self.scoring[(how.get("judge"), how.get("weights"))] = how
        answered = set()
        for entry in content.get("scores") or []:
            reply_id = entry.get("reply_id")
            if reply_id:
                self.entries[reply_id] = entry
                answered.add(reply_id)
        for reply_id in reply_ids:
            self.pending.discard(reply_id)
            if reply_id not in answered:
                self.entries[reply_id] = {"error": {"kind": "missing", "message": "the engine sent no score"}}
            self.sig_scored.emit(reply_id)

    def on_failed(self, reply_ids: list[str], content: dict) -> None:
        for reply_id in reply_ids:
            self.pending.discard(reply_id)
            if content.get("kind") not in ENGINE_GONE:  # otherwise asked again when the engine is back
                self.entries[reply_id] = {"error": content}
            self.sig_scored.emit(reply_id)
