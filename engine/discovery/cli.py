"""``hal discover``: propose traits from contrastive data, and accept them into a questionnaire.

    hal discover DATA --method contrast|explain [--judge llm|api] [--limit N] [--json]
    hal discover accept RUN --take c1+c4 --take "g2=Keeps each message short." --into my-traits [--base hal32]
    hal discover runs | hal discover show RUN

With ``--json`` the result is one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

from engine.errors import EngineError
from engine.jobs import JobState

VERBS = ("accept", "runs", "show")


class _StderrState(JobState):
    """Progress lines on stderr, at most one a second, so stdout stays one JSON object."""

    def __init__(self, quiet: bool):
        super().__init__(self._print, progress_interval_s=1.0)
        self.quiet = quiet

    def _print(self, type_: str, content: dict) -> None:
        if not self.quiet and type_ in ("progress", "log"):
            text = content.get("message") or content.get("text") or ""
            done = f"[{content.get('done'):g}/{content.get('total'):g}] " if "done" in content else ""
            print(f"hal discover: {done}{text}", file=sys.stderr, flush=True)


def _config(args):
    from engine.discovery.runs import DiscoverConfig

    where = {}
    for item in args.where or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EngineError(f"--where takes KEY=GLOB, not {item!r}", kind="bad_request")
        where[key] = value
    return DiscoverConfig.from_dict({
        "path": args.target, "method": args.method, "limit": args.limit, "where": where,
        "contrast": {"n_boot": args.n_boot, "group_threshold": args.group_threshold, "by": args.by,
                     "seed": args.seed, "systems": args.systems, "two_sided": not args.no_two_sided},
        "explain": {"judge": args.judge, "model": args.model, "threads": args.threads, "api_base": args.api_base,
                    "api_model": args.api_model, "api_key_env": args.api_key_env, "verdict": args.verdict,
                    "both_orders": not args.one_order,
                    "explain_from": args.explain_from, "context": args.context, "max_turns": args.max_turns,
                    "max_chars": args.max_chars,
                    "max_statements": args.max_statements, "max_tokens": args.max_tokens,
                    "temperature": args.temperature, "min_cluster_size": args.min_cluster_size, "seed": args.seed,
                    "cache": not args.no_cache},
    })


def _print_text(report: dict, top: int) -> None:
    print(f"{report['method']} on {report['n_dialogues']} sides; run {report.get('run_id')}")
    if report["method"] == "contrast":
        s = report.get("summary") or {}
        print(f"{s.get('n_at_mark')} of {s.get('n_candidates')} candidates reach AUC >= {s.get('auc_mark')}"
              + (f"; {s['n_direction_flips']} go significantly the other way in some {report['systems_key']} "
                 f"(marked !)" if "n_direction_flips" in s else ""))
        print(f"{'rank':>4}  {'AUC':>5}  {'95% CI':>13}  {'direction':<17} {'group':<5} feature")
        for c in report["candidates"][:top]:
            flip = f"  ! against: {', '.join(c['against_direction'])}" if c.get("direction_flips") else ""
            print(f"{c['rank']:>4}  {c['auc']:.3f}  {c['ci'][0]:.3f}-{c['ci'][1]:.3f}  {c['direction']:<17} "
                  f"{c.get('group', ''):<5} {c['name']} ({c['label']}){flip}")
        if report.get("two_sided"):
            print("nearer the typical human level (two-sided, cross-fitted centre):")
            for c in report["two_sided"][:5]:
                print(f"{c['rank']:>4}  {c['auc']:.3f}  {c['ci'][0]:.3f}-{c['ci'][1]:.3f}  {c['name']} "
                      f"(one-sided {c['one_sided_auc']:.3f})")
    else:
        acc = report["judge_verdict_accuracy"]
        print(f"judge {report['judge']['judge']}: verdict accuracy "
              f"{'-' if acc is None else f'{100 * acc:.1f}%'} on {report['n_verdicts']} games "
              f"(paper's best judge {100 * report['paper_best_judge_accuracy']:.1f}%); "
              f"{report['n_statements']} statements from {report['games_with_statements']} games")
        bias = report.get("position_bias") or {}
        if bias.get("answers_a_share") is not None:
            consistent = bias.get("consistent_share")
            print(f"position bias: answered A in {100 * bias['answers_a_share']:.0f}% of {bias['n_answers']} asks"
                  + ("" if consistent is None else f"; the same chat in both orders in {100 * consistent:.0f}% "
                                                   f"of {bias['n_asked_both']} games"))
        if bias.get("message"):
            print(bias["message"])
        if report["clustering"].get("message"):
            print(report["clustering"]["message"])
        for c in report["clusters"][:top]:
            print(f"{c['id']} ({c['size']} statements, {c['n_games']} games): " + " | ".join(c["representatives"][:3]))
    for p in report.get("problems", [])[:10]:
        print(f"  {p['id']}: {p['error']}", file=sys.stderr)


def _items(args) -> list[dict]:
    """--take IDS[=STATEMENT], --trait-name IDS=NAME, --measure IDS=FEATURE[:higher|lower] -> accept items."""
    items: dict[str, dict] = {}
    for spec in args.take or []:
        ids, sep, statement = spec.partition("=")
        item = {"from": [i.strip() for i in ids.split("+") if i.strip()]}
        if sep:
            item["statement"] = statement.strip()
        items[ids.strip()] = item
    for opt, key in ((args.trait_name, "name"), (args.measure, "measure")):
        for spec in opt or []:
            ids, sep, value = spec.partition("=")
            if not sep or ids.strip() not in items:
                raise EngineError(f"{spec!r} must name a --take item as IDS=VALUE", kind="bad_request")
            if key == "measure":
                feature, _, polarity = value.partition(":")
                items[ids.strip()]["measure"] = feature
                if polarity:
                    items[ids.strip()]["present_when"] = polarity
            else:
                items[ids.strip()][key] = value
    return list(items.values())


def cmd_discover(args) -> int:
    from engine.discovery import runs

    if args.target == "runs":
        out = runs.list_runs(args.limit or 50)
        print(json.dumps({"runs": out}) if args.json else "\n".join(
            f"{r['run_id']}  {r['source']}  {r['n_dialogues']} sides" for r in out))
        return 0
    if args.target in ("show", "accept"):
        if not args.run:
            raise EngineError(f"hal discover {args.target} needs a run id or file", kind="bad_request")
        run = runs.load_run(args.run)
        if args.target == "show":
            print(json.dumps(run, ensure_ascii=False) if args.json else json.dumps(run, indent=1)[:20000])
            return 0
        from engine.discovery.accept import accept, summarise

        if not args.into:
            raise EngineError("hal discover accept needs --into QUESTIONNAIRE_ID", kind="bad_request")
        q = accept(run, _items(args), args.into, base=args.base, name=args.title,
                   drop_traits=args.drop_trait or None)
        out = summarise(q, run)
        print(json.dumps(out, ensure_ascii=False) if args.json else
              f"saved {q.ref} ({len(q.traits)} traits); try: hal fit DATA --questionnaire {q.ref} --judge measured"
              + (f"\nnote: {out['note']}" if "note" in out else ""))
        return 0
    if args.run:
        raise EngineError(f"unexpected argument {args.run!r}", kind="bad_request")
    report = runs.run(_config(args), _StderrState(args.quiet), save=not args.no_save)
    if args.json:
        print(json.dumps(report, ensure_ascii=False), flush=True)
    else:
        _print_text(report, args.top)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("discover", help="propose traits from human-vs-AI dialogues; accept them",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="a data file (Turing CSV or JSONL), or: accept, runs, show")
    p.add_argument("run", nargs="?", help="accept/show: a run id (see 'hal discover runs') or run file")
    p.add_argument("--method", default="contrast", choices=["contrast", "explain"])
    p.add_argument("--judge", default="llm", choices=["llm", "api"], help="explain: the judge (default llm)")
    p.add_argument("--model", default="bundled", help="llm judge: 'bundled' or a .gguf file")
    p.add_argument("--threads", type=int, default=0, help="llm judge: CPU threads (0 = by machine load)")
    p.add_argument("--api-base", default="", help="api judge: base URL (or HAL_API_BASE), e.g. http://host/v1")
    p.add_argument("--api-model", default="", help="api judge: model name (default: the server's first)")
    p.add_argument("--api-key-env", default="HAL_API_KEY", help="api judge: environment variable with the key")
    p.add_argument("--verdict", default="auto", choices=["auto", "logits", "text"])
    p.add_argument("--one-order", action="store_true",
                   help="text verdicts: ask each game once instead of in both orders (position bias uncorrected)")
    p.add_argument("--explain-from", default="verdict", choices=["verdict", "truth"],
                   help="explain the side the judge picked (as the paper) or the real human")
    p.add_argument("--context", default="witness", choices=["witness", "full"],
                   help="show the judge only the witness's messages (short) or both speakers")
    p.add_argument("--max-turns", type=int, default=12)
    p.add_argument("--max-chars", type=int, default=200)
    p.add_argument("--max-statements", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=120)
    p.add_argument("--temperature", type=float, default=0.3)
    p.add_argument("--min-cluster-size", type=int, default=None)
    p.add_argument("--limit", type=int, default=None, help="only the first N games (runs: N runs)")
    p.add_argument("--where", action="append", metavar="KEY=GLOB",
                   help="keep items whose meta KEY matches (e.g. ai_model='*minimal|eliza')")
    p.add_argument("--by", default=None, metavar="KEY", help="contrast: also rank within each value of KEY")
    p.add_argument("--systems", default="auto", metavar="KEY",
                   help="contrast: meta key naming each game's AI system, for per-system AUCs and direction "
                        "flips (auto: ai_model when present; '' = none)")
    p.add_argument("--no-two-sided", action="store_true",
                   help="contrast: skip the ranking by closeness to the typical human level")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--group-threshold", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=15, help="rows shown without --json")
    p.add_argument("--no-cache", action="store_true", help="ask the judge again instead of reusing answers")
    p.add_argument("--no-save", action="store_true", help="do not keep the run for accepting later")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    g = p.add_argument_group("accept")
    g.add_argument("--take", action="append", metavar="IDS[=STATEMENT]",
                   help="accept proposals (c3, g2, a feature name); join ids with + to merge; =text rewords")
    g.add_argument("--trait-name", action="append", metavar="IDS=NAME", help="short name of a taken trait")
    g.add_argument("--measure", action="append", metavar="IDS=FEATURE[:higher|lower]",
                   help="rate a taken trait by this feature (the measured judge); :higher or :lower says whether "
                        "more of it means the trait is present (needed for a theme)")
    g.add_argument("--into", default=None, help="questionnaire id to save a new version of")
    g.add_argument("--base", default=None, help="start from this questionnaire (e.g. hal32) instead of empty")
    g.add_argument("--title", default=None, help="display name of the questionnaire")
    g.add_argument("--drop-trait", action="append", type=int, metavar="ID", help="drop a trait of the base")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guarded(cmd_discover))


def _guarded(func):
    def call(args) -> int:
        try:
            return func(args)
        except EngineError as exc:
            if getattr(args, "json", False):
                print(json.dumps({"error": exc.as_content()}), flush=True)
            print(f"hal: error: {exc.message}" + (f" ({exc.detail})" if exc.detail else ""), file=sys.stderr)
            return 2
    call.__name__ = func.__name__
    return call


def main(argv: list[str] | None = None) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="python -m engine.discovery.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
