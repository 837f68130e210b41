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

    spec = ModelSpec(source=args.model, adapter=args.adapter, backend=args.backend)
    sampling = Sampling.from_dict({"temperature": args.temperature, "top_p": args.top_p,
                                   "max_tokens": args.max_tokens, "seed": args.seed,
                                   "system_prompt": args.system})
    pool = ModelPool()
    try:
        model, adapter = pool.get(spec)
        messages = build_messages([{"role": "user", "content": args.prompt}], sampling.system_prompt)
        stream = (lambda t: None) if args.json else (lambda t: print(t, end="", flush=True))
        result = model.generate(messages, sampling, adapter, stream, lambda: False)
        if args.json:
            print(json.dumps({**result.to_dict(), "model": model.info()}))
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
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("check", help="load a model (and adapter) and print what it is")
    _model_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    bench = sub.add_parser("bench", help="measure speed and memory").add_subparsers(
        dest="bench", required=True)
    from engine import bench_chat, bench_soak, store_recover

    bench_chat.register(bench)
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
