"""Engine commands for the human-likeness score (importing this module registers them):

- ``score.reply`` {reply_ids: [...] | items: [{id?, text, context_messages}], judge?,
  questionnaire?, weights?, model?} -> {scores: [{reply_id | id, score, probability,
  traits: {id: rating|null}, weights_used, contributions, shares, missing, imputed_weight,
  judge, questionnaire, weights, reused, score_id} | {reply_id | id, error: {kind, message}}],
  traits: {questionnaire ref: [{id, name, statement, theme}]}, scoring: {..., weights_note}}.
  Stored replies are rated in their own conversation and written to ``scores``; a row
  with the same judge, questionnaire and weights is reused.
- ``score.config`` {} -> {judges, questionnaires, weights, default, shared_turing}
- ``questionnaire.get`` {ref} -> {questionnaire}
- ``questionnaire.save`` {base, traits: [{id?, name, statement, theme}], new_id?, name?}
  -> {ref, questionnaire, changes}
- ``weights.get`` {ref} -> {weights, traits: [{id, name, theme}]}
- ``fit.run`` {FitJobConfig fields} -> progress* then the cross-validation report with
  ``saved_weights``; ``cancel`` stops it at the next chunk or fold.
"""

from __future__ import annotations

from dataclasses import replace

from engine.errors import BadRequest, Cancelled, EngineError
from engine.jobs import JobState
from engine.protocol import Message
from engine.server import Engine, command

MAX_ITEMS = 500


def _ref(content: dict, key: str, default: str | None = None) -> str:
    value = content.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{key} must be a non-empty string")
    return value.strip()


def _opt(content: dict, key: str) -> str | None:
    value = content.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value or None


def _error(key: str, item: str, exc: EngineError) -> dict:
    return {key: item, "error": {"kind": exc.kind, "message": exc.message}}


@command("score.reply")
def score_reply(engine: Engine, msg: Message, state: JobState) -> dict:
    """Score stored replies (or loose ones) with a breakdown per trait."""
    from engine.scoring import reply_scores as rs
    from engine.scoring.judges import RatingError
    from engine.scoring.score import score_ratings

    c = msg.content
    reply_ids, items = c.get("reply_ids"), c.get("items")
    if (reply_ids is None) == (items is None):
        raise BadRequest("give either reply_ids or items")
    entries = reply_ids if reply_ids is not None else items
    if not isinstance(entries, list) or not entries or len(entries) > MAX_ITEMS:
        raise BadRequest(f"{'reply_ids' if reply_ids is not None else 'items'} must be a list of 1 to {MAX_ITEMS}")
    choice = rs.choose(_opt(c, "judge"), _opt(c, "questionnaire"), _opt(c, "weights"), _opt(c, "model"))
    key = "reply_id" if reply_ids is not None else "id"
    out: list[dict | None] = [None] * len(entries)
    todo = []  # (index, reply id or None, item id, dialogue)
    for i, entry in enumerate(entries):
        if reply_ids is not None:
            if not isinstance(entry, str) or not entry:
                raise BadRequest(f"reply_ids[{i}] must be a reply id")
            row = rs.find_row(engine.store, entry, choice)
            if row:
                out[i] = rs.row_json(row, reused=True)
                continue
        if reply_ids is not None:
            item = entry
        else:
            item = str(entry.get("id") or f"item-{i}") if isinstance(entry, dict) else f"item-{i}"
        try:
            d = rs.reply_dialogue(engine.store, entry) if reply_ids is not None else rs.item_dialogue(entry, i)
        except RatingError as exc:
            out[i] = _error(key, item, exc)
            continue
        todo.append((i, entry if reply_ids is not None else None, item, d))
    if state.cancelled():
        raise Cancelled("scoring was cancelled")
    ratings = choice.judge.rate_many([d for *_, d in todo]) if todo else []
    for (i, reply_id, item, _d), r in zip(todo, ratings):
        try:
            if isinstance(r, RatingError):
                raise r
            s = score_ratings(r, choice.weights, choice.questionnaire)
        except EngineError as exc:
            out[i] = _error(key, item, exc)
            continue
        if reply_id is not None:
            row, reused = rs.save_row(engine.store, reply_id, choice, s)
            out[i] = rs.row_json(row, reused)
        else:
            out[i] = {"id": item, **rs.row_json(rs.make_row(None, choice, s), reused=False)}
            out[i].pop("score_id")
    return {"scores": out, "traits": {choice.questionnaire.ref: rs.trait_table(choice.questionnaire)},
            "scoring": choice.describe()}


def _judges() -> list[dict]:
    from engine.scoring.judges.distilled import list_models

    models = [m.get("id") for m in list_models()]
    return [
        {"name": "lexical", "available": True, "score": True, "fit": True,
         "note": "surface features, no model; traits it cannot see stay unrated"},
        {"name": "distilled", "available": bool(models), "score": bool(models), "fit": bool(models),
         "models": models, "note": "regressors fitted to another judge's ratings"
         + ("" if models else "; none fitted yet (hal distill)")},
        {"name": "precomputed", "available": True, "score": False, "fit": True,
         "note": "the ratings stored in the data file (e.g. GPT-5's)"},
        {"name": "llm", "available": False, "score": False, "fit": False, "note": "not offered in the studio yet"},
        {"name": "api", "available": False, "score": False, "fit": False, "note": "not offered in the studio yet"},
    ]


