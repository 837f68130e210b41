"""``hal results`` and ``hal ratings``: the results and ratings data on the command line."""

from __future__ import annotations

import argparse
import json
import sys

from engine.results.data import DEFAULT_LEAK_TOKENS, Filters, LeakConfig


def _filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="the studio store (default: the user's data directory)")
    p.add_argument("--pair", help="only this pairing, 'A:B' or 'A vs B' (A's win rate is reported)")
    p.add_argument("--since", help="ratings from this ISO date/time on")
    p.add_argument("--until", help="ratings up to this ISO date/time (a date covers the whole day)")
    p.add_argument("--model", action="append", default=[],
                   help="keep ratings where a side's model (name + adapter) contains this; repeatable")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--blind-only", action="store_true", help="blind ratings without identity leaks")
    g.add_argument("--not-blind", action="store_true", help="non-blind (or leaked) ratings only")
    p.add_argument("--prompt-set", help="only turns from this prompt set")
    p.add_argument("--rater", help="only this rater's votes: 'me' (your own), 'llm:MODEL' (hal eval --rater "
                                   "api) or a colleague's name (hal eval sheet import)")
    p.add_argument("--leak-token", action="append", default=[],
                   help="a word that gives a model away (repeatable; added to the defaults)")
    p.add_argument("--no-default-leak-tokens", action="store_true",
                   help=f"do not use the default giveaways ({', '.join(DEFAULT_LEAK_TOKENS[:4])}, ...)")


