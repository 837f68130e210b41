"""From proposals to a questionnaire: accept, edit, merge, drop.

Each accepted item names one or more proposals of a saved run (a cluster
``c3``, a feature group ``g2`` or a feature by name); merging is an item with
several. The result is a new questionnaire version whose provenance says, per
trait, which run, file and evidence it came from, and, for a feature, the
measure that lets the ``measured`` judge rate it, so ``hal fit`` can weigh it.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace

from engine.errors import BadRequest
from engine.scoring.traits import Questionnaire, load_questionnaire, save_questionnaire

DISCOVERED = {"id": "discovered", "name": "Discovered", "about": "Traits proposed by trait discovery."}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "trait"


def proposals(run: dict, stratum: str | None = None) -> dict[str, dict]:
    """Every proposal of a run by id: clusters, feature groups and single features.

    ``stratum`` picks the ranking made within one value of the run's ``by`` key.
    """
    out: dict[str, dict] = {}
    for c in run.get("clusters") or []:
        out[c["id"]] = {"kind": "cluster", "id": c["id"], "size": c["size"], "n_games": c.get("n_games"),
                        "correct_share": c.get("correct_share"), "representatives": c["representatives"][:5],
                        "statement": c["representatives"][0] if c["representatives"] else "",
                        "name": "-".join(c.get("keywords", [])[:2]) or c["id"], "theme": ""}
    part = run
    if stratum is not None:
        part = (run.get("strata") or {}).get(str(stratum)) or {}
        if "candidates" not in part:
            raise BadRequest(f"run {run.get('run_id')} has no ranking for {run.get('by')} = {stratum!r}")
    extra = {"stratum": {"key": run.get("by"), "value": str(stratum)}} if stratum is not None else {}
    by_name = {c["name"]: c for c in part.get("candidates") or []}
    for name, c in by_name.items():
        out[name] = {"kind": "feature", "id": name, "auc": c["auc"], "ci": c["ci"], "direction": c["direction"],
                     "cliffs_delta": c.get("cliffs_delta"), "statement": c["statement"], "name": _slug(c["label"]),
                     "theme": c.get("theme", ""), **extra}
    for g in part.get("groups") or []:
        lead = out[g["lead"]]
        out[g["id"]] = {**lead, "kind": "feature group", "id": g["id"], "members": g["members"], "lead": g["lead"]}
    return out


def _measure(run: dict, feature: str, present_when: str | None, evidence: list[dict] = ()) -> dict:
    """Anchors that put 'trait present' at 5. A feature proposal's statement was drafted for the
    human side, so there present = human-like; a theme's statement can say either, so its
    polarity must be given ('higher' or 'lower': more of the feature means the trait is present)."""
    q = (run.get("feature_quantiles") or {}).get(feature)
    if not q:
        raise BadRequest(f"run {run.get('run_id')} has no values of the feature {feature!r} to anchor a measure")
    if present_when is None:
        cand = next((e for e in evidence if e.get("lead", e["id"]) == feature and "direction" in e), None)
        if cand is None:
            raise BadRequest(f"say whether more {feature} means the trait is present: {feature}:higher or "
                             f"{feature}:lower")
        present_when = "higher" if cand["direction"].startswith("higher") else "lower"
    if present_when not in ("higher", "lower"):
        raise BadRequest(f"a measure's polarity is 'higher' or 'lower', not {present_when!r}")
    lo, hi = (q["p10"], q["p90"]) if q["p10"] != q["p90"] else (q["min"], q["max"])
    if lo == hi:
        raise BadRequest(f"the feature {feature} does not vary in run {run.get('run_id')}; it cannot rate a trait")
    at1, at5 = (lo, hi) if present_when == "higher" else (hi, lo)
    out = {"feature": feature, "present_when": present_when, "at1": at1, "at5": at5,
           "anchors_from": "10th and 90th percentile of the run's data"}
    if "human_mean" in q and "ai_mean" in q:
        out["means"] = {"human": q["human_mean"], "ai": q["ai_mean"]}
    return out


def _one(run: dict, item: dict) -> tuple[dict, dict]:
    """(trait fields, provenance entry) for one accepted item."""
    props = proposals(run, item.get("stratum"))
    ids = item.get("from")
    ids = [ids] if isinstance(ids, str) else list(ids or [])
    if not ids:
        raise BadRequest("each accepted item needs 'from': one or more proposal ids")
    unknown = [i for i in ids if i not in props]
    if unknown:
        known = sorted(props)[:30]
        raise BadRequest(f"no proposal {', '.join(unknown)} in run {run.get('run_id')}", "known: " + ", ".join(known))
    evidence = [props[i] for i in ids]
    first = evidence[0]
    statement = " ".join(str(item.get("statement") or first["statement"]).split())
    if not statement:
        raise BadRequest(f"the trait from {'+'.join(ids)} needs a statement")
    name = _slug(str(item.get("name") or first["name"]))
    measure = None
    wanted = item.get("measure")
    if wanted:
        measure = _measure(run, str(wanted), item.get("present_when"), evidence)
    elif wanted is None:
        feature = next((e.get("lead", e["id"]) for e in evidence if e["kind"] != "cluster"), None)
        if feature:
            measure = _measure(run, feature, item.get("present_when"), evidence)
    entry = {"from": ids, "run": run.get("run_id"), "method": run.get("method"),
             "evidence": [{k: v for k, v in e.items() if k not in ("statement", "name", "theme")} for e in evidence],
             "edited": bool(item.get("statement")) and item["statement"] != first["statement"]}
    if len(ids) > 1:
        entry["merged"] = True
    if measure:
        entry["measure"] = measure
    return {"name": name, "statement": statement, "theme": str(item.get("theme") or first.get("theme") or "")}, entry


def accept(run: dict, items: list[dict], questionnaire_id: str, base: str | None = None, name: str | None = None,
           drop_traits: list[int] | None = None) -> Questionnaire:
    """Save the accepted items as a new version of ``questionnaire_id`` (on top of ``base``, if given)."""
    if not items:
        raise BadRequest("nothing to accept: choose at least one proposal")
    made = [_one(run, item) for item in items]
    if base:
        q = load_questionnaire(base)
        if drop_traits:
            q = q.drop_traits(*[int(t) for t in drop_traits])
    else:
        if drop_traits:
            raise BadRequest("drop_traits needs a base questionnaire")
        q = Questionnaire(id=questionnaire_id, version=None, name=name or questionnaire_id, traits=(),
                          description="Traits found by trait discovery.")
    known_themes = {t.get("id") for t in q.themes}
    try:
        hal_themes = {t["id"]: t for t in load_questionnaire("hal32").themes}
    except BadRequest:
        hal_themes = {}
    themes = list(q.themes)
    prov = dict(q.provenance)
    prov_traits = dict(prov.get("traits") or {})
    for fields, entry in made:
        theme = fields["theme"] if fields["theme"] in known_themes | set(hal_themes) else DISCOVERED["id"]
        if theme not in known_themes:
            themes.append(hal_themes.get(theme, DISCOVERED))
            known_themes.add(theme)
        q = q.add_trait(fields["name"], fields["statement"], theme)
        prov_traits[str(q.traits[-1].id)] = entry
    runs = dict(prov.get("runs") or {})
    runs[str(run.get("run_id"))] = {"method": run.get("method"), "source": run.get("source"),
                                   "judge": run.get("judge"), "created": run.get("created"),
                                   "n_dialogues": run.get("n_dialogues")}
    prov.update({"traits": prov_traits, "runs": runs, "accepted": time.strftime("%Y-%m-%dT%H:%M:%S")})
    q = replace(q, themes=tuple(themes), provenance=prov, name=name or q.name)
    return save_questionnaire(q, new_id=questionnaire_id)


def summarise(q: Questionnaire, run: dict) -> dict:
    """What ``discover.accept`` and ``hal discover accept`` answer: the version, the new traits, and a
    note on traits no local judge can rate yet."""
    prov = q.provenance.get("traits") or {}
    new = [t for t in q.traits if prov.get(str(t.id), {}).get("run") == run.get("run_id")]
    out = {"questionnaire": q.ref, "n_traits": len(q.traits), "parent": q.parent,
           "accepted": [{"id": t.id, "name": t.name, "statement": t.statement, "theme": t.theme,
                         "provenance": prov[str(t.id)]} for t in new]}
    unmeasured = [t.id for t in new if "measure" not in prov[str(t.id)]]
    if unmeasured:
        out["note"] = (f"trait(s) {', '.join(map(str, unmeasured))} have no measure: the measured judge leaves them "
                       "unrated, so a fit uses only the other traits. Rate them with a judge that reads statements "
                       "(llm / api), or accept them again with a measure (--measure ID=FEATURE).")
    return out
