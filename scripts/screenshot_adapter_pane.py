"""Docs screenshot: a round's adapter answering in pane B beside the base in pane A.

Runs the real studio and engine on the defaults (backend auto), puts the
adapter in pane B the way the Training tab's "Use in pane B" does, sends the
prompts and saves the window once both panes have answered. Run under a
display::

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_adapter_pane.py \
        --data-dir /tmp/shots --adapter ADAPTER_FOLDER --out docs/screenshot-compare-aligned.png \
        --prompt "hey! how's your week going?"
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--adapter", required=True, help="the adapter folder (or id) to put in pane B")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--prompt", action="append", default=[])
    parser.add_argument("--timeout-s", type=float, default=600)
    args = parser.parse_args(argv)
    os.environ["HAL_STUDIO_DATA"] = str(Path(args.data_dir).resolve())
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from engine.store import Store
    from studio import theme
    from studio.engine_client import EngineClient
    from studio.main_window import MainWindow
    from studio.prefs import Prefs

    app = QApplication(sys.argv[:1])
    theme.apply(app)
    store = Store()
    client = EngineClient(env={"HAL_STUDIO_DB": str(store.path)})
    window = MainWindow(client, store, Prefs())
    window.resize(1560, 960)
    window.show()
    prompts = list(args.prompt) or ["hey! how's your week going?"]
    state = {"sent": 0, "ticks": 0, "adapter": False, "code": 1}

    def tick() -> None:
        state["ticks"] += 1
        if state["ticks"] * 0.5 > args.timeout_s:
            print("timed out", file=sys.stderr)
            app.quit()
            return
        if client.state != "ready":
            return
        if not state["adapter"]:
            window.on_use_adapter("b", str(Path(args.adapter)))
            state["adapter"] = True
            return
        if any(p.status.property("state") != "ready" for p in window.pickers.values()):
            return
        latest = window.session.latest
        if latest is not None and latest.live:
            return
        if state["sent"] < len(prompts):
            window.prompt.setPlainText(prompts[state["sent"]])
            window.on_submit()
            state["sent"] += 1
            return
        app.processEvents()
        window.grab().save(args.out)
        print(f"saved {args.out}")
        state["code"] = 0
        app.quit()

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(500)
    client.start()
    app.exec()
    client.shutdown(wait_ms=3000)
    store.close()
    return state["code"]


if __name__ == "__main__":
    sys.exit(main())
