"""Blind pairwise evaluation of an adapter against its base.

A **run** is one set of pairs: base and adapter answer each prompt of a prompt set
with the same seed (llama.cpp with the adapter's GGUF LoRA when both exist, else
transformers + PEFT). The run is stored as a conversation (one turn per prompt, the
two replies as reply rows with model, adapter, backend and sampling recorded, as chat
replies are) so its ratings appear in the Results tab beside the researcher's own.
Each pair gets an opaque id and its sides are drawn at random (``secrets``); which
side holds the adapter (the **key**) is kept only in the store's ``blind_pairs``.

The same pairs serve every rater: a run is reused when the adapter, base, prompt set
and sampling match, so an LLM rater (:func:`rate_run`) and colleagues filling a blind
sheet (:mod:`engine.training.sheet`) judge exactly the same replies.

An LLM rater is asked about every pair twice, once as shown (A then B) and once with
the sides swapped. The two answers are **consistent** when they pick the same reply
(or both say tie); only consistent pairs are counted, with the weaker of the two
strengths (certainly + likely = likely), and are stored as one rating by
``llm:<model>``. Inconsistent pairs are counted apart and stored as no rating; every
answer, consistent or not, is kept in ``rater_answers``.

The win rate is the Results tab's: certainly = 1, likely = 0.75, tie = 0.5 from the
adapter's side, with a Wilson 95% interval (engine.results.pairs).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine import paths
from engine.errors import BadRequest
from engine.store import new_id, now

BLIND_SET = "blind"
SIDES = ("A", "B")
# The paper's names (sheet and LLM answers) <-> the store's left/right verdicts; A is left.
TO_STORE = {"Certainly A": "certainly_left", "Likely A": "likely_left", "Tie": "tie",
            "Likely B": "likely_right", "Certainly B": "certainly_right", "Both bad": "both_bad"}
FROM_STORE = {v: k for k, v in TO_STORE.items()}
SCORE_A = {"Certainly A": 1.0, "Likely A": 0.75, "Tie": 0.5, "Likely B": 0.25, "Certainly B": 0.0}
METHOD = ("Base and adapter answer every prompt with the same seed; sides are drawn at random per pair. "
          "The rater sees each pair twice, sides swapped; a pair counts only when both answers pick the same "
          "reply (or both say tie), at the weaker of the two strengths. Win rate of the adapter: certainly = 1, "
          "likely = 0.75, tie = 0.5, over the counted pairs, with a 95% Wilson interval (summed scores as "
          "successes). Looping: engine.scoring.loops.is_looping on each reply, 95% Wilson interval.")


def blind_openers_path() -> Path:
    return paths.resources_dir() / "prompts" / "blind_openers.jsonl"


def load_prompts(source: str | None):
    """(name, prompts, digest) of a blind prompt set.

    ``blind`` (the default): resources/prompts/blind_openers.jsonl, held-out openers no
    round trains on, every line. ``bundled``: the held-out split of the bundled openers.
    A JSONL path: its ``heldout`` lines when it marks any, else every line."""
    from engine.training import prompts as PS

    source = source or BLIND_SET
    if source == BLIND_SET:
        path = blind_openers_path()
        if not path.is_file():
            raise BadRequest(f"the blind openers {path} are not installed; pass --prompts FILE.jsonl "
                             "(one {\"id\", \"text\"} a line)")
        pset = PS.load(path)
        pset.name = BLIND_SET
        chosen = pset.prompts
    else:
        pset = PS.load(source)
        held = pset.split("heldout")
        chosen = held if (source == "bundled" or held) else pset.prompts
    if pset.problems:
        first = pset.problems[0]
        raise BadRequest(f"prompt set {pset.name}: line {first['line']}: {first['reason']}"
                         + (f" (and {len(pset.problems) - 1} more bad lines)" if len(pset.problems) > 1 else ""))
    PS.require(chosen, 1, f"prompt set {pset.name}")
    return pset.name, chosen, pset.digest()


def _settings(config) -> dict:
    return {"temperature": config.blind_temperature, "top_p": config.blind_top_p,
            "max_tokens": config.blind_max_tokens, "seed": 1234 + config.seed, "top_k": config.blind_top_k,
            "min_p": config.blind_min_p, "repeat_penalty": config.blind_repeat_penalty}


def gguf_name(path) -> str | None:
    """``general.name`` from a GGUF file's header, reading only the key-value pairs before it."""
    import struct

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    try:
        with open(path, "rb") as fh:
            def u(fmt):
                return struct.unpack("<" + fmt, fh.read(struct.calcsize(fmt)))[0]

            def string():
                return fh.read(u("Q")).decode("utf-8", "replace")

            def skip(kind):
                if kind == 8:
                    fh.seek(u("Q"), 1)
                elif kind == 9:
                    inner, n = u("I"), u("Q")
                    if inner in sizes:
                        fh.seek(sizes[inner] * n, 1)
                    else:
                        for _ in range(n):
                            skip(inner)
                else:
                    fh.seek(sizes[kind], 1)

            if fh.read(4) != b"GGUF" or u("I") < 2:
                return None
            u("Q")  # tensors
            for _ in range(min(u("Q"), 4096)):
                key, kind = string(), u("I")
                if key == "general.name" and kind == 8:
                    return string()[:200]
                skip(kind)
    except (OSError, struct.error, KeyError):
        return None
    return None


