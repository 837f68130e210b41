"""The store refuses damage at open and notices files changed under it (issue 11)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.store import Store, StoreError

ROOT = Path(__file__).resolve().parents[2]


def _filled(path: Path, n_turns: int = 150) -> tuple[Store, list[str]]:
    store = Store(path)
    cid = store.create_conversation({"source": "a"}, {"source": "b"}, {}, False)
    ratings = []
    for i in range(n_turns):
        tid = store.add_turn(cid, f"prompt {i} " + "x" * 300, False, "left")
        a = store.add_reply(tid, "a", "left", f"reply a {i} " + "y" * 300, "stop", {"source": "a"},
                            {"name": "A"}, {"seed": 1}, {})
        b = store.add_reply(tid, "b", "right", f"reply b {i} " + "z" * 300, "stop", {"source": "b"},
                            {"name": "B"}, {"seed": 1}, {})
        ratings.append(store.rate(tid, a, b, "likely_left"))
    return store, ratings


def _damage(path: Path, fill: bytes) -> None:
    """Overwrite a few pages in the middle of the file."""
    size = path.stat().st_size
    page = 4096
    assert size > 20 * page
    with open(path, "r+b") as fh:
        fh.seek((size // page // 2) * page)
        fh.write((fill * page)[: 3 * page])


@pytest.mark.parametrize("fill", [b"\x00", b"\xa5\x17garbage"])
def test_a_store_with_damaged_pages_is_refused_at_open_with_the_way_out(tmp_path, fill):
    path = tmp_path / "studio.sqlite3"
    store, _ = _filled(path)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    _damage(path, fill)
    with pytest.raises(StoreError) as info:
        Store(path)
    message = str(info.value)
    assert "damaged" in message and "hal store recover" in message
    assert "\n" not in message
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HAL_STUDIO_DATA": str(tmp_path / "data")}
    for args in (["results", "--db", str(path)], ["ratings", "list", "--db", str(path)]):
        proc = subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                              timeout=120, env=env)
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and "damaged" in lines[0], proc.stderr[-1500:]
    # the way out the message gives: every readable row copied into a new store, the damaged file kept
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "store", "recover", "--db", str(path), "--json"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-1500:]
    import json

    report = json.loads(proc.stdout)
    assert Path(report["damaged_copy"]).is_file()
    fresh = Store(path)  # passes the check now
    n = len(fresh.ratings())
    assert report["tables"]["ratings"]["recovered"] == n and n > 0
    assert sum(t["recovered"] for t in report["tables"].values()) > 300  # most of 150 turns x 4 rows survived
    fresh.close()


def test_a_healthy_store_opens_as_before(tmp_path):
    store, ratings = _filled(tmp_path / "studio.sqlite3", 5)
    store.close()
    again = Store(tmp_path / "studio.sqlite3")
    assert len(again.ratings()) == 5
    again.close()


def _one_turn(store: Store) -> tuple[str, str, str]:
    cid = store.create_conversation({"source": "a"}, {"source": "b"}, {}, False)
    tid = store.add_turn(cid, "hi", False, "left")
    a = store.add_reply(tid, "a", "left", "hey", "stop", {"source": "a"}, {"name": "A"}, {"seed": 1}, {})
    b = store.add_reply(tid, "b", "right", "hello", "stop", {"source": "b"}, {"name": "B"}, {"seed": 1}, {})
    return tid, a, b


def test_a_deleted_wal_is_noticed_before_a_rating_is_acknowledged(tmp_path):
    path = tmp_path / "studio.sqlite3"
    store = Store(path)
    engine_side = Store(path)  # the engine has it open too, as in the studio
    tid, a, b = _one_turn(engine_side)
    store.rate(tid, a, b, "tie")
    wal = Path(str(path) + "-wal")
    assert wal.is_file()
    wal.unlink()
    with pytest.raises(StoreError, match="write-ahead log .* was deleted"):
        store.rate(tid, a, b, "likely_left")
    with pytest.raises(StoreError, match="was deleted"):
        engine_side.add_reply(tid, "a", "left", "again", "stop", {"source": "a"}, {"name": "A"}, {"seed": 1}, {})
    store.close()
    engine_side.close()


def test_a_store_file_replaced_under_the_studio_is_noticed(tmp_path):
    path = tmp_path / "studio.sqlite3"
    store = Store(path)
    tid, a, b = _one_turn(store)
    other = tmp_path / "other.sqlite3"
    Store(other).close()
    os.replace(other, path)
    with pytest.raises(StoreError, match="store file studio.sqlite3 was replaced"):
        store.rate(tid, a, b, "tie")
    store.close()


def test_two_stores_on_one_file_raise_no_false_alarm(tmp_path):
    path = tmp_path / "studio.sqlite3"
    first = Store(path)
    tid, a, b = _one_turn(first)
    for _ in range(3):  # the engine restarting: open, write, close, while the studio keeps its store
        engine_side = Store(path)
        _one_turn(engine_side)
        engine_side.close()
        first.rate(tid, a, b, "tie")
    first.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    first.rate(tid, a, b, "likely_right")
    assert first.rating_for_turn(tid)["verdict"] == "likely_right"
    first.close()
