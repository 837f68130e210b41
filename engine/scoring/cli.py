"""``hal score``, ``fit``, ``distill``, ``agree``, ``compare``, ``contrast build`` and ``hal bench score``.

The main ``hal`` command calls ``register(subparsers)`` and
``register_bench(bench_subparsers)``; ``python -m engine.scoring.cli`` runs
the same commands on their own. With ``--json`` every result is one JSON line
on stdout; a per-item problem is a line ``{"id": ..., "error": ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from engine.errors import BadRequest, EngineError
from engine.scoring.importers import load_any
from engine.scoring.judges import RatingError, available_judges, get_judge
from engine.scoring.score import score_ratings
from engine.scoring.defaults import DEFAULT_JUDGE
from engine.scoring.traits import load_questionnaire, saved_path


def _emit(obj: dict, as_json: bool, text: str | None = None) -> None:
    if as_json:
        print(json.dumps(obj, ensure_ascii=False), flush=True)
    elif text is not None:
        print(text, flush=True)


def _judge_opts(args) -> dict:
    """Judge-specific options from the command line (model, and the api judge's endpoint)."""
    opts = {}
    if getattr(args, "model", None):
        opts["model"] = args.model
    if getattr(args, "judge", None) == "api":
        for name in ("api_base", "api_format"):
            if getattr(args, name, None):
                opts[{"api_base": "base_url", "api_format": "response_format"}[name]] = getattr(args, name)
    return opts


def _judge(args, questionnaire):
    return get_judge(args.judge, questionnaire=questionnaire, cache=not getattr(args, "no_cache", False),
                     **_judge_opts(args))


def _weights(args, judge):
    """The weights ``--weights`` names (``auto``: the one policy in engine.scoring.defaults);
    says on stderr when they were not fitted on this judge's own ratings."""
    from engine.scoring.defaults import mismatch_note, resolve_weights

    w = resolve_weights(judge.judge_id, args.weights, getattr(judge, "teacher", None))
    note = mismatch_note(w, judge.judge_id, getattr(judge, "teacher", None))
    print(f"hal: scoring with {judge.judge_id} and {w.ref}" + (f". Note: {note}" if note else ""),
          file=sys.stderr)
    return w


def cmd_score(args) -> int:
    q = load_questionnaire(args.questionnaire)
    judge = _judge(args, q)
    data = load_any(args.path)  # bad input says so before anything else is printed
    w = _weights(args, judge)
    for p in data.problems:
        _emit(p.as_json(), args.json, f"{p.item}: {p.reason}")
    # Exit code 3 says "finished, but some items were not scored" (each has an error line).
    failures = sum(1 for p in data.problems if not p.kept)
    ratings = judge.rate_many(data.dialogues)
    for d, r in zip(data.dialogues, ratings):
        if isinstance(r, RatingError):
            failures += 1
            _emit({"id": d.id, "error": r.message}, args.json, f"{d.id}: {r.message}")
            continue
        try:
            s = score_ratings(r, w, q)
        except EngineError as exc:
            failures += 1
            _emit({"id": d.id, "error": exc.message}, args.json, f"{d.id}: {exc.message}")
            continue
        line = {"id": d.id}
        if d.label is not None:
            line["label"] = d.label
        line.update(s.as_json())
        line["judge"] = judge.judge_id
        if d.group is not None:
            line["group"] = d.group
        _emit(line, args.json, f"{d.id}\t{s.score:+.3f}\tp={s.probability:.3f}" + (f"\t{d.label}" if d.label else ""))
    return 0 if failures == 0 else 3


def _fit_ratings(judge, dialogues):
    """Ratings to fit on, and how many were out-of-fold ratings of the judge's own training items."""
    if hasattr(judge, "fit_ratings"):
        return judge.fit_ratings(dialogues)
    return judge.rate_many(dialogues), 0


def _extra(args, out_json: bool):
    """The labelled dialogues of ``--extra`` files and every dialogue of ``--extra-ai`` files
    (labelled AI), their problems reported line by line; None when there are none."""
    from dataclasses import replace

    from engine.scoring.dialogue import AI

    sources = [(path, False) for path in getattr(args, "extra", None) or []]
    sources += [(path, True) for path in getattr(args, "extra_ai", None) or []]
    if not sources:
        return None
    items = []
    for path, all_ai in sources:
        data = load_any(path)
        for p in data.problems:
            _emit(p.as_json(), out_json, f"{p.item}: {p.reason}")
        if all_ai:
            labelled = [replace(d, label=AI, id=f"{Path(path).stem}:{d.id}",
                                group=f"{Path(path).stem}:{d.group or d.id}") for d in data.dialogues]
        else:
            labelled = [d for d in data.dialogues if d.label is not None]
        if not labelled:
            raise BadRequest(f"{path}: no item " + ("" if all_ai else "with a human/AI label ")
                             + f"to use as {'--extra-ai' if all_ai else '--extra'}")
        items += labelled
    return items


def cmd_fit(args) -> int:
    from engine.scoring.fit import FitConfig, build_table, cross_validate, save_fit
    from engine.scoring.heldout import evaluate_heldout

    q = load_questionnaire(args.questionnaire)
    config = FitConfig(penalty=args.penalty, C=args.C, folds=args.folds, repeats=args.repeats,
                       select=args.select, seed=args.seed)
    data = load_any(args.path)
    for p in data.problems:
        _emit(p.as_json(), args.json, f"{p.item}: {p.reason}")
    extra = _extra(args, args.json)
    if args.heldout:
        judge = "precomputed" if args.precomputed else "distilled" if args.judge == "distilled" else "lexical"
        report = evaluate_heldout(data.dialogues, judge, questionnaire=q, config=config,
                                  outer_folds=args.outer_folds, repeats=args.repeats, seed=args.seed,
                                  by=args.heldout_by, extra=extra, extra_in=_extra_in(args),
                                  extra_weight=args.extra_weight, inner_by=args.inner_by,
                                  style=args.style_features)
        _emit(report, args.json, json.dumps(report, indent=1))
        return 0
    if extra and args.precomputed:
        raise BadRequest("--extra items have no precomputed ratings: fit them with a judge (--judge)")
    name = "precomputed" if args.precomputed else args.judge
    judge = get_judge(name, questionnaire=q, cache=not args.no_cache, **_judge_opts(args))
    fit_items = data.dialogues + (extra or [])
    ratings, from_oof = _fit_ratings(judge, fit_items)
    table, problems = build_table(fit_items, ratings, q.trait_ids)
    for p in problems:
        _emit(p.as_json(), args.json, f"{p.item}: {p.reason}")
    report = cross_validate(table, config)
    report.update({"judge": judge.judge_id, "questionnaire": q.ref, "out_of_fold_ratings": from_oof,
                   "n_extra": len(extra or [])})
    if not args.no_save:
        saved = save_fit(report, q, judge=judge.judge_id, source=str(args.path), config=config,
                         weights_id=args.save_as)
        report["saved_weights"] = saved.ref
        report["saved_id"] = saved.id
        report["saved_path"] = str(saved_path(saved))
    _emit(report, args.json, json.dumps(report, indent=1))
    return 0


def cmd_distill(args) -> int:
    from engine.ids import check_id
    from engine.scoring.judges.distilled import fit_distilled, save_model

    if args.save_as is not None:
        check_id(args.save_as, "distilled judge id")  # before the fit, not after it
    q = load_questionnaire(args.questionnaire)
    data = load_any(args.path)
    for p in data.problems:
        _emit(p.as_json(), args.json, f"{p.item}: {p.reason}")
    rated = [d for d in data.dialogues if d.ratings]
    extra = _extra(args, args.json)
    model, _ = fit_distilled(rated, [d.ratings for d in rated], q.trait_ids, alpha=args.alpha, folds=args.folds,
                             model_id=args.save_as, source=args.source or Path(args.path).stem,
                             extra=extra, extra_weight=args.extra_weight,
                             extra_source=",".join(Path(p).name for p in args.extra or []),
                             folds_by=args.folds_by, style=args.style_features)
    saved = save_model(model, Path(args.out) if args.out else None)
    report = {"model": model.id, "folder": str(saved), "judge": f"distilled:{model.id}", "n": len(rated),
              "traits": model.trait_ids,
              **{k: v for k, v in model.meta.items() if k != "format_version"}}
    _emit(report, args.json, json.dumps(report, indent=1))
    return 0


def cmd_agree(args) -> int:
    from engine.scoring.compare import agreement

    q = load_questionnaire(args.questionnaire)
    judge = _judge(args, q)
    dialogues = [d for path in args.paths for d in load_any(path).dialogues]  # pooled
    ratings = None
    if getattr(judge, "fit_ratings", None) and args.out_of_fold:
        ratings, _ = judge.fit_ratings([d for d in dialogues if d.ratings])
    report = agreement(dialogues, judge, ratings)
    report["out_of_fold"] = ratings is not None
    _emit(report, args.json, json.dumps(report, indent=1))
    return 0


def cmd_compare(args) -> int:
    from engine.scoring.compare import compare_sets

    q = load_questionnaire(args.questionnaire)
    judge = _judge(args, q)
    before, after = load_any(args.before), load_any(args.after)
    for p in [*before.problems, *after.problems]:
        _emit(p.as_json(), args.json, f"{p.item}: {p.reason}")
    report = compare_sets(before.dialogues, after.dialogues, judge, _weights(args, judge))
    _emit(report, args.json, json.dumps(report, indent=1))
    return 0


def cmd_bench(args) -> int:
    from engine.scoring.bench import bench_score

    report = bench_score(path=args.path, repeat=args.repeat, llm_n=args.llm_n, llm_model=args.llm_model,
                         llm_threads=args.llm_threads)
    _emit(report, args.json, json.dumps(report, indent=1))
    return 0


def cmd_contrast_build(args) -> int:
    """Real human next turns against the model's replies to the same contexts, as JSONL."""
    from engine.models.llamacpp import LlamaCppModel
    from engine.models.spec import resolve_source
    from engine.scoring.chitchat import write_contrast

    kind, path = resolve_source(args.model or "bundled")
    if kind != "gguf":
        raise EngineError("contrast build generates with llama.cpp: pass a .gguf model", kind="bad_request")
    model = LlamaCppModel(path, n_ctx_per_seq=2048, max_seqs=1, n_threads=args.threads)
    try:
        report = write_contrast(Path(args.out), args.n, model, source=args.source, context=args.context,
                                seed=args.seed, temperature=args.temperature, max_tokens=args.max_tokens,
                                system=args.system)
    finally:
        model.close()
    for problem in report["problems"]:
        _emit({"error": problem}, args.json, problem)
    _emit(report, args.json, f"{report['pairs']} pairs written to {report['out']}")
    return 0 if report["pairs"] else 3


def _extra_in(args) -> tuple[str, ...]:
    return {"both": ("distill", "weights"), "distill": ("distill",), "weights": ("weights",)}[args.extra_in]


def _extra_options(p: argparse.ArgumentParser, fit: bool) -> None:
    p.add_argument("--extra", action="append", default=None, metavar="FILE",
                   help="labelled dialogues without ratings to learn from too (e.g. hal contrast build's "
                        "JSONL); repeatable" + ("" if fit else ": each learns the mean ratings of its label"))
    p.add_argument("--extra-ai", action="append", default=None, metavar="FILE",
                   help="like --extra, but every dialogue of FILE is AI-written (e.g. a model's own "
                        "conversations); repeatable")
    p.add_argument("--extra-weight", type=float, default=1.0,
                   help="weight of an --extra item in the distillation relative to a rated one (default 1)")
    if fit:
        p.add_argument("--extra-in", default="both", choices=["both", "distill", "weights"],
                       help="with --heldout and the distilled judge: use --extra items in the distillation, "
                            "the weight fit, or both (default both)")


def _style_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--style-features", action="store_true",
                   help="distilled judge: add style-consistency features (how much lower-case starts, end "
                        "punctuation and message length vary between the speaker's messages)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--questionnaire", default="hal32", help="questionnaire id, id@version or file (default hal32)")
    p.add_argument("--model", default=None,
                   help="judge-specific model: a distilled judge id; for llm a .gguf or model folder "
                        "(default: the bundled model); for api the endpoint's model name")
    p.add_argument("--api-base", default=None, help="api judge: OpenAI-compatible base URL, e.g. "
                   "http://127.0.0.1:8000/v1 (or HAL_API_BASE); the key comes from HAL_API_KEY/OPENAI_API_KEY")
    p.add_argument("--api-format", default=None, choices=["json_object", "json_schema", "json_object+schema", "none"],
                   help="api judge: how to ask for JSON (default json_object)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the rating cache")
    p.add_argument("--json", action="store_true", help="one JSON object per line on stdout")


