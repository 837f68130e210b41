"""``hal round ...``, ``hal eval`` and ``hal bench train``: rounds run headless.

Progress goes to stderr; ``--json`` prints one JSON object on stdout:
{round_id, adapter, seconds, steps, metrics, verdict, timings (seconds per phase),
verdict_share (the verdict's share of the round's time)}.

``hal round export ROUND_ID FOLDER`` writes a DPO round as a folder that trains
the same LoRA with ``accelerate launch`` elsewhere (engine/training/export.py);
``--json`` prints what was written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


class CliState:
    """A JobState that writes throttled progress lines to stderr."""

    def __init__(self, quiet: bool = False, interval_s: float = 2.0):
        from engine.jobs import JobState

        self._quiet = quiet
        self._job = JobState(self._emit, progress_interval_s=interval_s)

    def _emit(self, type_: str, content: dict) -> None:
        if self._quiet:
            return
        if type_ == "progress":
            eta = content.get("eta_s")
            print(f"[{content['elapsed_s']:7.1f}s] {content['message']}"
                  + (f" (eta {eta:.0f}s)" if eta is not None else ""), file=sys.stderr, flush=True)
        elif type_ == "log":
            print(f"  {content['text']}", file=sys.stderr, flush=True)

    def __getattr__(self, name):
        return getattr(self._job, name)


def _trim_verdict(v: dict | None) -> dict | None:
    if not v:
        return v
    keys = ("headline", "evaluator", "length_controlled", "looping",
            "base", "aligned", "delta", "delta_ci", "traits_delta", "length_delta", "length", "canary",
            "canary_human_chat",
            "n_prompts", "n_seeds", "judge", "weights", "sampler", "adapter", "seconds", "timings")
    return {k: v[k] for k in keys if k in v}


def _process_age_s() -> float | None:
    """Seconds since this process started (Linux), else None."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError):
        return None


def cmd_round(args: argparse.Namespace) -> int:
    from engine.store import Store
    from engine.training import kinds
    from engine.training.config import load_config_file

    overrides = load_config_file(args.config) if args.config else {}
    if args.resume:
        overrides["resume"] = args.resume
    config = kinds.make_config(args.kind, args.preset, overrides)  # refuses bad values before work
    store = Store(args.db) if args.db else Store()
    state = CliState(quiet=False)
    startup = _process_age_s()  # the interpreter and our imports, before the round starts
    t0 = time.perf_counter()
    try:
        out = kinds.run(args.kind, config, state, store)
    finally:
        store.close()
    if isinstance(out.get("timings"), dict) and startup is not None:
        out["timings"] = {"startup": startup, **out["timings"]}
    out = {"round_id": out.get("round_id"), "adapter": out.get("adapter"), "adapter_id": out.get("adapter"),
           "adapter_folder": out.get("adapter_path"),
           "seconds": out.get("seconds", round(time.perf_counter() - t0, 2)), "steps": out.get("steps"),
           "metrics": out.get("metrics") or {}, "verdict": _trim_verdict(out.get("verdict")),
           **{k: v for k, v in out.items()
              if k in ("cancelled", "weights", "gguf_path", "adapter_path", "timings", "verdict_share",
                       "timings_cpu")}}
    print(json.dumps(out, indent=None if args.json else 1, default=str))
    return 0


def _eval_config(args: argparse.Namespace, blind: bool):
    from engine.errors import BadRequest
    from engine.training import evaluate
    from engine.training.config import load_config_file

    if not getattr(args, "adapter", None):
        raise BadRequest("--adapter is needed (an adapter id, a unique id prefix, its folder or its adapter.gguf)")
    overrides = load_config_file(args.config) if args.config else {}
    overrides["adapter"] = args.adapter
    if getattr(args, "prompts", None):
        overrides["blind_prompts" if blind else "prompts"] = args.prompts
    return evaluate.make_config("default", overrides)


def _open_store(args):
    from engine.store import Store

    return Store(args.db) if args.db else Store()


def cmd_eval(args: argparse.Namespace) -> int:
    from engine.training import evaluate

    if args.rater:
        return cmd_eval_blind(args)
    if args.api_base or args.api_model:
        from engine.errors import BadRequest

        raise BadRequest("--api-base and --api-model go with --rater api")
    config = _eval_config(args, blind=False)
    store = _open_store(args)
    try:
        verdict = evaluate.run(config, CliState(), store)
    finally:
        store.close()
    print(json.dumps(_trim_verdict(verdict), indent=None if args.json else 1))
    return 0


