"""``hal``: the headless command line (chat, check, benchmarks, scoring, rounds).

Every failure a user can cause ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys

from engine.errors import EngineError


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="bundled",
                   help="'bundled' (SmolLM2-135M-Instruct), a .gguf file or a model folder")
    p.add_argument("--adapter", default=None, help="a PEFT adapter folder or GGUF LoRA file")
    p.add_argument("--backend", default="auto", choices=["auto", "llamacpp", "transformers"])


def cmd_chat(args: argparse.Namespace) -> int:
    """One reply to one prompt, streamed to stdout."""
    from engine.models.base import Sampling, build_messages
    from engine.models.pool import ModelPool
    from engine.models.spec import ModelSpec
    from engine.scoring.loops import loop_reason

    spec = ModelSpec(source=args.model, adapter=args.adapter, backend=args.backend)
    sampling = Sampling.from_dict({"temperature": args.temperature, "top_p": args.top_p,
                                   "top_k": args.top_k, "min_p": args.min_p,
                                   "repeat_penalty": args.repeat_penalty,
                                   "stop": [s.replace("\\n", "\n") for s in args.stop] if args.stop else None,
                                   "max_tokens": args.max_tokens, "seed": args.seed,
                                   "system_prompt": args.system})
    pool = ModelPool()
    try:
        model, adapter = pool.get(spec)
        messages = build_messages([{"role": "user", "content": args.prompt}], sampling.system_prompt)
        stream = (lambda t: None) if args.json else (lambda t: print(t, end="", flush=True))
        result = model.generate(messages, sampling, adapter, stream, lambda: False)
        if args.json:
            reason = loop_reason(result.text)
            print(json.dumps({**result.to_dict(), "model": model.info(), "sampling": sampling.to_dict(),
                              "looping": reason is not None, "loop_reason": reason}))
        else:
            print()
            print(f"[{result.completion_tokens} tokens, ttft {result.ttft_s * 1000:.0f} ms, "
                  f"{result.tok_s:.1f} tok/s, {result.finish_reason}]", file=sys.stderr)
    finally:
        pool.close()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check that a model (and adapter) loads; print its info."""
    from engine.models.pool import ModelPool
    from engine.models.spec import ModelSpec

    pool = ModelPool()
    try:
        model, _ = pool.get(ModelSpec(source=args.model, adapter=args.adapter, backend=args.backend))
        print(json.dumps(model.info(), indent=None if args.json else 2))
    finally:
        pool.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hal", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("chat", help="generate one reply to a prompt")
    _model_args(p)
    p.add_argument("prompt")
    p.add_argument("--system", default="", help="system prompt / persona")
    from engine.models.base import CHAT_DEFAULTS as D

    p.add_argument("--temperature", type=float, default=D["temperature"], help="0 = greedy")
    p.add_argument("--top-p", type=float, default=D["top_p"], help="nucleus; 1 = off")
    p.add_argument("--top-k", type=int, default=D["top_k"], help="keep the K likeliest tokens; 0 = off")
    p.add_argument("--min-p", type=float, default=D["min_p"],
                   help="drop tokens less than P times as likely as the likeliest; 0 = off")
    p.add_argument("--repeat-penalty", type=float, default=D["repeat_penalty"],
                   help=f"penalise tokens among the reply's last {D['repeat_last_n']}; 1 = off")
    p.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="end the reply before this text (repeatable; \\n is a line break; "
                   "the stop text itself is not printed)")
    p.add_argument("--max-tokens", type=int, default=D["max_tokens"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true",
                   help="one JSON object: text, stats, model, sampling, looping, loop_reason")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("check", help="load a model (and adapter) and print what it is")
    _model_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    bench = sub.add_parser("bench", help="measure speed and memory").add_subparsers(
        dest="bench", required=True)
    from engine import bench_chat, bench_loops, bench_soak, store_recover

    bench_chat.register(bench)
    bench_loops.register(bench)
    bench_soak.register(bench)
    store_recover.register(sub)
    for name in ("engine.scoring.cli", "engine.training.cli", "engine.results.cli", "engine.discovery.cli"):
        try:
            if importlib.util.find_spec(name) is None:  # a feature not built yet
                continue
        except ModuleNotFoundError:
            continue
        module = importlib.import_module(name)
        module.register(sub)
        if hasattr(module, "register_bench"):
            module.register_bench(bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    from engine.malloc_tuning import tune

    tune()  # the engine's allocator settings, so headless rounds and benchmarks match it
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EngineError as exc:
        print(f"hal: error: {exc.message}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"hal: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hal: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