def register(subparsers) -> None:
    """Add ``score``, ``fit``, ``distill``, ``agree`` and ``compare`` to the ``hal`` command."""
    judges = sorted(set(available_judges()) | {"lexical", "distilled", "llm", "api"})
    p = subparsers.add_parser("score", help="score each rated speaker of a file")
    p.add_argument("path", help="Turing CSV, before/after CSV or JSONL dialogues")
    p.add_argument("--judge", default=DEFAULT_JUDGE, choices=judges,
                   help=f"the judge (default {DEFAULT_JUDGE}: engine/scoring/defaults.py)")
    p.add_argument("--weights", default="auto",
                   help="weights id, id@version, a weights file or the saved output of hal fit --json "
                        "(auto: the shipped weights fitted on this judge; see engine/scoring/defaults.py)")
    _common(p)
    p.set_defaults(func=_guarded(cmd_score))

    p = subparsers.add_parser("fit", help="learn trait weights that tell humans from AIs")
    p.add_argument("path")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--judge", default="lexical", choices=judges)
    g.add_argument("--precomputed", action="store_true", help="use the ratings stored in the file")
    p.add_argument("--penalty", default="l1", choices=["l1", "l2"])
    p.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength")
    p.add_argument("--select", type=int, default=None, metavar="K", help="keep the K traits of largest |weight|")
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heldout", action="store_true",
                   help="nested test on held-out games for a local judge (lexical or distilled), or of weights "
                        "alone on the file's own ratings (--precomputed)")
    p.add_argument("--outer-folds", type=int, default=5, help="outer game-grouped splits for --heldout")
    p.add_argument("--heldout-by", default="game", choices=["game", "ai_model"],
                   help="hold out random games, or all games of one AI system at a time")
    p.add_argument("--inner-by", default="game", choices=["game", "ai_model"],
                   help="with --heldout and the distilled judge: its inner folds (whose out-of-fold ratings "
                        "the weights learn on) hold out games or whole AI systems")
    p.add_argument("--save-as", default=None, help="weights id to save under (default fit-JUDGE)")
    p.add_argument("--no-save", action="store_true")
    _extra_options(p, fit=True)
    _style_option(p)
    _common(p)
    p.set_defaults(func=_guarded(cmd_fit))

    p = subparsers.add_parser("distill", help="fit a distilled judge to a file's precomputed ratings")
    p.add_argument("path")
    p.add_argument("--alpha", type=float, default=3.0, help="ridge strength")
    p.add_argument("--folds", type=int, default=5, help="game-grouped folds for the held-out correlations")
    p.add_argument("--folds-by", default="game", choices=["game", "ai_model"],
                   help="the folds of the out-of-fold ratings hold out games, or whole AI systems (so weights "
                        "fitted on them learn how an unseen system is rated)")
    p.add_argument("--source", default=None, help="a name for whose ratings these are (default: file name)")
    p.add_argument("--save-as", default=None, help="model id (default SOURCE-TIMESTAMP)")
    p.add_argument("--out", default=None,
                   help="write the judge folder <id>/ here instead of the user's judges (e.g. resources/judges "
                        "to ship it with the studio)")
    _extra_options(p, fit=False)
    _style_option(p)
    _common(p)
    p.set_defaults(func=_guarded(cmd_distill))

    p = subparsers.add_parser("agree", help="per-trait agreement of a judge with the files' own ratings")
    p.add_argument("paths", nargs="+", help="one or more files, pooled")
    p.add_argument("--judge", default="lexical", choices=judges)
    p.add_argument("--out-of-fold", action="store_true",
                   help="for a distilled judge: use its out-of-fold ratings of the items it was fitted on")
    _common(p)
    p.set_defaults(func=_guarded(cmd_agree))

    p = subparsers.add_parser("compare", help="does the score rank AFTER's dialogues above BEFORE's?")
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--judge", default=DEFAULT_JUDGE, choices=judges,
                   help=f"the judge (default {DEFAULT_JUDGE}: engine/scoring/defaults.py)")
    p.add_argument("--weights", default="auto",
                   help="weights id, id@version, a weights file or the saved output of hal fit --json "
                        "(auto: the shipped weights fitted on this judge; see engine/scoring/defaults.py)")
    _common(p)
    p.set_defaults(func=_guarded(cmd_compare))

    _register_contrast(subparsers)


