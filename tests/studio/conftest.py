"""Studio test fixtures: offscreen Qt, offline hub, a fresh data dir per test,
and a compare window wired to a fake engine process."""

import os
import sys
import tempfile
from pathlib import Path

os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HAL_STUDIO_DATA", tempfile.mkdtemp(prefix="hal-studio-test-"))

import pytest  # noqa: E402

FAKE_ENGINE = Path(__file__).with_name("fake_engine.py")


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    path = tmp_path / "data"
    path.mkdir()
    monkeypatch.setenv("HAL_STUDIO_DATA", str(path))
    monkeypatch.delenv("HAL_STUDIO_DB", raising=False)
    return path


@pytest.fixture
def store(data_dir):
    from engine.store import Store

    s = Store(data_dir / "studio.sqlite3")
    yield s
    s.close()


def _fake_client(store, **env):
    from studio.engine_client import EngineClient

    return EngineClient(command=[sys.executable, str(FAKE_ENGINE)],
                        env={"HAL_STUDIO_DB": str(store.path), **env}, hello_timeout_s=30)


@pytest.fixture
def fake_client(store):
    """``fake_client(FAKE_TOKEN_DELAY="0.2")``: an EngineClient on the fake engine."""
    return lambda **env: _fake_client(store, **env)


@pytest.fixture
def make_window(qtbot, store, data_dir):
    """Build a MainWindow on a fake engine; ``make_window(FAKE_TOKEN_DELAY="0.2")``."""
    from studio.main_window import MainWindow
    from studio.prefs import Prefs

    made = []

    def make(**env):
        client = _fake_client(store, **env)
        window = MainWindow(client, store, Prefs(data_dir / "prefs.json"))
        qtbot.addWidget(window)
        window.show()
        client.start()
        qtbot.waitUntil(lambda: client.state == "ready", timeout=20000)
        made.append(window)
        return window

    yield make
    for window in made:
        window.client.shutdown(wait_ms=2000)