def cmd_eval_blind(args: argparse.Namespace) -> int:
    """``hal eval --rater api``: base and adapter replies judged blind by an LLM, both orders."""
    from engine.errors import BadRequest
    from engine.scoring.pair_rater import PairRater
    from engine.training import blind

    if not args.api_base:
        raise BadRequest("--rater api needs --api-base URL (an OpenAI-compatible endpoint, e.g. "
                         "http://127.0.0.1:8000/v1)")
    config = _eval_config(args, blind=True)
    rater = PairRater(base_url=args.api_base, model=args.api_model, timeout=config.rater_timeout,
                      retries=config.rater_retries, response_format=config.rater_format,
                      concurrency=config.rater_concurrency)
    store = _open_store(args)
    try:
        out = blind.evaluate(config, CliState(), store, rater)
    finally:
        store.close()
        rater.close()
    print(json.dumps(out) if args.json else describe_blind(out))
    for e in out["errors"][:20]:  # the rest of the pairs went on; exit 3 says some did not
        print(f"hal: pair {e['pair_id']}: the rater failed: {e['reason']}", file=sys.stderr)
    return 3 if out["failed"] else 0


def describe_blind(out: dict) -> str:
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    lines = [f"blind eval {out['run_id']} ({'pairs reused' if out['reused_pairs'] else 'new pairs'}): "
             f"{out['adapter_model']} vs {out['base_model']} on {out['n_pairs']} prompts of {out['prompt_set']}, "
             f"rater {out['rater']} ({out['endpoint']})"]
    if out["n_counted"]:
        lines.append(f"  adapter win rate {pct(out['win_rate'])} [{pct(out['ci'][0])}, {pct(out['ci'][1])}] "
                     f"(95% Wilson) over {out['n_counted']} consistent pairs: adapter {out['adapter_preferred']}, "
                     f"base {out['base_preferred']}, tie {out['ties']}")
    else:
        lines.append("  no consistent pairs: no win rate")
    lines.append(f"  inconsistent (the two orders disagreed): {out['inconsistent']}; rater failed: {out['failed']}")
    if "looping" in out:
        lp = out["looping"]
        lines.append("  looping replies: " + ", ".join(
            f"{who} {lp[who]['looping']}/{lp[who]['n']} ({pct(lp[who]['share'])} [{pct((lp[who]['ci'] or [None])[0])}, "
            f"{pct((lp[who]['ci'] or [None, None])[1])}])" for who in ("adapter", "base")))
    lines.append(f"  stored as ratings by {out['rater']}: hal results --rater {out['rater']}")
    return "\n".join(lines)


def cmd_sheet_export(args: argparse.Namespace) -> int:
    from engine.training import blind, sheet

    config = _eval_config(args, blind=True)
    store = _open_store(args)
    try:
        run_id, reused = blind.make_run(config, CliState(), store)
        out = {**sheet.export(store, run_id, args.out), "reused_pairs": reused}
    finally:
        store.close()
    if args.json:
        print(json.dumps(out))
    else:
        print(f"wrote {out['pairs']} blind pairs to {out['out']} (run {run_id}; "
              f"{'pairs reused' if reused else 'new pairs'}); the key stays in the store")
    return 0


def cmd_sheet_import(args: argparse.Namespace) -> int:
    from engine.training import sheet

    store = _open_store(args)
    try:
        report = sheet.import_sheet(store, args.file, args.rater)
    finally:
        store.close()
    print(json.dumps(report) if args.json else sheet.describe(report))
    return 3 if report["bad"] else 0


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapter", help="adapter id, unique id prefix, its folder or its adapter.gguf")
    p.add_argument("--prompts", help="prompt set: blind eval default 'blind' (resources/prompts/"
                                     "blind_openers.jsonl), 'bundled' (held-out openers) or a JSONL file")
    p.add_argument("--config", help="a JSON file of settings (see engine.training.evaluate.EvalConfig)")
    p.add_argument("--db", help="the studio store (default: the user's)")
    p.add_argument("--json", action="store_true")


def cmd_export(args: argparse.Namespace) -> int:
    from engine.store import Store
    from engine.training.export import export_round

    store = Store(args.db) if args.db else Store()
    try:
        out = export_round(store, args.round_id, args.folder, copy_base=args.copy_base)
    finally:
        store.close()
    if args.json:
        print(json.dumps(out))
        return 0
    base = out["base"]
    print(f"Exported round {out['round_id']} to {out['folder']}: {out['pairs']} pairs ({out['rows']} rows), "
          f"base {'copied from' if base['copied'] else 'pointed at'} {base['from']}"
          + (f", starts from adapter {out['start_adapter']['from']}" if out["start_adapter"] else "")
          + (f", human-chat anchor x{out['anchor']['weight']:g}" if out["anchor"] else "") + ".")
    print(f"Run there: {out['run']}   (README.txt says more)")
    return 0