def parse_pair(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    for sep in (" vs ", ":"):
        if sep in text:
            a, b = (s.strip() for s in text.split(sep, 1))
            if a and b:
                return (a, b)
    raise ValueError(f"--pair takes 'A:B' or 'A vs B', got {text!r}")


def filters_from(args) -> Filters:
    blind = True if args.blind_only else (False if args.not_blind else None)
    return Filters(since=args.since, until=args.until, models=tuple(args.model), blind=blind,
                   prompt_set=args.prompt_set, pair=parse_pair(args.pair),
                   rater=getattr(args, "rater", None))


def leaks_from(args) -> LeakConfig:
    base = () if args.no_default_leak_tokens else DEFAULT_LEAK_TOKENS
    return LeakConfig(tokens=tuple(base) + tuple(args.leak_token))


def _store(args):
    from engine.store import Store, StoreError

    try:
        return Store(args.db) if args.db else Store()
    except StoreError as exc:
        raise ValueError(str(exc)) from None


def cmd_results(args) -> int:
    from engine.results.summary import compute

    res = compute(_store(args), filters_from(args), leaks_from(args), n_boot=args.bootstrap,
                  elo_k=args.elo_k, anchor=args.anchor)
    if args.json:
        if not args.with_trajectory:
            res["elo"].pop("trajectory", None)
        print(json.dumps(res))
        return 0
    print(f"{res['n_ratings']} ratings")
    for p in res["pairs"]:
        if p["n"] == 0:
            print(f"  {p['message']}")
            continue
        print(f"  {p['a']} vs {p['b']}: win rate {p['win_rate']:.3f} (95% CI {p['ci'][0]:.3f}-"
              f"{p['ci'][1]:.3f}), {p['n']} votes, {p['votes_needed'] or '-'} needed, "
              f"{p['both_bad']} both bad")
    for row in res["bradley_terry"]:
        print(f"  #{row['rank']} {row['model']}: {row['score']:.1f} ({row['ci'][0]:.1f}-{row['ci'][1]:.1f})")
    if res["position_bias"]["warning"]:
        print(f"  warning: {res['position_bias']['warning']}")
    c = res["consistency"]
    print(f"  consistency: {c['agreement']} over {c['n']} repeats" if c["n"] else f"  {c['message']}")
    if res["self_votes"]["n"]:
        print(f"  {res['self_votes']['message']}")
    _report_problems(res["problems"])
    return 0


def _report_problems(problems: list[dict]) -> None:
    """Ratings that could not be read: named on stderr; every figure is over the rest."""
    if not problems:
        return
    shown = "; ".join(f"{p['rating_id'][:12]}: {p['reason']}" for p in problems[:3])
    more = f"; and {len(problems) - 3} more (hal results --json lists them)" if len(problems) > 3 else ""
    print(f"hal: warning: {len(problems)} rating{'s' if len(problems) != 1 else ''} left out, they "
          f"cannot be read: {shown}{more}", file=sys.stderr)


def cmd_export(args) -> int:
    from engine.results import exports, report_html

    store, filters = _store(args), filters_from(args)
    fmt = args.format
    if fmt == "jsonl":
        n = exports.export_jsonl(store, args.out, filters, args.with_metadata)
    elif fmt == "datasets":
        n = exports.export_datasets(store, args.out, filters, args.with_metadata)
    elif fmt == "csv":
        n = exports.export_csv(store, args.out, filters)
    elif fmt == "bundle":
        n = exports.export_bundle(store, args.out, filters)["rating"]
    else:
        from engine.results.summary import compute

        res = compute(store, filters, leaks_from(args), n_boot=args.bootstrap)
        report_html.write(res, args.out)
        n = res["n_ratings"]
    from engine.results.data import load_votes

    _report_problems(load_votes(store, filters).problems)
    print(json.dumps({"format": fmt, "out": args.out, "rows": n}))
    return 0


def cmd_import(args) -> int:
    from engine.results.importer import exit_code, import_file

    report = import_file(_store(args), args.file)
    if args.json:
        print(json.dumps(report))
        return exit_code(report)
    bad = [s for s in report["skipped"] if s.get("kind", "bad") == "bad"]
    print(f"imported {report['imported']} ratings from {args.file} ({report['format']} format); "
          f"{report['already_stored']} already stored; {len(bad)} lines skipped")
    by_reason: dict[str, list] = {}
    for s in report["skipped"]:
        by_reason.setdefault(s["reason"], []).append(str(s.get("line")))
    for reason, lines in by_reason.items():
        print(f"  skipped {len(lines)}: {reason} ({_line_list(lines)})")
    if report["kept_without_time"]:
        kept = report["kept_without_time"]
        print(f"  kept {len(kept)} votes without their time, which could not be read "
              f"({_line_list([str(k['line']) for k in kept])}; first: {kept[0]['reason']}); they "
              "take the import's time and keep the file's order")
    if report["self_votes"]:
        sv = report["self_votes"]
        print(f"  {len(sv)} self-vs-self votes: the same model on both sides ({sv[0]['model']}"
              f"{' and others' if len({v['model'] for v in sv}) > 1 else ''}; "
              f"{_line_list([str(v['line']) for v in sv])}); kept, but they enter no win rate, "
              "leaderboard or Elo")
    for note in report["notes"]:
        if "self-vs-self" not in note:
            print(f"  note: {note}")
    return exit_code(report)


def _line_list(lines: list[str]) -> str:
    more = f" and {len(lines) - 8} more" if len(lines) > 8 else ""
    return f"line {', '.join(lines[:8])}{more}"


def cmd_delete(args) -> int:
    from engine.results.browser import delete_rating

    delete_rating(_store(args), args.rating_id, args.reason)
    print(f"deleted rating {args.rating_id} (kept in rating_history)")
    return 0


def cmd_note(args) -> int:
    from engine.results.browser import edit_note

    edit_note(_store(args), args.rating_id, args.note)
    return 0


def cmd_list(args) -> int:
    from engine.results.browser import list_rated
    from engine.results.data import load_votes

    store = _store(args)
    rows = list_rated(store, filters_from(args), leaks_from(args))
    _report_problems(load_votes(store, filters_from(args)).problems)
    for row in rows:
        print(json.dumps(row) if args.json else
              f"{row['rating_id'][:12]} {row['created_at'][:16]} {row['verdict']:<15} "
              f"{row['left']['model']} | {row['right']['model']}  {row['prompt'][:50]!r}")
    return 0


def cmd_adapters_list(args) -> int:
    from engine.results.names import list_adapters

    rows = list_adapters(_store(args))
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no adapters yet: a DPO or online RL round makes one")
    for r in rows:
        print(f"{r['id'][:12]}  {r['display_name']:<32}  {str(r['created_at'])[:16]}  {r['peft_path']}")
    return 0


def cmd_adapters_rename(args) -> int:
    from engine.results.names import rename_adapter

    row = rename_adapter(_store(args), args.adapter, args.name)
    print(json.dumps({"id": row["id"], "name": row["name"]}) if args.json else
          f"adapter {row['id'][:12]} is now named {row['name']!r}")
    return 0


def register(sub) -> None:
    """Add ``results`` and ``ratings`` to the ``hal`` command line."""
    p = sub.add_parser("results", help="win rates, leaderboard, position bias, consistency")
    _filter_args(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--elo-k", type=float, default=4.0, help="online Elo K factor (default 4, as FastChat)")
    p.add_argument("--anchor", help="pin this model's Bradley-Terry score to 1000")
    p.add_argument("--with-trajectory", action="store_true", help="include Elo after every vote")
    p.set_defaults(func=cmd_results)

    ratings = sub.add_parser("ratings", help="export, import, list, annotate or delete ratings")
    rsub = ratings.add_subparsers(dest="ratings_command", required=True)
    p = rsub.add_parser("export", help="preference pairs, raw CSV, an HTML report or a bundle")
    p.add_argument("--format", required=True, choices=["jsonl", "csv", "datasets", "html", "bundle"])
    p.add_argument("out")
    p.add_argument("--with-metadata", action="store_true",
                   help="jsonl/datasets: add rating_id, strength and model columns")
    p.add_argument("--bootstrap", type=int, default=1000)
    _filter_args(p)
    p.set_defaults(func=cmd_export)

    p = rsub.add_parser("import", help="merge a bundle, a minimal ratings JSONL or an A/B CSV; exit 3 "
                        "when lines were skipped (each is reported)",
                        description="Formats and columns: engine/results/README.md")
    p.add_argument("file")
    p.add_argument("--db")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)

    p = rsub.add_parser("list", help="rated turns, newest first")
    _filter_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = rsub.add_parser("note", help="set a rating's note (the old one is kept in history)")
    p.add_argument("rating_id")
    p.add_argument("note")
    p.add_argument("--db")
    p.set_defaults(func=cmd_note)

    adapters = sub.add_parser("adapters", help="list trained adapters, or give one a readable name")
    asub = adapters.add_subparsers(dest="adapters_command", required=True)
    p = asub.add_parser("list", help="adapters with the names results and exports show, newest first")
    p.add_argument("--db")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_adapters_list)
    p = asub.add_parser("rename", help="give an adapter the name results, exports and reports show "
                        "(default: '<kind> round <n> · <preset>')")
    p.add_argument("adapter", help="the adapter's id (or its first 4+ characters), folder or current name")
    p.add_argument("name")
    p.add_argument("--db")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_adapters_rename)

    p = rsub.add_parser("delete", help="delete a rating (kept in rating_history)")
    p.add_argument("rating_id")
    p.add_argument("--reason", default="")
    p.add_argument("--db")
    p.set_defaults(func=cmd_delete)
