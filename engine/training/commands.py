"""Engine commands for training (import this module to register them):

- ``round.kinds`` {} -> {kinds: [{kind, title, presets, fields, preset_values}]}: what the
  GUI's form shows; preset_values holds every setting of each preset
- ``round.start`` {kind, preset?, config?} -> progress*/metric* events, then result
  {round_id, adapter, seconds, steps, metrics, verdict}; ``cancel`` stops it at the
  next step end with a checkpoint (resume with config {"resume": round_id})
- ``round.list`` {limit?} -> {rounds}; ``round.get`` {round_id} -> {round}
- ``round.export`` {round_id, folder, copy_base?} -> {folder, files, pairs, rows, base, start_adapter,
  anchor, requirements, run}: a DPO round as a folder that trains the same LoRA with
  ``accelerate launch`` (engine/training/export.py)
- ``adapter.list`` {} -> {adapters}: each with ``display_name``
- ``adapter.rename`` {id, name} -> {id, name}: the name Results and exports show
- ``eval`` {adapter, config?} -> the verdict of an adapter against the base
- ``pairs.export`` {pair_set, path, format: jsonl|datasets} -> {rows, path}
- ``prompts.check`` {source: "bundled" | path} -> {name, digest, n_train, n_heldout, problems}
A second ``round.start`` while one runs is answered with error kind ``round_busy``.
Rounds and evals run in a child process that exits when done (engine/training/child.py),
so the engine's memory after a round is what it was before.
"""

from __future__ import annotations

from engine.errors import BadRequest
from engine.jobs import JobState
from engine.protocol import Message
from engine.server import Engine, command
from engine.training import child


MAX_LIMIT = 100_000


def _str(content: dict, key: str, required: bool = True) -> str | None:
    value = content.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{key} must be a non-empty string")
    return value


def _precheck(kind: str, config, store) -> None:
    """Cheap refusals before a child process starts (its imports take seconds): a missing
    model, prompt file, adapter or round is answered at once, as it was in process."""
    from engine.training import policy
    from engine.training import prompts as PS
    from engine.training.rounds import get_adapter, get_round

    if getattr(config, "resume", ""):
        get_round(store, config.resume)
        return  # a resumed round takes its settings from its row
    for key in ("continue_adapter", "adapter"):
        if getattr(config, key, ""):
            get_adapter(store, getattr(config, key))
    if kind in ("dpo", "online", "eval"):
        policy.resolve(config.model, config.base_gguf)
        PS.load(config.prompts)


@command("round.kinds")
def round_kinds(engine: Engine, msg: Message, state: JobState) -> dict:
    from engine.training import kinds
    from engine.training.config import describe, to_dict

    out = []
    for kind in kinds.KINDS:
        mod = kinds.module(kind)
        presets = sorted(getattr(mod, "PRESETS", {}))
        out.append({"kind": kind, "title": kinds.title(kind), "presets": presets,
                    "fields": describe(kinds.config_class(kind)),
                    "preset_values": {p: to_dict(kinds.make_config(kind, p, {})) for p in presets}})
    return {"kinds": out}


@command("round.start")
def round_start(engine: Engine, msg: Message, state: JobState) -> dict:
    from engine.training import kinds

    c = msg.content
    kind = _str(c, "kind")
    preset = c.get("preset") or "default"
    if not isinstance(preset, str):
        raise BadRequest("preset must be a preset's name (a string)")
    overrides = c.get("config") or {}
    if not isinstance(overrides, dict):
        raise BadRequest("config must be an object of settings")
    config = kinds.make_config(kind, preset, overrides)  # validated before any work
    if child.enabled() and kind in child.KINDS:  # the child exits when done: the engine's memory stays
        from engine.training.rounds import refuse_if_busy

        refuse_if_busy()
        _precheck(kind, config, engine.store)
        return child.run_in_child({"job": "round", "kind": kind, "preset": preset, "config": overrides},
                                  state, engine.store.path)
    try:
        return kinds.run(kind, config, state, engine.store)
    finally:
        child.give_back_memory()


@command("round.list")
def round_list(engine: Engine, msg: Message, state: JobState) -> dict:
    from engine.training.rounds import list_rounds

    limit = msg.content.get("limit", 200)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return {"rounds": list_rounds(engine.store, limit)}


@command("round.get")
def round_get(engine: Engine, msg: Message, state: JobState) -> dict:
    from engine.training.rounds import get_round

    return {"round": get_round(engine.store, _str(msg.content, "round_id"))}


@command("round.export")
def round_export(engine: Engine, msg: Message, state: JobState) -> dict:
    from engine.training.export import export_round

    copy_base = msg.content.get("copy_base", True)
    if not isinstance(copy_base, bool):
        raise BadRequest("copy_base must be true or false")
    return export_round(engine.store, _str(msg.content, "round_id"), _str(msg.content, "folder"), copy_base)


@command("adapter.list")
def adapter_list(engine: Engine, msg: Message, state: JobState) -> dict:
    from engine.training.rounds import list_adapters

    return {"adapters": list_adapters(engine.store)}


@command("adapter.rename")
def adapter_rename(engine: Engine, msg: Message, state: JobState) -> dict:
    """Give an adapter the name Results, exports and reports show (unique)."""
    from engine.results.names import rename_adapter

    try:
        row = rename_adapter(engine.store, _str(msg.content, "id"), _str(msg.content, "name"))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return {"id": row["id"], "name": row["name"]}


@command("eval")
def evaluate(engine: Engine, msg: Message, state: JobState) -> dict:
    from engine.training import evaluate as E

    overrides = msg.content.get("config") or {}
    if not isinstance(overrides, dict):
        raise BadRequest("config must be an object of settings")
    overrides = {**overrides, "adapter": _str(msg.content, "adapter")}
    config = E.make_config("default", overrides)  # validated before any work
    if child.enabled():
        _precheck("eval", config, engine.store)
        return child.run_in_child({"job": "eval", "config": overrides}, state, engine.store.path)
    try:
        return E.run(config, state, engine.store)
    finally:
        child.give_back_memory()


@command("pairs.export")
def pairs_export(engine: Engine, msg: Message, state: JobState) -> dict:
    from engine.training import pairs as P

    c = msg.content
    pairs = P.load(engine.store, _str(c, "pair_set"))
    fmt = c.get("format", "jsonl")
    path = _str(c, "path")
    if fmt == "jsonl":
        n = P.export_jsonl(pairs, path)
    elif fmt == "datasets":
        n = P.export_datasets(pairs, path)
    else:
        raise BadRequest("format must be jsonl or datasets")
    return {"rows": n, "path": path}


@command("prompts.check")
def prompts_check(engine: Engine, msg: Message, state: JobState) -> dict:
    """Read a prompt set and say what a round would use and which lines it would skip."""
    from engine.training import prompts as PS

    source = msg.content.get("source") or "bundled"
    if not isinstance(source, str):
        raise BadRequest("source must be \"bundled\" or the path of a JSONL file")
    return PS.summary(PS.load(source))
