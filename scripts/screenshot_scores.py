"""Docs screenshots of the score breakdown and the Traits tab, from a real session.

Runs the studio on the real engine: optionally fits lexical weights on the
shared Turing file from the Traits tab first, sends the prompts to both panes,
waits for their scores, then saves the window, the breakdown of the last turn
and the Traits tab as PNGs. Run under a display (``xvfb-run``)::

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_scores.py \
        --data-dir /tmp/shots-data --out docs --fit --backend-b hf --prompt "hey, what's up?"
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", default="docs", help="folder for the PNGs")
    parser.add_argument("--prompt", action="append", default=[])
    parser.add_argument("--fit", action="store_true", help="fit lexical weights on the shared file first")
    parser.add_argument("--backend-b", default="auto", help="backend of model B (llamacpp, hf, auto)")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--system", default="", help="system prompt / persona for both panes")
    args = parser.parse_args(argv)
    os.environ["HAL_STUDIO_DATA"] = str(Path(args.data_dir).resolve())
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from engine.store import Store
    from studio import theme
    from studio.breakdown_view import open_breakdown
    from studio.engine_client import EngineClient
    from studio.main_window import MainWindow
    from studio.prefs import Prefs
    from studio.traits_view import TraitsView

    app = QApplication(sys.argv[:1])
    theme.apply(app)
    store = Store()
    client = EngineClient(env={"HAL_STUDIO_DB": str(store.path)})
    window = MainWindow(client, store, Prefs(), initial_spec={"source": "bundled", "adapter": None,
                                                              "backend": "llamacpp"})
    if args.backend_b != "auto":
        window.pickers["b"].set_spec({"source": "bundled", "adapter": None, "backend": args.backend_b})
        window.on_model_changed("b", window.pickers["b"].spec())
    window.sampling.max_tokens.setValue(args.max_tokens)
    if args.system:
        window.sampling.system_prompt.setPlainText(args.system)
    traits = window.findChild(TraitsView)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prompts = list(args.prompt)
    state = {"fit": "todo" if args.fit else "done", "ticks": 0}

    def step() -> None:
        state["ticks"] += 1
        if state["ticks"] > 6000:
            print("gave up waiting", file=sys.stderr)
            app.quit()
            return
        s = window.session
        loading = any(p.status.property("state") in ("loading", "idle") for p in window.pickers.values())
        if client.state != "ready" or loading or s.busy():
            QTimer.singleShot(200, step)
            return
        if state["fit"] == "todo" and traits.fit_panel.path.text():
            window.tabs.setCurrentWidget(traits)
            traits.fit_panel.run_button.click()
            state["fit"] = "running"
        if state["fit"] == "running":
            if traits.fit_panel.run_button.isEnabled():
                state["fit"] = "done"
                window.tabs.setCurrentIndex(0)
            QTimer.singleShot(200, step)
            return
        if prompts:
            window.prompt.setPlainText(prompts.pop(0))
            window.on_submit()
            QTimer.singleShot(300, step)
            return
        turn = s.latest
        if turn is None or any(s.scores.get(r.reply_id) is None for r in turn.replies.values()):
            QTimer.singleShot(200, step)
            return
        QTimer.singleShot(500, shoot)

    def shoot() -> None:
        window.grab().save(str(out / "screenshot-scores-compare.png"))
        dialog = open_breakdown(window.session, len(window.session.turns) - 1, window)
        QTimer.singleShot(800, lambda: finish(dialog))

    def finish(dialog) -> None:
        dialog.grab().save(str(out / "screenshot-breakdown.png"))
        dialog.close()
        window.tabs.setCurrentWidget(traits)
        QTimer.singleShot(800, lambda: (window.grab().save(str(out / "screenshot-traits.png")), window.close()))

    window.show()
    client.start()
    QTimer.singleShot(500, step)
    code = app.exec()
    client.shutdown()
    store.close()
    print(f"saved screenshots to {out}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
