"""``hal-studio``: open the compare window on a background engine.

``--screenshot FILE`` renders the window to a PNG and quits (for docs and
checks); with ``--prompt`` it first sends that prompt to both panes and waits
for both replies.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hal-studio",
                                     description="Chat with two models side by side and rate them.")
    parser.add_argument("--data-dir", help="where the store and preferences live "
                        "(default: the user data directory, or $HAL_STUDIO_DATA)")
    parser.add_argument("--model", metavar="PATH", help="a .gguf file or model folder for both "
                        "panes (default: the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--blind", action="store_true", help="start in blind mode")
    parser.add_argument("--screenshot", metavar="FILE", help="save a PNG of the window and quit")
    parser.add_argument("--screenshot-after", type=float, default=4.0, metavar="SECONDS",
                        help="seconds to wait before the screenshot (default 4)")
    parser.add_argument("--prompt", action="append", default=[],
                        help="send this prompt to both panes once the engine is ready "
                        "(repeat for several turns, each sent when the last has finished)")
    parser.add_argument("--rate", metavar="VERDICT", help=argparse.SUPPRESS)  # docs screenshots
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.data_dir:
        os.environ["HAL_STUDIO_DATA"] = str(Path(args.data_dir).expanduser().resolve())
    # Imported late so --help works without a display and the data dir is set first.
    from PySide6.QtWidgets import QApplication, QMessageBox

    from engine.store import Store, StoreError
    from studio import theme
    from studio.engine_client import EngineClient
    from studio.main_window import MainWindow
    from studio.prefs import Prefs

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("HAL studio")
    theme.apply(app)
    try:
        store = Store()
    except StoreError as exc:
        QMessageBox.critical(None, "HAL studio", str(exc))
        return 1
    client = EngineClient(env={"HAL_STUDIO_DB": str(store.path)})
    spec = None
    if args.model:
        spec = {"source": str(Path(args.model).expanduser().resolve()), "adapter": None,
                "backend": "auto"}
    window = MainWindow(client, store, Prefs(), initial_spec=spec)
    if args.blind:
        window.blind_toggle.setChecked(True)
    window.show()
    client.start()
    if args.prompt:
        _send_when_ready(window, list(args.prompt))
    if args.screenshot:
        _schedule_screenshot(window, args)
    code = app.exec()
    client.shutdown()
    store.close()
    return code


def _send_when_ready(window, prompts: list[str]) -> None:
    """Send the prompts one turn at a time (scripted demos and screenshots)."""

    def send_next(*_args) -> None:
        loading = any(p.status.property("state") in ("loading", "idle")
                      for p in window.pickers.values())
        if window.client.state != "ready" or loading or window.session.busy() or not prompts:
            return
        window.prompt.setPlainText(prompts.pop(0))
        window.on_submit()

    window.client.sig_state_changed.connect(send_next)
    window.session.sig_busy_changed.connect(send_next)
    window.session.sig_load_state.connect(send_next)  # wait until both models are loaded


def _schedule_screenshot(window, args: argparse.Namespace) -> None:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    def shoot() -> None:
        turn = window.session.latest
        waiting = args.prompt and (turn is None or window.session.busy()
                                   or len(window.session.turns) < len(args.prompt))
        if waiting and shoot.tries < 6000:  # up to 10 min more for the replies
            shoot.tries += 1
            QTimer.singleShot(100, shoot)
            return
        if args.rate and turn is not None and turn.complete and turn.rating is None:
            window.on_rated(args.rate, "")
            QTimer.singleShot(300, shoot)
            return
        QApplication.processEvents()
        window.grab().save(args.screenshot)
        print(f"screenshot saved to {args.screenshot}", file=sys.stderr)
        window.close()

    shoot.tries = 0
    QTimer.singleShot(int(args.screenshot_after * 1000), shoot)
