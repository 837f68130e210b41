"""``hal bench loops``: how often chat replies loop, per sampling setting.

Every setting answers the same held-out openers (``resources/prompts/
blind_openers.jsonl``, one user turn each, no system prompt: a newcomer's
first chat) through the engine's own model path, with the same seeds; each
reply is judged by ``engine.scoring.loops``. The first row is always the
baseline, the sampling defaults before top-k / min-p / repetition penalty
existed (T 0.7, top-p 0.9), measured in the same run; the second is today's
``CHAT_DEFAULTS``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

# The defaults before this benchmark chose new ones (the baseline row).
BASELINE = {"temperature": 0.7, "top_p": 0.9, "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
CANDIDATES = {
    "rp1.1": {"temperature": 0.7, "top_p": 0.9, "repeat_penalty": 1.1},
    "rp1.2": {"temperature": 0.7, "top_p": 0.9, "repeat_penalty": 1.2},
    "rp1.3": {"temperature": 0.7, "top_p": 0.9, "repeat_penalty": 1.3},
    "k40-minp.05": {"temperature": 0.7, "top_p": 1.0, "top_k": 40, "min_p": 0.05},
    "k40-minp.05-rp1.15": {"temperature": 0.7, "top_p": 1.0, "top_k": 40, "min_p": 0.05,
                           "repeat_penalty": 1.15},
    "t0.8-k40-minp.05-rp1.2": {"temperature": 0.8, "top_p": 1.0, "top_k": 40, "min_p": 0.05,
                               "repeat_penalty": 1.2},
    "t0.9-k40-minp.05-rp1.2": {"temperature": 0.9, "top_p": 1.0, "top_k": 40, "min_p": 0.05,
                               "repeat_penalty": 1.2},
}


def default_prompt_file() -> Path:
    from engine import paths

    return paths.resources_dir() / "prompts" / "blind_openers.jsonl"


def load_openers(path: Path, limit: int | None = None) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path.name} line {n} is not JSON: {exc.msg}") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
                raise ValueError(f"{path.name} line {n} needs a non-empty \"text\"")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path} holds no openers")
    return rows[:limit] if limit else rows


def parse_setting(text: str) -> tuple[str, dict]:
    """``NAME=key:value,key:value`` (for example ``mine=temperature:0.8,repeat_penalty:1.2``)."""
    name, _, body = text.partition("=")
    if not name or not body:
        raise ValueError(f"--setting {text!r}: expected NAME=key:value,key:value")
    values = {}
    for item in body.split(","):
        key, _, value = item.partition(":")
        try:
            values[key.strip()] = int(value) if key.strip() in ("top_k", "repeat_last_n") else float(value)
        except ValueError:
            raise ValueError(f"--setting {text!r}: {value!r} is not a number") from None
    return name, values


def _wilson(k: int, n: int) -> list[float]:
    from engine.results.stats import wilson

    lo, hi = wilson(k, n)
    return [round(lo, 3), round(hi, 3)]


def run(settings: dict[str, dict], openers: list[dict], seeds: list[int], max_tokens: int = 160,
        model_source: str = "bundled", out_path: Path | None = None, progress=None) -> dict:
    from engine.models.base import Sampling, build_messages
    from engine.models.pool import ModelPool
    from engine.models.spec import ModelSpec
    from engine.scoring.loops import loop_reason, words

    # Every setting is spelled out in full on top of the baseline, so a name means
    # the same whatever today's chat defaults are.
    settings = {name: {**BASELINE, **values} for name, values in settings.items()}
    for name, values in settings.items():  # refuse a bad setting before any reply is sampled
        Sampling.from_dict({**values, "max_tokens": max_tokens})
    pool = ModelPool()
    rows, started = [], time.time()
    load = [os.getloadavg()[0]] if hasattr(os, "getloadavg") else []
    out = open(out_path, "w", encoding="utf-8") if out_path else None
    try:
        model, _ = pool.get(ModelSpec(source=model_source, backend="llamacpp"))
        total = len(settings) * len(openers) * len(seeds)
        done = 0
        # Interleaved: each opener and seed runs every setting in turn, so a change
        # in the machine's load falls on all settings alike.
        results: dict[str, list[dict]] = {name: [] for name in settings}
        for opener in openers:
            messages = build_messages([{"role": "user", "content": opener["text"]}], "")
            for seed in seeds:
                for name, values in settings.items():
                    sampling = Sampling.from_dict({**values, "max_tokens": max_tokens, "seed": seed})
                    result = model.generate(messages, sampling, None, lambda t: None, lambda: False)
                    reason = loop_reason(result.text)
                    item = {"setting": name, "sampling": values, "id": opener.get("id"), "seed": seed,
                            "text": result.text,
                            "finish_reason": result.finish_reason, "tokens": result.completion_tokens,
                            "words": len(words(result.text)), "tok_s": result.tok_s,
                            "looping": reason is not None, "loop_reason": reason}
                    results[name].append(item)
                    if out:
                        out.write(json.dumps({**item, "prompt": opener["text"]}) + "\n")
                    done += 1
                    if progress:
                        progress(done, total)
        rows = summarise(results, settings)
    finally:
        if out:
            out.close()
        pool.close()
    if hasattr(os, "getloadavg"):
        load.append(os.getloadavg()[0])
    return {"model": model_source, "openers": len(openers), "seeds": seeds, "max_tokens": max_tokens,
            "rows": rows, "wall_s": round(time.time() - started, 1),
            "load_avg_1min": [round(x, 2) for x in load], "baseline": "baseline",
            "note": "baseline = the sampling defaults before this benchmark (T 0.7, top-p 0.9, no top-k, "
                    "min-p or repetition penalty), measured in the same run"}


def summarise(results: dict[str, list[dict]], settings: dict[str, dict]) -> list[dict]:
    """One row per setting from its replies (dicts as ``--out`` writes them)."""
    from engine.scoring.loops import loop_rule

    rows = []
    for name, items in results.items():
        n = len(items)
        k = sum(i["looping"] for i in items)
        speeds = sorted(i["tok_s"] for i in items if i.get("tok_s"))
        rows.append({
            "setting": name, "sampling": settings[name], "replies": n,
            "looping": k, "looping_share": round(k / n, 4), "looping_ci95": _wilson(k, n),
            "by_rule": dict(Counter(loop_rule(i["loop_reason"]) for i in items if i["looping"])),
            "hit_max_tokens": round(sum(i["finish_reason"] == "length" for i in items) / n, 4),
            "mean_words": round(sum(i["words"] for i in items) / n, 1),
            "empty": sum(not i["text"].strip() for i in items),
            "median_tok_s": round(speeds[len(speeds) // 2], 1) if speeds else None})
    return rows


def from_replies(path: Path, max_tokens: int) -> dict:
    """A report re-made from a replies file written by ``--out`` (loop flags recomputed
    with today's rule); settings not spelled out in the file are taken as named."""
    from engine.scoring.loops import loop_reason, words

    results: dict[str, list[dict]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            reason = loop_reason(item["text"])
            item.update(looping=reason is not None, loop_reason=reason, words=len(words(item["text"])))
            results.setdefault(item["setting"], []).append(item)
    named = {"baseline": BASELINE, **{k: {**BASELINE, **v} for k, v in CANDIDATES.items()}}
    settings = {name: next((i["sampling"] for i in items if i.get("sampling")), named.get(name, {}))
                for name, items in results.items()}
    openers = {i["id"] for items in results.values() for i in items}
    seeds = sorted({i["seed"] for items in results.values() for i in items})
    return {"model": "(from file)", "openers": len(openers), "seeds": seeds, "max_tokens": max_tokens,
            "rows": summarise(results, settings), "wall_s": 0.0, "load_avg_1min": [],
            "baseline": "baseline", "source": str(path)}


def table(report: dict) -> str:
    lines = [f"{report['openers']} openers x seeds {report['seeds']}, {report['max_tokens']} max tokens, "
             f"{report['wall_s']:.0f} s, load {report['load_avg_1min']}",
             "| setting | T | top-p | top-k | min-p | rep. pen. | looping (95% CI) | by rule | "
             "hit max tokens | mean words |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        s = r["sampling"]
        lo, hi = r["looping_ci95"]
        rules = ", ".join(f"{k} {v}" for k, v in sorted(r["by_rule"].items())) or "-"
        lines.append(f"| {r['setting']} | {s['temperature']} | {s['top_p']} | {s['top_k']} | {s['min_p']} | "
                     f"{s['repeat_penalty']} | {r['looping']}/{r['replies']} = {r['looping_share']:.1%} "
                     f"[{lo:.1%}, {hi:.1%}] | {rules} | {r['hit_max_tokens']:.0%} | {r['mean_words']} |")
    return "\n".join(lines)


def _cmd(args: argparse.Namespace) -> int:
    from engine.models.base import CHAT_DEFAULTS

    settings = {"baseline": dict(BASELINE),
                "defaults": {k: CHAT_DEFAULTS[k] for k in ("temperature", "top_p", "top_k", "min_p",
                                                           "repeat_penalty")}}
    if args.setting:
        settings.update(parse_setting(s) for s in args.setting)
    elif not args.defaults_only:
        settings.update(CANDIDATES)
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be at least 1")
    if args.seeds < 1:
        raise ValueError("--seeds must be at least 1")
    openers = load_openers(Path(args.prompts) if args.prompts else default_prompt_file(), args.limit)
    seeds = list(range(args.seed, args.seed + args.seeds))

    def progress(done, total):
        if not args.quiet and (done % 25 == 0 or done == total):
            print(f"[{done}/{total} replies]", file=sys.stderr, flush=True)

    if args.from_replies:
        report = from_replies(Path(args.from_replies), args.max_tokens)
    else:
        report = run(settings, openers, seeds, args.max_tokens, args.model,
                     Path(args.out) if args.out else None, progress)
    print(json.dumps(report) if args.json else table(report))
    return 0


def register(bench_sub) -> None:
    p = bench_sub.add_parser("loops", help="looping share of chat replies per sampling setting "
                             "(baseline = the previous defaults, same run)")
    p.add_argument("--model", default="bundled", help="a .gguf file (llama.cpp) or 'bundled'")
    p.add_argument("--prompts", default=None, help="JSONL with a \"text\" per line "
                   "(default: resources/prompts/blind_openers.jsonl)")
    p.add_argument("--limit", type=int, default=None, help="only the first N openers")
    p.add_argument("--seeds", type=int, default=1, help="seeds per opener (seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--setting", action="append", default=None, metavar="NAME=key:value,...",
                   help="a setting to measure instead of the built-in candidates (repeatable)")
    p.add_argument("--defaults-only", action="store_true", help="only the baseline and today's defaults")
    p.add_argument("--out", default=None, help="write every reply (with its loop reason) to this JSONL")
    p.add_argument("--from-replies", default=None, metavar="FILE",
                   help="tabulate a replies file written by --out instead of sampling")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd)