def _register_contrast(subparsers) -> None:
    p = subparsers.add_parser("contrast", help="build contrastive human/AI dialogues for hal fit")
    sub = p.add_subparsers(dest="contrast_command", required=True)
    b = sub.add_parser("build", help="real human next turns vs the model's replies to the same contexts")
    b.add_argument("--source", default="chitchat",
                   help="'chitchat' (the chitchat-dataset package) or a JSONL file of chats {\"turns\": [[who, text]]}")
    b.add_argument("--n", type=int, default=100, help="contexts (pairs) to build")
    b.add_argument("--out", required=True, help="JSONL file to write")
    b.add_argument("--model", default=None, help="GGUF to generate with (default: the bundled model)")
    b.add_argument("--context", type=int, default=3, help="earlier messages shown before the reply")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--temperature", type=float, default=0.7)
    b.add_argument("--max-tokens", type=int, default=60)
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--system", default=None,
                   help="the model's system prompt (default: chat casually with a stranger); another persona "
                        "gives more varied AI text")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_guarded(cmd_contrast_build))


def register_bench(bench_subparsers) -> None:
    """Add ``score`` under ``hal bench``."""
    p = bench_subparsers.add_parser("score", help="replies per second of each local judge")
    p.add_argument("--path", default=None, help="Turing CSV to time on (default: the shared file)")
    p.add_argument("--repeat", type=int, default=3, help="timing runs per judge; the best is kept")
    p.add_argument("--llm-n", type=int, default=6, help="replies to time the llm judge on (0 skips it)")
    p.add_argument("--llm-model", default=None, help="the llm judge's model (default: the bundled GGUF)")
    p.add_argument("--llm-threads", type=int, default=None, help="CPU threads for the llm judge")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guarded(cmd_bench))


def run(func, args) -> int:
    """Run a command; an expected error is one line (JSON with --json) and exit code 2."""
    try:
        return func(args)
    except EngineError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": exc.as_content()}), flush=True)
        print(f"hal: error: {exc.message}" + (f" ({exc.detail})" if exc.detail else ""), file=sys.stderr)
        return 2


def _guarded(func):
    """Wrap a command so whoever calls ``args.func(args)`` gets the error handling too."""
    def call(args) -> int:
        return run(func, args)
    call.__name__ = func.__name__
    return call


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="python -m engine.scoring.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    bench = sub.add_parser("bench", help="timings").add_subparsers(dest="bench_command", required=True)
    register_bench(bench)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
