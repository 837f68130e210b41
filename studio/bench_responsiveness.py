"""Does the studio stay responsive while a round trains? Measured, not assumed.

``python -m studio.bench_responsiveness --json`` opens the real main window
(offscreen unless ``--show``) on the real engine, waits until both Compare
panes have loaded their models, shows the Training tab with the round chosen,
probes the Qt event loop with no round running (the baseline), then starts the
round (its plots really paint) and probes again until the round ends. The probe is a 10 ms
precise repeating timer: how much later than 10 ms after the last tick each
tick fires is how long the event loop could not answer. ``--chat`` also sends a prompt to
both panes mid-round, to show chatting goes on. One JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

TARGET_P99_MS = 50.0


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between neighbours; None when empty."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: list[float], prefix: str = "") -> dict:
    r = lambda x: None if x is None else round(x, 2)  # noqa: E731
    return {f"{prefix}p50_ms": r(percentile(values, 50)), f"{prefix}p99_ms": r(percentile(values, 99)),
            f"{prefix}max_ms": r(max(values) if values else None),
            f"{prefix}mean_ms": r(sum(values) / len(values) if values else None),
            f"{prefix}samples": len(values)}


def _halfway(message: str) -> bool:
    """Whether a progress message says training passed half its steps ("DPO: step 4/8")."""
    try:
        done, total = message.split("step", 1)[1].strip().split("/")
        return int(done) >= max(2, int(total) / 2)
    except (IndexError, ValueError):
        return False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m studio.bench_responsiveness",
                                description="Event-loop latency of the studio while a round trains.")
    p.add_argument("--kind", default="dpo", help="round kind (dpo, online, reward-weights, reward-model)")
    p.add_argument("--preset", default="smoke", choices=["smoke", "default"])
    p.add_argument("--config", default="{}", help="JSON object of settings over the preset")
    p.add_argument("--baseline-s", type=float, default=10.0, help="seconds probed with no round")
    p.add_argument("--interval-ms", type=int, default=10, help="the probe timer's period")
    p.add_argument("--timeout-s", type=float, default=1500.0, help="give up on the round after this")
    p.add_argument("--chat", action="store_true", help="also chat in both panes while the round trains")
    p.add_argument("--data-dir", help="store and adapters here (default: a temporary folder, removed)")
    p.add_argument("--show", action="store_true", help="use the real display instead of offscreen")
    p.add_argument("--screenshot", metavar="PNG", help="save the window (Training tab) when the round ends")
    p.add_argument("--screenshot-mid", metavar="PNG", help="save the window halfway through training")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from studio.refcount_guard import install

    install()  # also when ``studio`` was found as a namespace package (a stale editable install)
    args = parse_args(argv)
    overrides = json.loads(args.config)
    if not args.show:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    tmp = None
    if args.data_dir:
        os.environ["HAL_STUDIO_DATA"] = str(Path(args.data_dir).expanduser().resolve())
    else:
        tmp = tempfile.mkdtemp(prefix="hal-bench-gui-")
        os.environ["HAL_STUDIO_DATA"] = tmp
    if not os.environ.get("HAL_STUDIO_CACHE"):  # reuse the dequantized weights across runs
        from platformdirs import user_cache_dir

        os.environ["HAL_STUDIO_CACHE"] = user_cache_dir("hal-studio", appauthor=False)
    try:
        out = _run(args, overrides)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=None if args.json else 1))
    return 0 if out.get("round_status") == "done" else 1


def _run(args: argparse.Namespace, overrides: dict) -> dict:
    from PySide6.QtCore import QElapsedTimer, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from engine.store import Store
    from studio import theme
    from studio.engine_client import EngineClient
    from studio.main_window import MainWindow
    from studio.prefs import Prefs

    app = QApplication.instance() or QApplication(sys.argv[:1])
    theme.apply(app)
    store = Store()
    client = EngineClient(env={"HAL_STUDIO_DB": str(store.path)})
    window = MainWindow(client, store, Prefs())
    window.resize(1600, 1000)
    window.show()
    client.start()
    view = window.training_view
    clock = QElapsedTimer()
    clock.start()
    state = {"phase": "starting", "samples": {"baseline": [], "round": []}, "phase_of": [],
             "t_round": None, "round_s": None, "metrics": 0, "progress": 0, "message": "",
             "chat": None, "error": None, "panes_loaded": False, "stalls": []}

    # -- the probe: a precise repeating timer; a tick that comes late says how long ----
    # the loop was busy (no Qt call per tick, so the probe itself costs next to nothing)
    probe = QTimer()
    probe.setTimerType(Qt.TimerType.PreciseTimer)
    probe.setInterval(args.interval_ms)
    last = [0.0, 0.0]  # wall clock and this process's CPU time at the last tick

    def tick() -> None:
        now, cpu = time.perf_counter(), time.process_time()
        late_ms = max(0.0, (now - last[0]) * 1000.0 - args.interval_ms)
        cpu_ms = (cpu - last[1]) * 1000.0
        last[0], last[1] = now, cpu
        phase = state["phase"]
        if state.pop("grabbed", False):
            return  # the bench's own screenshot held the loop, not the studio
        if phase in state["samples"]:
            state["samples"][phase].append(late_ms)
            if phase == "round":
                state["phase_of"].append(state["message"])
            if late_ms > TARGET_P99_MS:  # was the GUI working, or waiting for a core?
                state["stalls"].append({"phase": phase, "at_s": round(clock.elapsed() / 1000.0, 1),
                                        "late_ms": round(late_ms, 1), "gui_cpu_ms": round(cpu_ms, 1),
                                        "during": state["message"]})

    probe.timeout.connect(tick)

    def on_progress(cid: str, content: dict) -> None:
        if cid == view.run_id:
            state["progress"] += 1
            state["message"] = str(content.get("message", ""))
            if args.screenshot_mid and not state.get("mid_saved") and _halfway(state["message"]):
                state["mid_saved"] = True
                QTimer.singleShot(600, lambda: (window.grab().save(args.screenshot_mid),
                                                state.__setitem__("grabbed", True)))  # after a redraw

    def on_metric(cid: str, _content: dict) -> None:
        if cid == view.run_id:
            state["metrics"] += 1

    client.sig_progress.connect(on_progress)
    client.sig_metric.connect(on_metric)

    # -- the script: wait for models, baseline, round, (chat), done ----------------------------
    def panes_ready() -> bool:
        return all(p.status.property("state") in ("ready", "error") for p in window.pickers.values())

    def prepare_round() -> None:
        """Show the Training tab with the round chosen (its first paint is not measured)."""
        window.tabs.setCurrentWidget(view)
        view.kind_combo.setCurrentIndex(view.kind_combo.findData(args.kind))
        view.preset_combo.setCurrentIndex(view.preset_combo.findData(args.preset))
        for name, value in overrides.items():
            view.form.set_value(name, value)

    def start_round() -> None:
        view.on_start()
        state["t_round"] = time.perf_counter()
        state["phase"] = "round"

    def send_chat() -> None:
        state["chat"] = {"sent_at_s": round(time.perf_counter() - state["t_round"], 1)}
        window.sampling.max_tokens.setValue(24)
        window.prompt.setPlainText("hey! what are you up to this weekend?")
        window.on_submit()

    def on_busy(busy: bool) -> None:
        chat = state["chat"]
        if chat is not None and not busy and "reply_s" not in chat and window.session.latest:
            chat["reply_s"] = round(time.perf_counter() - state["t_round"] - chat["sent_at_s"], 1)
            chat["during_round"] = view.run_id is not None
            turn = window.session.latest
            chat["replies_complete"] = bool(turn.complete)
            chat["reply_words"] = [len((r.text or "").split()) for r in turn.replies.values()]

    window.session.sig_busy_changed.connect(on_busy)

    def step() -> None:
        elapsed = clock.elapsed() / 1000.0
        phase = state["phase"]
        if phase == "starting":
            if client.state in ("crashed", "stopped") or elapsed > 600:
                state["error"] = client.crash_message or f"engine {client.state} after {elapsed:.0f} s"
                app.quit()
            elif client.state == "ready" and view.kinds and (panes_ready() or elapsed > 240):
                state["panes_loaded"] = panes_ready()
                prepare_round()
                state["phase"] = "settling"
                state["t_settle"] = time.perf_counter()
        elif phase == "settling":
            if time.perf_counter() - state["t_settle"] >= 2.0:
                state["phase"] = "baseline"
                state["t_baseline"] = time.perf_counter()
        elif phase == "baseline":
            if time.perf_counter() - state["t_baseline"] >= args.baseline_s:
                start_round()
        elif phase == "round":
            since = time.perf_counter() - state["t_round"]
            if args.chat and state["chat"] is None and state["message"].startswith(("DPO", "GRPO")):
                send_chat()
            if view.run_id is None or since > args.timeout_s:
                state["round_s"] = round(since, 2)
                state["phase"] = "done"
                state["t_done"] = time.perf_counter()
                if args.screenshot:
                    window.grab().save(args.screenshot)
        elif phase == "done":
            waiting_chat = args.chat and state["chat"] is not None and "reply_s" not in state["chat"]
            if not waiting_chat or time.perf_counter() - state["t_done"] > 120:
                app.quit()
        if elapsed > args.timeout_s + 600:
            state["error"] = "gave up"
            app.quit()

    stepper = QTimer()
    stepper.timeout.connect(step)
    stepper.start(200)
    last[0], last[1] = time.perf_counter(), time.process_time()
    probe.start()
    app.exec()
    probe.stop()
    stepper.stop()

    result = view.last_result or {}
    train = [s for s, m in zip(state["samples"]["round"], state["phase_of"])
             if m.startswith(("DPO", "GRPO", "training", "reward"))]
    rs = state["samples"]["round"]
    out = {**summary(rs), **summary(state["samples"]["baseline"], "baseline_"),
           **summary(train, "train_"),
           "over_50ms": sum(1 for s in rs if s > TARGET_P99_MS),
           "target_p99_ms": TARGET_P99_MS,
           "within_target": bool(rs) and percentile(rs, 99) <= TARGET_P99_MS,
           "round_seconds": state["round_s"], "round_kind": args.kind, "preset": args.preset,
           "round_status": ("cancelled" if result.get("cancelled") else "done") if result else "failed",
           "round_error": None if result else view.run_detail.text(),
           "steps": result.get("steps"), "metric_events": state["metrics"],
           "progress_events": state["progress"], "plot_redraws": view.plots.redraws,
           "interval_ms": args.interval_ms, "panes_loaded": state["panes_loaded"], "chat": state["chat"],
           "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
           "platform": os.environ.get("QT_QPA_PLATFORM", "native"), "error": state["error"],
           # the worst stalls, with the GUI process's own CPU time in them: little CPU in a long
           # stall means the GUI was waiting for a core, not working
           "worst_stalls": sorted(state["stalls"], key=lambda x: -x["late_ms"])[:8]}
    window.close()
    client.shutdown()
    store.close()
    return out


if __name__ == "__main__":
    sys.exit(main())