def register(sub) -> None:
    from engine.training.kinds import KINDS, title

    rounds = sub.add_parser("round", help="run an alignment round headless (DPO, online RL, reward updates), "
                                          "or export one for a bigger machine")
    kinds = rounds.add_subparsers(dest="kind", required=True, metavar="{" + ",".join([*KINDS, "export"]) + "}")
    for kind in KINDS:
        p = kinds.add_parser(kind, help=title(kind))
        p.add_argument("--preset", default="default", choices=["smoke", "default"],
                       help="smoke: under a minute, for checks; default: works on the bundled model on 2 cores")
        p.add_argument("--config", help="a JSON file of settings over the preset")
        p.add_argument("--resume", help="id of a cancelled or failed round to resume")
        p.add_argument("--db", help="the studio store (default: the user's)")
        p.add_argument("--json", action="store_true", help="one line of JSON on stdout")
        p.set_defaults(func=cmd_round)

    p = kinds.add_parser("export", help="write a DPO round as a folder that trains the same LoRA with "
                                        "accelerate launch on another machine (one GPU or many)")
    p.add_argument("round_id", metavar="ROUND_ID")
    p.add_argument("folder", metavar="FOLDER", help="a new (or empty) folder")
    p.add_argument("--no-copy-base", dest="copy_base", action="store_false",
                   help="point launch.sh at the base weights' folder here instead of copying them in")
    p.add_argument("--db", help="the studio store (default: the user's)")
    p.add_argument("--json", action="store_true", help="print what was written as one line of JSON")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("eval", help="the verdict of an adapter against the base on held-out prompts; "
                                    "with --rater api, a blind pairwise test by an LLM; 'sheet' for colleagues")
    _eval_args(p)
    p.add_argument("--rater", choices=["api"], help="judge base vs adapter blind, pair by pair, by an LLM at "
                                                    "an OpenAI-compatible endpoint (both orders asked)")
    p.add_argument("--api-base", help="the rater's endpoint, e.g. http://127.0.0.1:8000/v1 (key: HAL_API_KEY or "
                                      "OPENAI_API_KEY, never stored)")
    p.add_argument("--api-model", help="the rater's model name (default: the first the endpoint lists)")
    p.set_defaults(func=cmd_eval)
    sheet_p = p.add_subparsers(dest="eval_command").add_parser(
        "sheet", help="a blind sheet (CSV or HTML) of the same pairs for colleagues, and their verdicts back")
    ssub = sheet_p.add_subparsers(dest="sheet_command", required=True)
    e = ssub.add_parser("export", help="write the shuffled pairs without the key")
    _eval_args(e)
    e.add_argument("--out", required=True, help="FILE.csv or FILE.html")
    e.set_defaults(func=cmd_sheet_export)
    i = ssub.add_parser("import", help="store a filled sheet's verdicts as ratings by RATER")
    i.add_argument("file", help="the filled CSV (pair_id and verdict columns)")
    i.add_argument("--rater", required=True, help="who filled it (a name; 'me' for your own ratings)")
    i.add_argument("--db", help="the studio store (default: the user's)")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_sheet_import)


def register_bench(bench_sub) -> None:
    p = bench_sub.add_parser("train", help="a TRL DPO step in a plain script vs inside a studio round, and "
                                           "the engine's memory before and after a round")
    p.add_argument("--model", default="bundled", help="base model ('bundled', .gguf or folder)")
    p.add_argument("--steps", type=int, default=6, help="DPO steps timed in each setting")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2, help="alternating runs of each setting")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores, one on a busy machine)")
    p.add_argument("--gui", dest="gui", action="store_true", default=True,
                   help="also measure the studio's event loop while a round trains (the default)")
    p.add_argument("--no-gui", dest="gui", action="store_false", help="skip the GUI measurement")
    p.add_argument("--gui-preset", default="smoke", choices=["smoke", "default"],
                   help="the round trained during the GUI measurement")
    p.add_argument("--rss-preset", default="smoke", choices=["smoke", "default"],
                   help="the round run through a real engine process to measure its memory before and after")
    p.add_argument("--no-rss", dest="rss", action="store_false", default=True,
                   help="skip the engine memory measurement")
    p.add_argument("--json", action="store_true")

    def _bench(args):
        from engine.training.bench import bench_gui, bench_rss_round, bench_train

        out = bench_train(args.model, args.steps, args.batch_size, args.repeats, args.threads)
        if args.rss:
            out.update(bench_rss_round(args.model, args.rss_preset))
        if args.gui:
            out["gui"] = bench_gui(args.gui_preset)
            out["gui_p99_ms"] = out["gui"].get("p99_ms")
            out["gui_within_target"] = out["gui"].get("within_target")
        print(json.dumps(out, indent=None if args.json else 1))
        return 0

    p.set_defaults(func=_bench)
