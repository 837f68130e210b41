"""``hal bench soak``: chat + score + rate cycles through the real engine
process while the engine is ``kill -9``-ed at random moments.

The bench plays the studio: it writes conversations, turns and ratings with
its own ``Store`` (a rating never depends on the engine) and asks the engine
to generate persisted replies and score them. At random moments (mid-
generation, mid-score, between cycles) it kills the engine and starts a new
one. At the end every rating it wrote must be found, unchanged, in a freshly
opened store that passes ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

PROMPTS = [
    "hey, what did you get up to this weekend?",
    "Tell me about a meal you still remember.",
    "What's the most annoying thing about your commute?",
    "Be honest: cats or dogs, and why?",
    "How do you usually unwind after a long day?",
]
VERDICTS = ("certainly_left", "likely_left", "tie", "likely_right", "certainly_right", "both_bad")
SPEC = {"source": "bundled", "adapter": None, "backend": "llamacpp"}


def _vm(pid: int | str, key: str) -> float:
    """A /proc status field in MiB (VmRSS now, VmHWM the high-water mark)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _thirds(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v == v]
    if len(vals) < 3:
        return None, None
    k = len(vals) // 3
    return round(statistics.mean(vals[:k]), 1), round(statistics.mean(vals[-k:]), 1)


class _Life:
    """One engine process, from start to kill (or the final shutdown)."""

    def __init__(self, env: dict, load_timeout: float):
        from engine.client import EngineProcess

        self.proc = EngineProcess(env=env)
        self.started = time.time()
        self._peak = 0.0
        threading.Thread(target=self._watch, daemon=True).start()
        hello = self.proc.request("hello", timeout=60)
        if hello.type != "result":
            raise RuntimeError(f"hello failed: {hello.content}")
        final = self.proc.request("load", {"model": SPEC}, timeout=load_timeout)
        if final.type != "result":
            raise RuntimeError(f"load failed: {final.content.get('message')}")

    def alive(self) -> bool:
        return self.proc.proc.poll() is None

    def _watch(self) -> None:
        """Poll the high-water mark: a killed process's /proc entry is gone."""
        while self.proc.proc.poll() is None:
            hwm = _vm(self.proc.pid, "VmHWM")
            if hwm == hwm:
                self._peak = max(self._peak, hwm)
            time.sleep(0.2)

    def peak_mb(self) -> float:
        hwm = _vm(self.proc.pid, "VmHWM")
        return max(self._peak, hwm) if hwm == hwm else self._peak

    def kill(self) -> None:
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.proc.wait()


