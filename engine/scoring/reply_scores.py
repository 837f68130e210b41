"""Scores of the studio's replies: which dialogue a reply is rated in, which
judge and weights score it by default, and the ``scores`` rows in the store.

A reply is rated as the model's side of its own conversation: the user's
prompts are the partner ("I") and that slot's replies up to and including
this one are the rated speaker ("W"), as in the Turing games the weights were
fitted on. A score row is reused when the same judge, questionnaire and
weights already scored that reply.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from engine.errors import BadRequest
from engine.scoring.defaults import DEFAULT_JUDGE, resolve_weights
from engine.scoring.dialogue import Dialogue, Turn
from engine.scoring.judges import Judge, RatingError, get_judge
from engine.scoring.score import Score
from engine.scoring.traits import Questionnaire, Weights, load_questionnaire
from engine.store import new_id, now

SCORABLE_JUDGES = ("lexical", "distilled", "llm", "api")  # judges that can rate a new reply

_judges: dict[tuple, Judge] = {}
_judges_lock = threading.Lock()
_rows_lock = threading.Lock()


def judge_for(name: str, questionnaire: Questionnaire, model: str | None = None) -> Judge:
    """One judge object per (name, questionnaire, model), kept for the engine's life."""
    key = (name, questionnaire.ref, model)
    with _judges_lock:
        if key not in _judges:
            opts = {"questionnaire": questionnaire}
            if model:
                opts["model"] = model
            _judges[key] = get_judge(name, **opts)
        return _judges[key]


# -- which weights ------------------------------------------------------------------------

@dataclass
class Choice:
    """The judge, questionnaire and weights that score a reply, and why these weights."""

    judge: Judge
    questionnaire: Questionnaire
    weights: Weights
    matches_judge: bool
    note: str

    def describe(self) -> dict:
        return {"judge": self.judge.judge_id, "judge_name": self.judge.name,
                "questionnaire": self.questionnaire.ref, "weights": self.weights.ref,
                "weights_match_judge": self.matches_judge, "weights_note": self.note}


def weights_note(weights: Weights, judge: Judge) -> tuple[bool, str]:
    """Whether ``weights`` were fitted on this judge's ratings, and what that means, in words."""
    fitted_by = str(weights.fitted_on.get("judge") or "")
    teacher = getattr(judge, "teacher", None)
    if fitted_by and fitted_by == teacher:
        return True, (f"{weights.ref} was fitted on {fitted_by} ratings, which the {judge.judge_id} judge was "
                      f"distilled to reproduce: the score is on the scale the weights were fitted on.")
    if fitted_by == judge.judge_id:
        source = Path(str(weights.fitted_on.get("source") or "")).name or "its data"
        acc = weights.metrics.get("cv_accuracy")
        acc_text = f", cross-validated accuracy {acc:.0%}" if isinstance(acc, (int, float)) else ""
        return True, (f"{weights.ref} was fitted on {judge.judge_id} ratings of {source}"
                      f"{acc_text}: the score is this judge's logit of 'human'.")
    if not fitted_by:
        text = (f"{weights.ref} was not fitted on any ratings: every trait counts the same (the score is the "
                "mean rating minus 3, unrated traits at neutral). It orders replies by how many human-like "
                "traits show; p is not a calibrated probability.")
    else:
        text = (f"{weights.ref} was fitted on {fitted_by} ratings, not on {judge.judge_id}'s: the scales differ, "
                "so the score can misorder replies and p is not a calibrated probability.")
    unseen = [t for t in sorted(weights.weights) if t not in judge.questionnaire.trait_ids]
    if unseen:
        text += f" Traits {', '.join(map(str, unseen))} are outside the questionnaire."
    text += f" Run a fit on the {judge.name} judge (Traits tab) for weights of its own."
    return False, text


def choose(judge: str | None = None, questionnaire: str | None = None, weights: str | None = None,
           model: str | None = None) -> Choice:
    """Resolve a request's judge, questionnaire and weights ("auto" = the defaults).

    Default weights: one policy for badges, rounds and the CLI
    (``engine.scoring.defaults``): the shipped weights fitted on this judge's
    own ratings; never the published ones unless asked for by name (those were
    fitted on GPT-5's ratings and misorder the lexical judge's).
    """
    name = judge or DEFAULT_JUDGE
    if name not in SCORABLE_JUDGES:
        raise BadRequest(f"the {name!r} judge cannot rate a new reply",
                         detail="use one of: " + ", ".join(SCORABLE_JUDGES))
    probe = judge_for(name, load_questionnaire(questionnaire or "hal32"), model)
    w = resolve_weights(probe.judge_id, weights, getattr(probe, "teacher", None))
    q = probe.questionnaire
    if not questionnaire and w.questionnaire:
        try:
            q = load_questionnaire(w.questionnaire)
        except BadRequest:
            q = probe.questionnaire  # the weights' questionnaire is gone; hal32 still names the ids
    j = judge_for(name, q, model) if q.ref != probe.questionnaire.ref else probe
    matches, note = weights_note(w, j)
    return Choice(j, q, w, matches, note)


# -- the dialogue a reply is rated in ------------------------------------------------------

def _current_reply(store, turn_id: str, slot: str) -> dict | None:
    rows = list(store.db.query(
        "SELECT text FROM replies WHERE turn_id=? AND slot=? AND superseded=0 "
        "AND status IN ('done','cancelled') ORDER BY created_at DESC LIMIT 1", [turn_id, slot]))
    return rows[0] if rows else None