def _model_name(base, sampler) -> str:
    """The base's name as the chat panes record it (llama.cpp: the GGUF's general.name)."""
    if getattr(sampler, "name", "") == "llamacpp":
        return sampler.model.info()["name"]
    if base.kind == "gguf":
        return gguf_name(base.path) or base.path.stem
    return base.path.name


def _open_sampler(config, base, row):
    """(sampler, adapter argument for the adapter's replies): llama.cpp with the GGUF LoRA
    when the base is GGUF and the adapter has its GGUF twin, else transformers + PEFT."""
    from engine.training import policy
    from engine.training.sampling import HFSampler, LlamaSampler, gguf_available

    gguf_lora = row.get("gguf_path") if row.get("gguf_path") and Path(row["gguf_path"]).is_file() else None
    if config.sampler == "llamacpp" and not (gguf_lora and base.gguf):
        raise BadRequest("sampler llamacpp needs a GGUF base and the adapter's GGUF LoRA (adapter.gguf)")
    if config.sampler != "transformers" and gguf_lora and base.gguf and gguf_available():
        return LlamaSampler(base.gguf, n_threads=policy.auto_threads(config.sample_threads)), gguf_lora
    from peft import PeftModel

    policy.set_threads(config.threads)
    model, tok = policy.load(base)
    model = PeftModel.from_pretrained(model, row["peft_path"])
    return HFSampler(model, tok), "default"


def _run_key(config, row, set_name: str, digest: str) -> dict:
    return {"adapter": row.get("id") or row["peft_path"], "base": config.model, "prompt_set": set_name,
            "prompt_digest": digest, "settings": json.dumps(_settings(config), sort_keys=True)}


def find_run(store, key: dict) -> str | None:
    row = store.db.execute(
        "SELECT id FROM blind_runs WHERE adapter=? AND base=? AND prompt_set=? AND prompt_digest=? "
        "AND settings=? ORDER BY created_at DESC LIMIT 1",
        [key["adapter"], key["base"], key["prompt_set"], key["prompt_digest"], key["settings"]]).fetchone()
    return row[0] if row else None


def make_run(config, state, store, fresh: bool = False) -> tuple[str, bool]:
    """The run for this adapter, base, prompt set and sampling: (run id, reused)."""
    from engine.training import policy
    from engine.training.rounds import get_adapter
    from engine.training.sampling import SampleSettings

    if not config.adapter:
        raise BadRequest("a blind eval needs an adapter (--adapter: id, id prefix, folder or adapter.gguf)")
    row = get_adapter(store, config.adapter)
    set_name, prompts, digest = load_prompts(config.blind_prompts)
    key = _run_key(config, row, set_name, digest)
    if not fresh:
        found = find_run(store, key)
        if found:
            return found, True
    base = policy.resolve(config.model, config.base_gguf)
    sampler, adapter_arg = _open_sampler(config, base, row)
    s = _settings(config)
    settings = SampleSettings(s["temperature"], s["top_p"], s["max_tokens"], s["top_k"], s["min_p"],
                              s["repeat_penalty"])
    msgs = [p.as_messages() for p in prompts]
    seeds = [s["seed"] + i for i in range(len(prompts))]
    total = 2 * len(prompts)
    try:
        state.progress(0, total, "base replies")
        base_txt = sampler.generate(msgs, seeds, None, settings, state.cancelled,
                                    lambda n: state.progress(n, total, f"replies {n}/{total}"))
        new_txt = sampler.generate(msgs, seeds, adapter_arg, settings, state.cancelled,
                                   lambda n: state.progress(len(prompts) + n, total,
                                                            f"replies {len(prompts) + n}/{total}"))
        name = _model_name(base, sampler)
        backend = sampler.name
    finally:
        policy.close(sampler)
    if state.cancelled() or len(base_txt) < len(prompts) or len(new_txt) < len(prompts):
        raise BadRequest("the blind eval was cancelled before every reply was made")
    return _store_run(store, key, row, base, name, backend, prompts, msgs, seeds, s, base_txt, new_txt), False