@command("score.config")
def score_config(engine: Engine, msg: Message, state: JobState) -> dict:
    """What the studio can choose from, and what scores a reply by default (and why)."""
    from engine.scoring import reply_scores as rs
    from engine.scoring import shared_data_dir
    from engine.scoring.traits import list_questionnaires, list_weights, load_questionnaire, load_weights

    questionnaires, weights = [], []
    for ref in list_questionnaires():
        try:
            q = load_questionnaire(ref)
        except EngineError:
            continue
        questionnaires.append({"ref": q.ref, "id": q.id, "version": q.version, "name": q.name,
                               "n_traits": len(q.traits), "parent": q.parent})
    for ref in list_weights():
        try:
            w = load_weights(ref)
        except EngineError:
            continue
        weights.append({"ref": w.ref, "id": w.id, "version": w.version, "name": w.name,
                        "questionnaire": w.questionnaire, "fitted_on_judge": w.fitted_on.get("judge"),
                        "cv_accuracy": w.metrics.get("cv_accuracy"), "n_traits": len(w.weights)})
    turing = shared_data_dir() / "turing_gpt5_train.csv"
    return {"judges": _judges(), "questionnaires": questionnaires, "weights": weights,
            "default": rs.choose().describe(), "shared_turing": str(turing) if turing.is_file() else None}


@command("questionnaire.get")
def questionnaire_get(engine: Engine, msg: Message, state: JobState) -> dict:
    from engine.scoring.traits import load_questionnaire

    q = load_questionnaire(_ref(msg.content, "ref", "hal32"))
    return {"questionnaire": {**q.to_dict(), "ref": q.ref}}


def _edited_traits(rows, base) -> tuple:
    """Validate the table the researcher edited; new rows get ids above 32 and above every id."""
    from engine.scoring.traits import Trait

    if not isinstance(rows, list) or not rows:
        raise BadRequest("traits must be a non-empty list")
    given = [r.get("id") for r in rows if isinstance(r, dict) and r.get("id") is not None]
    if any(not isinstance(t, int) or isinstance(t, bool) or t < 1 for t in given):
        raise BadRequest("a trait id must be a positive whole number (or empty for a new trait)")
    if len(set(given)) != len(given):
        raise BadRequest("two traits share an id")
    next_id = max([32, *given, *base.trait_ids]) + 1
    traits = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise BadRequest(f"traits[{i}] must be an object")
        name, statement = str(r.get("name") or "").strip(), str(r.get("statement") or "").strip()
        if not name or not statement:
            raise BadRequest(f"trait {r.get('id') or f'row {i + 1}'} needs a short name and a statement")
        if len(name) > 60 or len(statement) > 500:
            raise BadRequest(f"trait {name!r}: keep the name under 60 and the statement under 500 characters")
        tid = r.get("id")
        if tid is None:
            tid, next_id = next_id, next_id + 1
        traits.append(Trait(int(tid), name, statement, str(r.get("theme") or "").strip()))
    return tuple(traits)


@command("questionnaire.save")
def questionnaire_save(engine: Engine, msg: Message, state: JobState) -> dict:
    """Save an edited trait table as the next version (never overwrites a version)."""
    from engine.scoring.traits import load_questionnaire, save_questionnaire

    c = msg.content
    base = load_questionnaire(_ref(c, "base", "hal32"))
    traits = _edited_traits(c.get("traits"), base)
    new_id, name = _opt(c, "new_id"), _opt(c, "name")
    if traits == base.traits and not new_id and (not name or name == base.name):
        raise BadRequest(f"nothing changed from {base.ref}: edit a trait first")
    themes = list(base.themes)
    for theme in dict.fromkeys(t.theme for t in traits):
        if theme and theme not in {th.get("id") for th in themes}:
            themes.append({"id": theme, "name": theme.capitalize(), "about": ""})
    q = replace(base, traits=traits, themes=tuple(themes), name=name or base.name, version=None,
                parent=base.ref if base.version is not None else base.parent)
    saved = save_questionnaire(q, new_id=new_id)
    old = {t.id: t for t in base.traits}
    changes = {"added": [t.id for t in traits if t.id not in old],
               "dropped": [t for t in old if t not in {x.id for x in traits}],
               "edited": [t.id for t in traits if t.id in old and t != old[t.id]]}
    return {"ref": saved.ref, "questionnaire": {**saved.to_dict(), "ref": saved.ref}, "changes": changes}


@command("weights.get")
def weights_get(engine: Engine, msg: Message, state: JobState) -> dict:
    from engine.scoring.traits import load_questionnaire, load_weights

    w = load_weights(_ref(msg.content, "ref", "hal16_published"))
    try:
        q = load_questionnaire(w.questionnaire or "hal32")
    except EngineError:
        q = load_questionnaire("hal32")
    names = {t.id: t for t in q.traits}
    traits = [{"id": t, "name": names[t].name if t in names else f"trait {t}",
               "theme": names[t].theme if t in names else ""} for t in sorted(w.weights)]
    return {"weights": {**w.to_dict(), "ref": w.ref}, "traits": traits}


@command("fit.run")
def fit_run(engine: Engine, msg: Message, state: JobState) -> dict:
    """Fit weights on a labelled file (a job: progress events, cancellable)."""
    from engine.scoring.fit_job import FitJobConfig, run

    return run(FitJobConfig.from_dict(msg.content), state)
