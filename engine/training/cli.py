"""``hal round ...``, ``hal eval`` and ``hal bench train``: rounds run headless.

Progress goes to stderr; ``--json`` prints one JSON object on stdout:
{round_id, adapter, seconds, steps, metrics, verdict, timings (seconds per phase),
verdict_share (the verdict's share of the round's time)}.
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
    keys = ("base", "aligned", "delta", "delta_ci", "traits_delta", "length_delta", "length", "canary",
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
    out = {"round_id": out.get("round_id"), "adapter": out.get("adapter"),
           "seconds": out.get("seconds", round(time.perf_counter() - t0, 2)), "steps": out.get("steps"),
           "metrics": out.get("metrics") or {}, "verdict": _trim_verdict(out.get("verdict")),
           **{k: v for k, v in out.items()
              if k in ("cancelled", "weights", "gguf_path", "adapter_path", "timings", "verdict_share",
                       "timings_cpu")}}
    print(json.dumps(out, indent=None if args.json else 1, default=str))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from engine.store import Store
    from engine.training import evaluate
    from engine.training.config import load_config_file

    overrides = load_config_file(args.config) if args.config else {}
    overrides["adapter"] = args.adapter
    config = evaluate.make_config("default", overrides)
    store = Store(args.db) if args.db else Store()
    try:
        verdict = evaluate.run(config, CliState(), store)
    finally:
        store.close()
    print(json.dumps(_trim_verdict(verdict), indent=None if args.json else 1))
    return 0


def register(sub) -> None:
    from engine.training.kinds import KINDS

    p = sub.add_parser("round", help="run an alignment round headless (DPO, online RL, reward updates)")
    p.add_argument("kind", choices=list(KINDS))
    p.add_argument("--preset", default="default", choices=["smoke", "default"],
                   help="smoke: under a minute, for checks; default: works on the bundled model on 2 cores")
    p.add_argument("--config", help="a JSON file of settings over the preset")
    p.add_argument("--resume", help="id of a cancelled or failed round to resume")
    p.add_argument("--db", help="the studio store (default: the user's)")
    p.add_argument("--json", action="store_true", help="one line of JSON on stdout")
    p.set_defaults(func=cmd_round)

    p = sub.add_parser("eval", help="the verdict of an adapter against the base on held-out prompts")
    p.add_argument("--adapter", required=True, help="adapter id or PEFT folder")
    p.add_argument("--config", help="a JSON file of settings (see engine.training.evaluate.EvalConfig)")
    p.add_argument("--db", help="the studio store (default: the user's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)


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