def _store_run(store, key, row, base, name, backend, prompts, msgs, seeds, s, base_txt, new_txt) -> str:
    rng = secrets.SystemRandom()
    adapter_ref = row["peft_path"]
    base_spec = {"source": key["base"], "adapter": None}
    new_spec = {"source": key["base"], "adapter": adapter_ref}
    info = {"name": name, "backend": backend, "path": str(base.path)}
    order = list(range(len(prompts)))
    rng.shuffle(order)
    with store._lock, store.db.conn:
        store.db.execute("BEGIN IMMEDIATE")
        conv = store.create_conversation(base_spec, new_spec, {**s, "system_prompt": ""}, blind=True,
                                         title=f"blind eval: {Path(adapter_ref).name} vs base ({key['prompt_set']})")
        for idx, i in enumerate(order):
            adapter_side = rng.choice(SIDES)
            a_side = "right" if adapter_side == "A" else "left"  # slot a = base, slot b = adapter
            turn = store.add_turn(conv, msgs[i][-1]["content"], blind=True, a_side=a_side)
            store.db.execute("UPDATE turns SET prompt_set=? WHERE id=?", [key["prompt_set"], turn])
            sampling = {**s, "seed": seeds[i]}
            r_base = store.add_reply(turn, "a", a_side, base_txt[i], "", base_spec, info, sampling, {})
            r_new = store.add_reply(turn, "b", "left" if a_side == "right" else "right", new_txt[i], "",
                                    new_spec, info, sampling, {})
            a_reply, b_reply = (r_new, r_base) if adapter_side == "A" else (r_base, r_new)
            store._insert("blind_pairs", {"id": "p" + secrets.token_hex(5), "run_id": conv, "idx": idx,
                                          "turn_id": turn, "prompt_id": prompts[i].id, "a_reply_id": a_reply,
                                          "b_reply_id": b_reply, "adapter_side": adapter_side,
                                          "created_at": now()})
        store._insert("blind_runs", {"id": conv, "conversation_id": conv, "created_at": now(),
                                     "adapter": key["adapter"], "adapter_path": adapter_ref, "base": key["base"],
                                     "prompt_set": key["prompt_set"], "prompt_digest": key["prompt_digest"],
                                     "settings": key["settings"], "n_pairs": len(prompts)})
    return conv


def load_pairs(store, run_id: str | None = None, pair_ids: list[str] | None = None) -> list[dict]:
    """Pairs in sheet order with their texts and key: {id, run_id, idx, turn_id, prompt,
    a_text, b_text, a_reply_id, b_reply_id, adapter_side}."""
    sql = """SELECT p.*, t.prompt, ra.text AS a_text, rb.text AS b_text FROM blind_pairs p
             JOIN turns t ON t.id = p.turn_id JOIN replies ra ON ra.id = p.a_reply_id
             JOIN replies rb ON rb.id = p.b_reply_id"""
    if run_id is not None:
        rows = store.db.query(sql + " WHERE p.run_id = ? ORDER BY p.idx", [run_id])
    else:
        rows = store.db.query(sql + " ORDER BY p.run_id, p.idx")
    out = [dict(r) for r in rows]
    if pair_ids is not None:
        keep = set(pair_ids)
        out = [p for p in out if p["id"] in keep]
    return out


