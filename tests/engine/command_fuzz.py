"""Hypothesis strategies for the arguments of the engine's commands.

Each command has a baseline (plausible, cheap content) that is mutated at one
place in its JSON tree: a value replaced by a hostile one (wrong type, huge,
deeply nested, NaN), a key removed, or a stray key added. Baselines hold at
least one cause of failure that no single mutation removes wherever running
the command for real would be slow (a round on the bundled model, a fit of a
real file), so every example is answered in seconds.
"""

from __future__ import annotations

from hypothesis import strategies as st

BUNDLED = {"source": "bundled", "adapter": None, "backend": "llamacpp"}
MISSING = "/nonexistent/hal-fuzz"

BASELINES: dict[str, dict] = {
    "load": {"model": BUNDLED},
    "generate": {"model": BUNDLED, "messages": [{"role": "user", "content": "hi"}],
                 "sampling": {"max_tokens": 2, "seed": 1, "temperature": 0.5, "top_p": 0.9,
                              "system_prompt": ""},
                 "persist": {"turn_id": "no-such-turn", "slot": "a", "side": "left"}},
    "models": {},
    "round.kinds": {},
    "round.start": {"kind": "dpo", "preset": "no-such-preset",
                    "config": {"model": MISSING, "prompts": MISSING + ".jsonl", "max_steps": 1}},
    "round.list": {"limit": 5},
    "round.get": {"round_id": "no-such-round"},
    "round.export": {"round_id": "no-such-round", "folder": "export-here"},
    "adapter.list": {},
    "adapter.rename": {"id": "no-such-adapter", "name": "warm and brief"},
    "eval": {"adapter": "no-such-adapter", "config": {"model": MISSING}},
    "pairs.export": {"pair_set": "no-such-set", "path": "pairs.jsonl", "format": "jsonl"},
    "prompts.check": {"source": "bundled"},
    "score.reply": {"items": [{"id": "x", "text": "lol yeah same", "context_messages": [
        {"role": "user", "content": "how are you"}]}], "judge": "lexical", "questionnaire": "hal32",
        "weights": "auto"},
    "score.config": {},
    "questionnaire.get": {"ref": "hal32"},
    "questionnaire.save": {"base": "hal32", "traits": [{"id": 1, "name": "n", "statement": "s",
                                                        "theme": "t"}], "new_id": "fuzzq", "name": "Fuzz"},
    "weights.get": {"ref": "hal16_published"},
    "fit.run": {"path": MISSING + ".csv", "judge": "lexical", "questionnaire": "hal32", "folds": 3,
                "penalty": "l2", "C": 1.0, "select": None, "save": False},
    "discover.run": {"path": MISSING + ".csv", "method": "contrast", "limit": 5, "where": {"ai_model": "*"},
                     "contrast": {"n_boot": 50, "by": None, "group_threshold": 0.7},
                     "explain": {"judge": "llm", "max_turns": 4, "temperature": 0.3}},
    "discover.runs": {"limit": 5},
    "discover.get": {"run_id": "no-such-run"},
    "discover.accept": {"run_id": "no-such-run", "items": [{"from": "x", "name": "n"}],
                        "questionnaire_id": "fuzzq2", "drop_traits": [1]},
    "discover.features": {},
}


def _nested(depth: int):
    value: object = "deep"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


HUGE_STRING = "x" * 300_000
leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from([-1, 0, 2**63, -(2**70), 10**30]),
    st.floats(), st.text(max_size=12), st.sampled_from(["", " ", "../..", "/", "\x00", "nan"]),
    st.just(HUGE_STRING), st.just(_nested(400)), st.just(list(range(5000))))
hostile = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                       max_leaves=6)


def _paths(tree, prefix=()):
    """Every place in a JSON tree a mutation can land (dict keys and list items)."""
    yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, prefix + (i,))


def _mutated(tree, path, how, value):
    if not path:
        return value if how == "replace" else tree
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        out = dict(tree)
        if not rest and how == "delete":
            out.pop(head, None)
        else:
            out[head] = _mutated(tree[head], rest, how, value)
        return out
    out = list(tree)
    if not rest and how == "delete":
        del out[head]
    else:
        out[head] = _mutated(tree[head], rest, how, value)
    return out


SWEEP_VALUES = (None, True, -1, 0, 2**63, float("nan"), float("inf"), "", "\x00", "../..", HUGE_STRING,
                [], [None], {}, {"k": [1]}, _nested(400))


def sweep(command: str):
    """Every place of the baseline with every one of SWEEP_VALUES, and every key removed."""
    base = BASELINES.get(command, {})
    for path in [p for p in _paths(base) if p]:
        yield _mutated(base, path, "delete", None)
        for value in SWEEP_VALUES:
            yield _mutated(base, path, "replace", value)
    yield {}


@st.composite
def mutated_content(draw, command: str) -> dict:
    """The command's baseline changed at one place, or stray keys only (every
    baseline key missing)."""
    base = BASELINES.get(command, {})
    how = draw(st.sampled_from(["replace", "replace", "delete", "add", "junk"]))
    if how == "junk":
        return draw(st.dictionaries(st.text(max_size=6), hostile, max_size=4))
    if how == "add":
        return {**base, draw(st.text(min_size=1, max_size=8)): draw(hostile)}
    paths = [p for p in _paths(base) if p] or [()]
    path = draw(st.sampled_from(paths))
    if how == "delete" and not path:
        return {}
    content = _mutated(base, path, how, draw(hostile) if how == "replace" else None)
    return content if isinstance(content, dict) else {"content": content}
