"""Made-up ratings for demos, screenshots and tests: three models, blind and not,
a few side-swapped repeats, one identity leak and lexical scores."""

from __future__ import annotations

import json
import random

from engine.store import new_id

MODELS = {"base": ("SmolLM2-135M-Instruct", ""),
          "v2": ("SmolLM2-135M-Instruct", "adapter-v2"),
          "v3": ("SmolLM2-135M-Instruct", "adapter-v3")}
STRENGTH = {"base": 0.0, "v2": 0.5, "v3": 1.0}  # latent human-likeness
PROMPTS = ["how was your weekend?", "any plans tonight?", "what's your favourite food?",
           "did you see the game?", "ugh mondays", "tell me about your job",
           "what music are you into lately?", "rainy again here"]


def add_rating(store, left: str, right: str, verdict: str, blind: bool = True,
               left_text: str = "hey!", right_text: str = "Hello. How can I help?",
               prompt: str = "hi", prompt_set: str | None = None, note: str = "") -> str:
    """One turn, two replies (model keys or free names) and a rating; returns the rating id."""
    def spec(key):
        name, adapter = MODELS.get(key, (key, ""))
        return {"source": "bundled", "adapter": adapter or None}, {"name": name, "backend": "llamacpp"}

    (sl, il), (sr, ir) = spec(left), spec(right)
    conv = store.create_conversation(sl, sr, {"system_prompt": ""}, blind=blind, title=prompt)
    turn = store.add_turn(conv, prompt, blind=blind, a_side="left")
    if prompt_set is not None:
        store.db.execute("UPDATE turns SET prompt_set=? WHERE id=?", [prompt_set, turn])
    a = store.add_reply(turn, "a", "left", left_text, "stop", sl, il, {"seed": 0}, {})
    b = store.add_reply(turn, "b", "right", right_text, "stop", sr, ir, {"seed": 0}, {})
    return store.rate(turn, a, b, verdict, note=note, blind=blind, a_side="left")


def _verdict(rng: random.Random, diff: float, left_bias: float) -> str:
    x = diff + left_bias + rng.gauss(0, 0.9)
    if rng.random() < 0.05:
        return "both_bad"
    for cut, v in ((1.0, "certainly_left"), (0.35, "likely_left"), (-0.35, "tie"), (-1.0, "likely_right")):
        if x > cut:
            return v
    return "certainly_right"


def fill(store, n: int = 120, seed: int = 7) -> list[str]:
    """Fill a store with ``n`` ratings among the three models; returns their ids."""
    from engine.results.browser import record_repeat

    rng = random.Random(seed)
    keys = list(MODELS)
    ids = []
    for i in range(n):
        a, b = rng.sample(keys, 2)
        blind = i % 4 != 0
        human = "lol yeah it was chill, went hiking w/ friends"
        stiff = "Thank you for asking. I am doing well. Is there anything else?"
        lt = human if STRENGTH[a] + rng.gauss(0, 0.5) > 0.5 else stiff
        rt = human if STRENGTH[b] + rng.gauss(0, 0.5) > 0.5 else stiff
        if i == 5:
            lt = "As an AI language model, I don't have weekends."
        v = _verdict(rng, STRENGTH[a] - STRENGTH[b], 0.15 if blind else 0.3)
        rid = add_rating(store, a, b, v, blind=blind, left_text=lt, right_text=rt,
                         prompt=rng.choice(PROMPTS), prompt_set="chitchat" if i % 3 else "smalltalk")
        ids.append(rid)
        rating = store.db["ratings"].get(rid)
        for reply_id, key, text in ((rating["left_reply_id"], a, lt), (rating["right_reply_id"], b, rt)):
            traits = {"T01": 3 + STRENGTH[key] + rng.gauss(0, 0.7), "T05": 3 + rng.gauss(0, 1),
                      "T12": 2 + 2 * (text == human) + rng.gauss(0, 0.3)}
            score = sum(traits.values()) / 3
            store.db.execute("INSERT INTO scores (id, reply_id, judge, score, traits, created_at) "
                             "VALUES (?, ?, 'lexical', ?, ?, ?)",
                             [new_id(), reply_id, score, json.dumps(traits), rating["created_at"]])
    for rid in rng.sample(ids, max(1, n // 10)):
        r = store.db["ratings"].get(rid)
        flip = {"certainly_left": "certainly_right", "likely_left": "likely_right",
                "likely_right": "likely_left", "certainly_right": "certainly_left"}
        again = flip.get(r["verdict"], r["verdict"]) if rng.random() < 0.8 else rng.choice(list(flip))
        record_repeat(store, rid, r["right_reply_id"], r["left_reply_id"], again)
    return ids