def reply_dialogue(store, reply_id: str) -> Dialogue:
    """The conversation up to this reply, as its model saw it (its own earlier replies)."""
    rows = list(store.db.query("SELECT * FROM replies WHERE id=?", [reply_id]))
    if not rows:
        raise RatingError(f"no reply {reply_id} in the store", item=reply_id)
    reply = rows[0]
    if not (reply.get("text") or "").strip():
        raise RatingError("the reply is empty: nothing to rate", item=reply_id)
    turn = store.db["turns"].get(reply["turn_id"])
    turns: list[Turn] = []
    for t in store.db["turns"].rows_where("conversation_id=? AND idx<?",
                                          [turn["conversation_id"], turn["idx"]], order_by="idx"):
        turns.append(Turn("I", t["prompt"]))
        earlier = _current_reply(store, t["id"], reply["slot"])
        if earlier and (earlier.get("text") or "").strip():
            turns.append(Turn("W", earlier["text"]))
    turns += [Turn("I", turn["prompt"]), Turn("W", reply["text"])]
    return Dialogue(id=reply_id, turns=tuple(turns), rated_speaker="W",
                    meta={"turn_idx": turn["idx"], "slot": reply["slot"]})


def item_dialogue(item: dict, index: int) -> Dialogue:
    """``{text, context_messages}``: a reply that is not in the store."""
    if not isinstance(item, dict):
        raise BadRequest(f"items[{index}] must be an object with text and context_messages")
    item_id = str(item.get("id") or f"item-{index}")
    text = item.get("text")
    if not isinstance(text, str):
        raise BadRequest(f"items[{index}].text must be a string")
    if not text.strip():
        raise RatingError("the reply is empty: nothing to rate", item=item_id)
    turns = []
    context = item.get("context_messages") or []
    if not isinstance(context, list):
        raise BadRequest(f"items[{index}].context_messages must be a list of messages")
    for m in context:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise BadRequest(f"items[{index}].context_messages holds a message without content")
        if m.get("role") in ("user", "assistant"):
            turns.append(Turn("I" if m["role"] == "user" else "W", m["content"]))
    turns.append(Turn("W", text))
    return Dialogue(id=item_id, turns=tuple(turns), rated_speaker="W")


# -- score rows ---------------------------------------------------------------------------

def trait_rows(s: Score, weights: Weights, questionnaire: Questionnaire) -> dict[str, dict]:
    """Per trait: rating (None = not rated), weight, contribution, share, imputed."""
    out = {}
    for tid in sorted(set(questionnaire.trait_ids) | set(weights.weights)):
        w = weights.weights.get(tid)
        out[str(tid)] = {"rating": s.ratings.get(tid), "weight": w,
                         "contribution": s.contributions.get(tid), "share": s.shares.get(tid),
                         "imputed": tid in s.missing}
    return out


def find_row(store, reply_id: str, choice: Choice) -> dict | None:
    rows = list(store.db.query(
        "SELECT * FROM scores WHERE reply_id=? AND judge=? AND questionnaire=? AND weights=? "
        "ORDER BY created_at DESC LIMIT 1",
        [reply_id, choice.judge.judge_id, choice.questionnaire.ref, choice.weights.ref]))
    return rows[0] if rows else None


def make_row(reply_id: str | None, choice: Choice, s: Score) -> dict:
    return {"id": new_id(), "reply_id": reply_id, "judge": choice.judge.judge_id,
            "questionnaire": choice.questionnaire.ref, "weights": choice.weights.ref,
            "score": s.score, "probability": s.probability,
            "traits": json.dumps(trait_rows(s, choice.weights, choice.questionnaire)),
            "created_at": now()}


def save_row(store, reply_id: str, choice: Choice, s: Score) -> tuple[dict, bool]:
    """Write a score row unless an equal one appeared meanwhile; (row, reused)."""
    with _rows_lock:
        existing = find_row(store, reply_id, choice)
        if existing:
            return existing, True
        row = make_row(reply_id, choice, s)
        store._insert("scores", row)
        return row, False


def row_json(row: dict, reused: bool) -> dict:
    """A stored score as the wire shows it (fresh and reused rows look the same)."""
    traits = json.loads(row["traits"] or "{}")
    missing = [int(t) for t, v in traits.items() if v.get("imputed")]
    abs_w = sum(abs(v["weight"]) for v in traits.values() if v.get("weight") is not None) or 1.0
    imputed = sum(abs(traits[str(t)]["weight"]) for t in missing) / abs_w
    return {
        "reply_id": row["reply_id"], "score_id": row["id"], "score": row["score"],
        "probability": row["probability"],
        "traits": {t: v.get("rating") for t, v in traits.items()},
        "weights_used": {t: v["weight"] for t, v in traits.items() if v.get("weight") is not None},
        "contributions": {t: v["contribution"] for t, v in traits.items()
                          if v.get("contribution") is not None},
        "shares": {t: v["share"] for t, v in traits.items() if v.get("share") is not None},
        "missing": missing, "imputed_weight": round(imputed, 6), "judge": row["judge"],
        "questionnaire": row["questionnaire"], "weights": row["weights"], "reused": reused,
        "created_at": row["created_at"],
    }


def trait_table(q: Questionnaire) -> list[dict]:
    return [{"id": t.id, "name": t.name, "statement": t.statement, "theme": t.theme} for t in q.traits]