def run(seconds: float, kill_prob: float = 0.35, max_tokens: int = 24, seed: int = 0,
        data_dir: str | None = None) -> dict:
    """Soak for ``seconds``; returns the figures (see ``register`` for the fields)."""
    from engine.store import Store

    rng = random.Random(seed)
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="hal-soak-")
        data_dir = tmp.name
    db = Path(data_dir) / "studio.sqlite3"
    env = {"HAL_STUDIO_DATA": data_dir, "HAL_STUDIO_DB": str(db)}
    store = Store(db)
    written: dict[str, str] = {}  # turn id -> verdict acknowledged by store.rate()
    lives: list[dict] = []
    engine_rss, bench_rss = [], []
    counts = {"cycles": 0, "kills": 0, "kills_survived": 0, "kills_mid_generation": 0,
              "kills_mid_score": 0, "kills_between_cycles": 0, "kills_unplanned": 0, "aborted_cycles": 0,
              "score_errors": 0, "generate_errors": 0}
    start = time.time()
    deadline = start + seconds
    life: _Life | None = None

    def end_life(killed: bool) -> None:
        nonlocal life
        peak = life.peak_mb()
        if killed:
            life.kill()
        else:
            life.proc.close()
        lives.append({"peak_rss_mb": round(peak, 1), "killed": killed,
                      "seconds": round(time.time() - life.started, 1)})
        life = None

    try:
        while time.time() < deadline:
            if life is None or not life.alive():
                if life is not None:  # died on its own: record it, do not count it as ours
                    end_life(killed=True)
                life = _Life(env, load_timeout=300)
                if counts["kills"]:
                    counts["kills_survived"] += 1
            phase = None
            if rng.random() < kill_prob:
                phase = rng.choice(("generate", "score", "between"))
            killed = []

            def arm(delay: float, what: str) -> threading.Timer:
                pid = life.proc.pid

                def fire() -> None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed.append(what)
                    except ProcessLookupError:
                        pass

                t = threading.Timer(delay, fire)
                t.start()
                return t

            def landed(timer) -> bool:
                """Wait for an armed kill; True (engine gone, life ended) if it fired."""
                if timer is not None:
                    timer.join()
                if killed or not life.alive():
                    what = killed[0] if killed else "unplanned"
                    counts["kills"] += 1
                    counts[f"kills_{what}"] = counts.get(f"kills_{what}", 0) + 1
                    counts["aborted_cycles"] += 1
                    end_life(killed=True)
                    return True
                return False

            # the studio's side: conversation and turn rows
            a_side = rng.choice(("left", "right"))
            sampling = {"temperature": 0.8, "top_p": 0.95, "max_tokens": max_tokens,
                        "seed": rng.randrange(1 << 30)}
            conv = store.create_conversation(SPEC, SPEC, sampling, blind=True, title="soak")
            prompt = rng.choice(PROMPTS)
            turn = store.add_turn(conv, prompt, blind=True, a_side=a_side)
            b_side = "right" if a_side == "left" else "left"
            msgs = [{"role": "user", "content": prompt}]
            killer = arm(rng.uniform(0.0, 1.5), "mid_generation") if phase == "generate" else None
            try:
                replies = [life.proc.send("generate", {
                    "model": SPEC, "messages": msgs, "sampling": sampling,
                    "persist": {"turn_id": turn, "slot": slot, "side": side}})
                    for slot, side in (("a", a_side), ("b", b_side))]
                for r in replies:
                    r.done.wait(300)
            except OSError:  # the pipe broke under the kill
                replies = []
            if landed(killer):
                continue
            if not all(r.final is not None and r.final.type == "result" for r in replies):
                counts["generate_errors"] += 1
                counts["aborted_cycles"] += 1
                continue
            ids = {r.final.content["reply_id"]: side for r, side in zip(replies, (a_side, b_side))}
            killer = arm(rng.uniform(0.0, 0.3), "mid_score") if phase == "score" else None
            try:
                sc = life.proc.send("score.reply", {"reply_ids": list(ids)})
                sc.done.wait(300)
            except OSError:
                sc = None
            if landed(killer):
                continue
            if sc is None or sc.final is None or sc.final.type != "result":
                counts["score_errors"] += 1
            # the rating: written by this process, as the studio does
            left = next(i for i, s in ids.items() if s == "left")
            right = next(i for i, s in ids.items() if s == "right")
            verdict = rng.choice(VERDICTS)
            store.rate(turn, left, right, verdict, blind=True, a_side=a_side)
            written[turn] = verdict
            counts["cycles"] += 1
            engine_rss.append(_vm(life.proc.pid, "VmRSS"))
            bench_rss.append(_vm("self", "VmRSS"))
            if phase == "between":
                counts["kills_between_cycles"] += 1
                counts["kills"] += 1
                end_life(killed=True)
        if life is None and counts["kills"] > counts["kills_survived"]:
            life = _Life(env, load_timeout=300)  # the last kill is survived only if a new one serves
            counts["kills_survived"] += 1
        if life is not None:
            end_life(killed=False)
    finally:
        if life is not None:
            life.kill()
        store.close()

    check = Store(db)  # a fresh connection: what a restarted studio would see
    try:
        found = {t: (check.rating_for_turn(t) or {}).get("verdict") for t in written}
        integrity = check.integrity_ok()
        orphan_ratings = check.db.execute(
            "SELECT COUNT(*) FROM ratings r LEFT JOIN replies p ON r.left_reply_id=p.id "
            "WHERE p.id IS NULL").fetchone()[0]
    finally:
        check.close()
    if tmp is not None:
        tmp.cleanup()
    e_first, e_last = _thirds(engine_rss)
    b_first, b_last = _thirds(bench_rss)

    def grows(first, last):
        return None if first is None else bool(last > first * 1.10 + 10)

    return {
        "minutes": round((time.time() - start) / 60, 2),
        "cycles": counts["cycles"],
        "kills": counts["kills"],
        "kills_survived": counts["kills_survived"],
        "kills_by_moment": {k: counts[f"kills_{k}"] for k in
                            ("mid_generation", "mid_score", "between_cycles", "unplanned")},
        "aborted_cycles": counts["aborted_cycles"],
        "generate_errors": counts["generate_errors"],
        "score_errors": counts["score_errors"],
        "ratings_written": len(written),
        "ratings_found": sum(1 for t, v in written.items() if found[t] == v),
        "ratings_equal": all(found[t] == v for t, v in written.items()),
        "orphan_ratings": orphan_ratings,
        "integrity_ok": integrity,
        "engine_lives": len(lives),
        "engine_peak_rss_mb": [life_["peak_rss_mb"] for life_ in lives],
        "bench_process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_growth": {"engine_rss_mb_first_third": e_first, "engine_rss_mb_last_third": e_last,
                       "engine_grows": grows(e_first, e_last),
                       "bench_rss_mb_first_third": b_first, "bench_rss_mb_last_third": b_last,
                       "bench_grows": grows(b_first, b_last),
                       "rule": "grows = last third's mean RSS > 1.10 x first third's + 10 MiB"},
        "max_tokens": max_tokens,
        "kill_prob": kill_prob,
    }


def _cmd(args: argparse.Namespace) -> int:
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    result = run(seconds, kill_prob=args.kill_prob, max_tokens=args.max_tokens, seed=args.seed)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:28s} {value}")
    ok = result["ratings_equal"] and result["integrity_ok"]
    return 0 if ok else 1


def register(bench_sub) -> None:
    p = bench_sub.add_parser("soak", help="chat + score + rate cycles with random engine kills")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=None, help="overrides --minutes (short runs)")
    p.add_argument("--kill-prob", type=float, default=0.35,
                   help="chance per cycle that the engine is kill -9'ed (mid-generation, "
                        "mid-score or between cycles)")
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd)


if __name__ == "__main__":
    sys.exit(_cmd(argparse.Namespace(minutes=10.0, seconds=None, kill_prob=0.35,
                                     max_tokens=24, seed=0, json=True)))
