"""``hal store recover``: copy every row that can still be read out of a damaged store.

A store with garbage or zeroed pages is refused at open (``PRAGMA
quick_check``). This reads the damaged file read-only, table by table and row
by row (a chunk that fails is retried one rowid at a time, and rows that
cannot be read are counted and skipped), writes them into a new store with
the current schema, then keeps the damaged file beside it as
``<name>.damaged-<time>`` and puts the new one in its place. Nothing is ever
deleted.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

CHUNK = 500


def _readable_rows(old: sqlite3.Connection, table: str, columns: list[str]):
    """(rows, unreadable count) of one table, walking rowids in chunks."""
    cols = ", ".join(f'"{c}"' for c in columns)
    try:
        top = old.execute(f'SELECT max(rowid) FROM "{table}"').fetchone()[0] or 0
    except sqlite3.DatabaseError:
        top = None
    rows, bad = [], 0
    if top is None:  # the table's last page is unreadable: walk until a long gap of nothing
        top = 10_000_000
    start, empty_chunks = 1, 0
    while start <= top and empty_chunks < 200:
        end = start + CHUNK - 1
        try:
            chunk = old.execute(f'SELECT {cols} FROM "{table}" WHERE rowid BETWEEN ? AND ?', [start, end]).fetchall()
        except sqlite3.DatabaseError:
            chunk = []
            for rowid in range(start, end + 1):
                try:
                    chunk += old.execute(f'SELECT {cols} FROM "{table}" WHERE rowid=?', [rowid]).fetchall()
                except sqlite3.DatabaseError:
                    bad += 1
        empty_chunks = 0 if chunk else empty_chunks + 1
        rows += chunk
        start = end + 1
    return rows, bad


def recover(path: Path) -> dict:
    """Recover ``path`` in place (the damaged file is kept); returns counts per table."""
    from engine.store import Store

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no store at {path}")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    new_path = path.with_name(f"{path.name}.recovering-{stamp}")
    fresh = Store(new_path)  # the current schema, empty
    old = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    report = {"tables": {}, "damaged_copy": None, "store": str(path)}
    try:
        fresh.db.execute("PRAGMA foreign_keys=OFF")  # a row whose parent was lost is still kept
        for table in fresh.db.table_names():
            if table == "meta":
                continue
            columns = [c for c in fresh.db[table].columns_dict]
            try:
                old_cols = {r[1] for r in old.execute(f'PRAGMA table_info("{table}")').fetchall()}
            except sqlite3.DatabaseError:
                old_cols = set()
            shared = [c for c in columns if c in old_cols]
            if not shared:
                report["tables"][table] = {"recovered": 0, "unreadable": None}
                continue
            rows, bad = _readable_rows(old, table, shared)
            marks = ", ".join("?" for _ in shared)
            names = ", ".join(f'"{c}"' for c in shared)
            with fresh.db.conn:
                fresh.db.execute("BEGIN IMMEDIATE")
                fresh.db.conn.executemany(f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({marks})', rows)
            report["tables"][table] = {"recovered": len(rows), "unreadable": bad}
        fresh.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        old.close()
        fresh.close()
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    os.replace(path, kept)
    for suffix in ("-wal", "-shm"):
        side = Path(str(path) + suffix)
        if side.exists():
            os.replace(side, Path(str(kept) + suffix))
    os.replace(new_path, path)
    for suffix in ("-wal", "-shm"):
        side = Path(str(new_path) + suffix)
        if side.exists():
            side.unlink()
    report["damaged_copy"] = str(kept)
    return report


def cmd_recover(args) -> int:
    import json

    from engine import paths

    report = recover(Path(args.db) if args.db else paths.db_path())
    print(json.dumps(report, indent=None if args.json else 1))
    return 0


def register(sub) -> None:
    p = sub.add_parser("store", help="the studio store: recover a damaged one").add_subparsers(
        dest="store_command", required=True)
    r = p.add_parser("recover", help="copy every readable row of a damaged store into a new one "
                                     "(the damaged file is kept beside it)")
    r.add_argument("--db", help="the studio store (default: the user's data directory)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_recover)
