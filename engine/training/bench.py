"""``hal bench train``: the cost of our job machinery around a TRL DPO step.

The same DPO steps run in a plain TRL script (on the main thread, and again on
a worker thread) and inside the studio's job machinery (a worker thread, the
JobCallback streaming progress and metrics as encoded protocol messages,
cancel checks), alternating to spread machine noise over all three. ``PROBES`` is the hook for the GUI's responsiveness measurement:
each probe is called with "start" before our run and "stop" after it, and what
"stop" returns is added to the result.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import threading
import time
from typing import Callable

PROBES: list[Callable[[str], dict | None]] = []


def _dataset(n: int = 64):
    from engine.training.pairs import Pair, to_dataset
    from engine.training.prompts import load

    prompts = load().split("train")[:n]
    short = ["lol same", "nah not really", "haha yeah", "ugh right?", "idk tbh"]
    long = ("Thank you for reaching out! That is a great question, and there are many things to consider. "
            "As an AI, I do not have personal experiences, but I am happy to help you with anything.")
    return to_dataset([Pair(p.as_messages(), short[i % 5], long, prompt_id=p.id) for i, p in enumerate(prompts)])


def _args(out: str, steps: int, batch: int):
    from trl import DPOConfig

    from engine.training.dpo import DPORoundConfig
    from engine.training.runner import training_args

    cfg = DPORoundConfig(max_steps=steps, batch_size=batch, save_steps=10**6, max_length=160)
    return training_args(DPOConfig, cfg, out, beta=0.1, max_length=160, save_strategy="no"), cfg


def _in_thread(fn):
    """Run ``fn`` on a fresh thread, as the engine runs jobs."""
    result = {}
    worker = threading.Thread(target=lambda: result.update(value=fn()), name="job-bench")
    worker.start()
    worker.join()
    return result["value"]


def _plain(model, tok, ds, out, steps, batch):
    """What a researcher's own script does: DPOTrainer(...).train()."""
    from trl import DPOTrainer

    from engine.training.policy import lora_config

    args, cfg = _args(out, steps, batch)
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         peft_config=lora_config(cfg))
    t0 = time.perf_counter()
    trainer.train()
    dt = time.perf_counter() - t0
    return dt, trainer.model.unload()


def _timed_callback_class():
    from engine.training.callbacks import JobCallback

    class Timed(JobCallback):
        """JobCallback that adds up the wall time spent inside it (our machinery's own cost)."""

        spent = 0.0

        def on_step_end(self, *a, **kw):
            t0 = time.perf_counter()
            try:
                return super().on_step_end(*a, **kw)
            finally:
                self.spent += time.perf_counter() - t0

        def on_log(self, *a, **kw):
            t0 = time.perf_counter()
            try:
                return super().on_log(*a, **kw)
            finally:
                self.spent += time.perf_counter() - t0

    return Timed


def _ours(model, tok, ds, out, steps, batch):
    """The same, on a job worker thread with our callback and protocol encoding."""
    from trl import DPOTrainer

    from engine.jobs import JobState
    from engine.protocol import Message
    from engine.training.policy import lora_config

    _Timed = _timed_callback_class()
    sink = []
    state = JobState(lambda t, c: sink.append(Message(type=t, content=c, parent="bench").encode()))
    args, cfg = _args(out, steps, batch)
    cb = _Timed(state, "DPO", 0, 1, 1)
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         peft_config=lora_config(cfg), callbacks=[cb])

    def work():
        t0 = time.perf_counter()
        trainer.train()
        return time.perf_counter() - t0

    dt = _in_thread(work)
    return dt, trainer.model.unload(), cb.spent


