"""Engine commands for trait discovery (importing this module registers them):

- ``discover.run`` {path, method, limit?, where?, contrast?: {...}, explain?: {...}} -> progress* then
  the run (as ``hal discover --json``), saved for later accepting; ``cancel`` stops it between games
- ``discover.runs`` {limit?} -> {runs: [summary]}; ``discover.get`` {run_id} -> {run}
- ``discover.accept`` {run_id, items: [{from, name?, statement?, theme?, measure?, present_when?, stratum?}],
  questionnaire_id, base?, name?, drop_traits?} -> {questionnaire, n_traits, parent, accepted: [...], note?}
- ``discover.features`` {} -> {features: [{name, label, theme}]}: what a measure can use
"""

from __future__ import annotations

from engine.errors import BadRequest
from engine.jobs import JobState
from engine.protocol import Message
from engine.server import Engine, command


def _str(content: dict, key: str) -> str:
    value = content.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{key} must be a non-empty string")
    return value


@command("discover.run")
def discover_run(engine: Engine, msg: Message, state: JobState) -> dict:
    from engine.discovery.runs import DiscoverConfig, run

    c = dict(msg.content)
    for key in ("contrast", "explain", "where"):
        if key in c and not isinstance(c[key], dict):
            raise BadRequest(f"{key} must be an object")
    config = DiscoverConfig.from_dict(c)  # checked before any work
    return run(config, state)


@command("discover.runs")
def discover_runs(engine: Engine, msg: Message, state: JobState) -> dict:
    from engine.discovery.runs import list_runs

    limit = msg.content.get("limit", 50)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100_000:
        raise BadRequest("limit must be a whole number from 1 to 100000")
    return {"runs": list_runs(limit)}


@command("discover.get")
def discover_get(engine: Engine, msg: Message, state: JobState) -> dict:
    from engine.discovery.runs import load_run

    return {"run": load_run(_str(msg.content, "run_id"))}


@command("discover.accept")
def discover_accept(engine: Engine, msg: Message, state: JobState) -> dict:
    from engine.discovery.accept import accept, summarise
    from engine.discovery.runs import load_run

    c = msg.content
    items = c.get("items")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise BadRequest("items must be a list of objects {from, name?, statement?, ...}")
    drop = c.get("drop_traits") or None
    if drop is not None and not (isinstance(drop, list) and all(isinstance(t, int) for t in drop)):
        raise BadRequest("drop_traits must be a list of trait ids")
    run = load_run(_str(c, "run_id"))
    q = accept(run, items, _str(c, "questionnaire_id"), base=c.get("base") or None, name=c.get("name") or None,
               drop_traits=drop)
    return summarise(q, run)


@command("discover.features")
def discover_features(engine: Engine, msg: Message, state: JobState) -> dict:
    from engine.discovery.candidates import CANDIDATES, DESCRIBE

    return {"features": [{"name": n, "label": DESCRIBE[n][0], "theme": DESCRIBE[n][3]} for n in CANDIDATES]}