def run_row(store, run_id: str) -> dict:
    row = store.db.execute("SELECT * FROM blind_runs WHERE id=?", [run_id]).fetchone()
    if row is None:
        raise BadRequest(f"no blind eval run {run_id}")
    cols = [d[0] for d in store.db.execute("SELECT * FROM blind_runs LIMIT 0").description]
    return dict(zip(cols, row))


# ------------------------------------------------------------------ LLM rater
def adapter_score(answer: str, shown_first: str, adapter_side: str) -> float:
    """The adapter's score (1 .. 0) from an answer given on the pair shown as
    ``shown_first`` (A: as on the sheet; B: sides swapped)."""
    s = SCORE_A[answer]  # the score of whatever was shown as A
    shown_a_is_sheet_a = shown_first == "A"
    sheet_a_score = s if shown_a_is_sheet_a else 1.0 - s
    return sheet_a_score if adapter_side == "A" else 1.0 - sheet_a_score


def combine(first: float, second: float) -> float | None:
    """Both orders' adapter scores -> the counted score, or None when they disagree."""
    if (first > 0.5) != (second > 0.5) or (first < 0.5) != (second < 0.5):
        return None
    return min(first, second, key=lambda x: abs(x - 0.5))


def _sheet_verdict(adapter_score_: float, adapter_side: str) -> str:
    """The paper's name, from the sheet's sides, for a score of the adapter."""
    a = adapter_score_ if adapter_side == "A" else 1.0 - adapter_score_
    return {v: k for k, v in SCORE_A.items()}[a]


def rate_run(store, run_id: str, rater, state, concurrency: int = 2) -> dict:
    """Ask ``rater`` (a PairRater) about every pair in both orders; store consistent
    verdicts as ratings and every answer in rater_answers. Returns counts."""
    pairs = load_pairs(store, run_id)
    jobs = [(p, shown) for p in pairs for shown in SIDES]
    total, done, lock = len(jobs), [0], threading.Lock()

    def one(job):
        p, shown = job
        if state.cancelled():
            return job, None, "cancelled"
        a, b = (p["a_text"], p["b_text"]) if shown == "A" else (p["b_text"], p["a_text"])
        try:
            verdict, raw = rater.ask(p["prompt"], a, b, item=p["id"])
            out = (job, (verdict, raw), None)
        except Exception as exc:  # RatingError, or anything the endpoint did; kept per pair
            out = (job, None, getattr(exc, "message", None) or str(exc))
        with lock:
            done[0] += 1
            state.progress(done[0], total, f"rater {done[0]}/{total}")
        return out

    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        results = list(pool.map(one, jobs))
    answers: dict[str, dict[str, float]] = {}
    raw_by: dict[str, dict[str, str]] = {}
    counts = {"consistent": 0, "inconsistent": 0, "failed": 0, "errors": []}
    errors: dict[str, str] = {}
    for (p, shown), got, error in results:
        store._insert("rater_answers", {"id": new_id(), "pair_id": p["id"], "rater": rater.rater,
                                        "shown": "AB" if shown == "A" else "BA",
                                        "verdict": got[0] if got else None, "raw": got[1] if got else None,
                                        "error": (error or "")[:400] or None, "created_at": now()})
        if error:
            errors.setdefault(p["id"], error[:300])
        if got:
            answers.setdefault(p["id"], {})[shown] = adapter_score(got[0], shown, p["adapter_side"])
            raw_by.setdefault(p["id"], {})[shown] = got[0]
    for p in pairs:
        got = answers.get(p["id"], {})
        if len(got) < 2:
            counts["failed"] += 1
            counts["errors"].append({"pair_id": p["id"], "reason": errors.get(p["id"], "no answer")})
            continue
        score = combine(got["A"], got["B"])
        if score is None:
            counts["inconsistent"] += 1
            continue
        counts["consistent"] += 1
        asked = raw_by[p["id"]]
        verdict = TO_STORE[_sheet_verdict(score, p["adapter_side"])]
        note = f"LLM rater, asked twice: {asked['A']} as shown; {asked['B']} with the sides swapped"
        store.rate_as(rater.rater, p["turn_id"], p["a_reply_id"], p["b_reply_id"], verdict, note=note)
    return counts