def bench_gui(preset: str = "smoke", timeout_s: float = 1800.0) -> dict:
    """The studio's own benchmark (``python -m studio.bench_responsiveness``), run as a
    separate process: a real window (offscreen) and a real engine, a round trained
    from the Training tab, the event loop probed every 10 ms. The engine never
    imports the studio; it only starts it as a program."""
    import json
    import os
    import subprocess

    cmd = [sys.executable, "-m", "studio.bench_responsiveness", "--json", "--preset", preset,
           "--timeout-s", str(timeout_s)]
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 900, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"the GUI benchmark did not finish in {timeout_s + 900:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (done.stderr or "").strip().splitlines()[-3:]
        return {"error": f"the GUI benchmark exited with {done.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1])


def bench_rss_round(model_source: str = "bundled", preset: str = "smoke", timeout_s: float = 1800.0) -> dict:
    """The engine's resident memory before and after a round it ran: a real engine
    process on a fresh data folder (the dequantized-model cache is shared), RSS read
    from /proc once it has answered ``hello`` and ``round.kinds`` (what the studio asks
    first), then again a second after the round's result.

    Returns rss_before_round_mb, rss_after_round_mb, rss_after_round_ratio (target:
    at most 1.5) and rss_round {preset, seconds, ok, error?}."""
    import tempfile

    from engine import paths
    from engine.client import EngineProcess

    with tempfile.TemporaryDirectory(prefix="hal-bench-rss-") as tmp:
        env = {"HAL_STUDIO_DATA": tmp, "HAL_STUDIO_DB": f"{tmp}/studio.sqlite3",
               "HAL_STUDIO_CACHE": str(paths.cache_dir()), "HF_HUB_OFFLINE": "1"}
        eng = EngineProcess(env=env)
        try:
            eng.request("hello", timeout=120)
            eng.request("round.kinds", timeout=300)
            time.sleep(0.5)
            before = eng.rss_mb()
            t0 = time.perf_counter()
            final = eng.request("round.start", {"kind": "dpo", "preset": preset,
                                                "config": {"model": model_source}}, timeout=timeout_s)
            seconds = time.perf_counter() - t0
            time.sleep(1.0)
            after = eng.rss_mb()
        finally:
            eng.close()
    round_info = {"preset": preset, "seconds": round(seconds, 1), "ok": final.type == "result"}
    if final.type != "result":
        round_info["error"] = final.content.get("message")
    return {"rss_before_round_mb": round(before, 1), "rss_after_round_mb": round(after, 1),
            "rss_after_round_ratio": round(after / before, 3), "rss_target_ratio": 1.5,
            "rss_round": round_info}


def bench_train(model_source: str = "bundled", steps: int = 6, batch: int = 4, repeats: int = 2,
                threads: int = 0) -> dict:
    import tempfile

    import torch

    from engine.malloc_tuning import tune
    from engine.training import policy

    # The engine's allocator settings (engine.malloc_tuning) apply to the whole process,
    # so the plain script below gets them too: a stricter baseline than its defaults.
    malloc_tuned = tune()
    threads = policy.set_threads(threads)
    base = policy.resolve(model_source)
    model, tok = policy.load(base)
    ds = _dataset()
    plain, threaded, ours, extra = [], [], [], {}
    callback_s = 0.0
    # a plain script's Trainer prints its logs; keep stdout for our one JSON line
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        # An untimed warm-up: the first trainer of a process pays one-off costs (lazy
        # imports, tokenisation caches, allocator growth) that would land on "plain".
        torch.manual_seed(0)
        _, model = _plain(model, tok, ds, f"{tmp}/warmup", 1, batch)
        order = ["plain", "thread", "ours"]
        positions: dict[str, list[int]] = {k: [] for k in order}
        for r in range(repeats):
            # The order rotates each repeat (plain, thread, ours; thread, ours, plain; ...),
            # so no place in a repeat favours one setting.
            for pos, which in enumerate(order[r % 3:] + order[:r % 3]):
                torch.manual_seed(r)
                positions[which].append(pos)
                if which == "plain":
                    dt, model = _plain(model, tok, ds, f"{tmp}/plain{r}", steps, batch)
                    plain.append(dt)
                elif which == "thread":
                    dt, model = _in_thread(lambda: _plain(model, tok, ds, f"{tmp}/thread{r}", steps, batch))
                    threaded.append(dt)
                else:
                    for probe in PROBES:
                        probe("start")
                    dt, model, spent = _ours(model, tok, ds, f"{tmp}/ours{r}", steps, batch)
                    callback_s += spent
                    ours.append(dt)
                    for probe in PROBES:
                        extra.update(probe("stop") or {})
    p, t, o = statistics.median(plain), statistics.median(threaded), statistics.median(ours)
    return {"model": base.source, "steps": steps, "batch_size": batch, "repeats": repeats, "threads": threads,
            "plain_s_per_step": round(p / steps, 4), "plain_thread_s_per_step": round(t / steps, 4),
            "ours_s_per_step": round(o / steps, 4),
            "callback_ms_per_step": round(1000 * callback_s / (steps * repeats), 3),
            "ratio": round(o / p, 4), "overhead_ratio": round(o / t, 4), "target_ratio": 1.05,
            "within_target": o / p <= 1.05 and o / t <= 1.05,
            "plain_runs_s": [round(x, 2) for x in plain], "plain_thread_runs_s": [round(x, 2) for x in threaded],
            "ours_runs_s": [round(x, 2) for x in ours], "positions_in_repeat": positions,
            "malloc_tuned": malloc_tuned,
            "note": "ratio: ours vs a plain script on the main thread; overhead_ratio: ours vs the same "
                    "plain trainer on a worker thread, which isolates our callback and protocol cost "
                    "(with glibc's default allocator a worker thread ran the same steps about 15% slower "
                    "than the main thread; see engine/malloc_tuning.py)", **extra}
