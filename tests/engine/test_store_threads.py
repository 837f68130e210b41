"""The engine's worker threads share one Store (one SQLite connection): reads
(which sqlite-utils wraps in a SAVEPOINT) interleaved with writes from other
threads must neither fail nor undo a write another thread already reported."""

from __future__ import annotations

import threading

from engine.store import Store

SPEC = {"source": "bundled"}


def test_threads_reading_and_writing_one_store_lose_nothing(tmp_path):
    store = Store(tmp_path / "s.db")
    conv = store.create_conversation(SPEC, SPEC, {}, blind=False)
    turn = store.add_turn(conv, "p", blind=False, a_side="left")
    written: list[str] = []
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(60):
                list(store.db.query("SELECT id FROM replies WHERE turn_id=? LIMIT 5", [turn]))
                reply = store.add_reply(turn, "a" if n % 2 else "b", "left", f"t{n}-{i}", "stop", SPEC, {},
                                        {"seed": i}, {})
                written.append(reply)
                store.db["replies"].count_where("turn_id = ?", [turn])
        except BaseException as exc:  # noqa: BLE001 (collected and asserted below)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    fresh = Store(tmp_path / "s.db")
    assert fresh.integrity_ok()
    found = {r[0] for r in fresh.db.execute("SELECT id FROM replies")}
    assert set(written) == found and len(found) == 8 * 60
    fresh.close()
    store.close()