# ------------------------------------------------------------------- results
def identities(store, run_id: str) -> tuple[str, str]:
    """(adapter, base) as the Results tab names them."""
    from engine.results.data import identity
    from engine.results.names import AdapterNames

    pair = load_pairs(store, run_id)[:1]
    if not pair:
        raise BadRequest(f"blind eval run {run_id} has no pairs")
    rows = {r["id"]: r for r in store.db.query(
        "SELECT id, model_name, adapter, model_spec, model_path FROM replies WHERE id IN (?, ?)",
        [pair[0]["a_reply_id"], pair[0]["b_reply_id"]])}
    a, b = rows[pair[0]["a_reply_id"]], rows[pair[0]["b_reply_id"]]
    new, old = (a, b) if pair[0]["adapter_side"] == "A" else (b, a)
    names = AdapterNames(store)  # the names Results use, so the votes are found under them
    return (identity(new["model_name"], new["adapter"], new["model_spec"], new["model_path"], names),
            identity(old["model_name"], old["adapter"], old["model_spec"], old["model_path"], names))


def win_rate(store, run_id: str, rater: str, turn_ids: set[str] | None = None) -> dict:
    """The adapter's win rate over ``rater``'s ratings of this run's pairs (the Results
    tab's pair_result from the adapter's side), with adapter / base / tie counts."""
    from engine.results.data import Filters, load_votes
    from engine.results.pairs import pair_result

    new, old = identities(store, run_id)
    turns = {p["turn_id"] for p in load_pairs(store, run_id)}
    if turn_ids is not None:
        turns &= turn_ids
    votes = [v for v in load_votes(store, Filters(rater=rater)).votes if v.turn_id in turns]
    res = pair_result(new, old, votes, n_boot=200)
    c = res["counts"]
    return {"adapter_model": new, "base_model": old, "n": res["n"], "win_rate": res["win_rate"],
            "ci": res["ci"], "p_value": res["p_value"],
            "adapter_preferred": c["certainly_a"] + c["likely_a"],
            "base_preferred": c["certainly_b"] + c["likely_b"], "ties": c["tie"], "counts": c,
            "both_bad": res["both_bad"], "rating_ids": res["rating_ids"]}


def looping(store, run_id: str) -> dict | None:
    """Share of looping replies, base and adapter, with Wilson intervals; None when
    the loop detector (engine.scoring.loops) is not installed."""
    try:
        from engine.scoring.loops import is_looping
    except ImportError:
        return None
    from engine.results.stats import rounded, wilson

    pairs = load_pairs(store, run_id)
    out = {}
    for who in ("base", "adapter"):
        texts = [(p["a_text"] if (p["adapter_side"] == "A") == (who == "adapter") else p["b_text"]) for p in pairs]
        k = sum(bool(is_looping(t or "")) for t in texts)
        n = len(texts)
        out[who] = {"n": n, "looping": k, "share": rounded(k / n) if n else None, "ci": rounded(wilson(k, n))}
    return out


def evaluate(config, state, store, rater) -> dict:
    """``hal eval --rater api``: pairs (made or reused), both orders asked, the result."""
    t0 = time.perf_counter()
    run_id, reused = make_run(config, state, store)
    run = run_row(store, run_id)
    counts = rate_run(store, run_id, rater, state, config.rater_concurrency)
    wr = win_rate(store, run_id, rater.rater)
    out = {"run_id": run_id, "reused_pairs": reused, "adapter": run["adapter"], "base": run["base"],
           "adapter_model": wr["adapter_model"], "base_model": wr["base_model"],
           "prompt_set": run["prompt_set"], "n_pairs": run["n_pairs"], "sampling": json.loads(run["settings"]),
           **{k: v for k, v in rater.describe().items() if k in ("rater", "endpoint", "response_format")},
           "win_rate": wr["win_rate"], "ci": wr["ci"], "p_value": wr["p_value"], "n_counted": wr["n"],
           "adapter_preferred": wr["adapter_preferred"], "base_preferred": wr["base_preferred"],
           "ties": wr["ties"], "counts": wr["counts"], "consistent": counts["consistent"],
           "inconsistent": counts["inconsistent"], "failed": counts["failed"], "errors": counts["errors"][:50],
           "requests": rater.stats["requests"], "method": METHOD}
    loops = looping(store, run_id)
    if loops is not None:
        out["looping"] = loops
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
