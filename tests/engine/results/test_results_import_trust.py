"""Hostile or odd ratings files: every bad line is reported and the rest goes on;
whatever cannot go on ends with one line; nothing already in the store breaks
reading, and nothing is half-written. Also the CSV form researchers keep."""

import json
import os
import sqlite3

import pytest

from engine.cli import main
from engine.results import compute, exports
from engine.results.browser import list_rated
from engine.results.importer import ImportFormatError, import_file
from engine.results.sample import add_rating

MIN = {"model_left": "HAL", "model_right": "Base", "verdict": "likely_left", "prompt": "hi",
       "left_text": "hey :)", "right_text": "Hello. How may I assist you?"}


def write_lines(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def n_ratings(store):
    return store.db.execute("SELECT COUNT(*) FROM ratings").fetchone()[0]


def poisoned_bundle(store, tmp_path, spec='[1,2]', name=""):
    add_rating(store, "A", "B", "likely_left")
    out = tmp_path / "b.jsonl"
    exports.export_bundle(store, out)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    for r in rows[1:]:
        if r["kind"] == "reply" and r["row"]["side"] == "left":
            r["row"]["model_spec"], r["row"]["model_name"] = spec, name
    write_lines(out, rows)
    return out


# -- item 3: a poisoned bundle row --------------------------------------------------------
@pytest.mark.parametrize("spec", ["[1,2]", "not json", '{"source": 5}', "null"])
def test_poisoned_bundle_row_is_refused_on_import_with_its_line(store, tmp_path, spec):
    from engine.store import Store

    out = poisoned_bundle(store, tmp_path, spec)
    other = Store(tmp_path / "other.sqlite3")
    report = import_file(other, out)
    assert report["imported"] == 0
    bad = [s for s in report["skipped"] if "model_spec" in s["reason"]]
    assert len(bad) == 1 and bad[0]["line"] > 1
    # the rating that needed that reply is reported too, and nothing half-made is left
    assert n_ratings(other) == 0
    assert other.db.execute("SELECT COUNT(*) FROM replies").fetchone()[0] == 0
    other.close()


def test_a_bad_row_already_in_the_store_is_reported_and_skipped_everywhere(store, tmp_path, capsys):
    good = add_rating(store, "A", "B", "likely_left")
    bad = add_rating(store, "A", "C", "tie")
    reply = store.db["ratings"].get(bad)["left_reply_id"]
    store.db.execute("UPDATE replies SET model_spec='[1,2]', model_name='' WHERE id=?", [reply])
    res = compute(store, n_boot=10)
    assert res["n_ratings"] == 1 and [p["rating_id"] for p in res["problems"]] == [bad]
    assert "model_spec" in res["problems"][0]["reason"]
    assert [r["rating_id"] for r in list_rated(store)] == [good]
    db = str(store.path)
    assert main(["results", "--db", db]) == 0
    captured = capsys.readouterr()
    assert "left out" in captured.out + captured.err and "Traceback" not in captured.err
    assert main(["ratings", "list", "--db", db]) == 0
    for fmt in ("jsonl", "csv", "html", "bundle", "datasets"):
        assert main(["ratings", "export", "--db", db, "--format", fmt, str(tmp_path / f"o.{fmt}"),
                     "--bootstrap", "10"]) == 0, fmt
    capsys.readouterr()
    store.db.execute("UPDATE replies SET model_spec='not json' WHERE id=?", [reply])
    assert compute(store, n_boot=10)["n_ratings"] == 1
    assert main(["results", "--db", db, "--json", "--bootstrap", "10"]) == 0


# -- one clear line, nothing half-written ---------------------------------------------------
def test_disk_full_mid_import_stops_with_one_line_and_no_half_vote(store, tmp_path, monkeypatch, capsys):
    from engine.results import importer

    f = write_lines(tmp_path / "s.jsonl", [{**MIN, "id": f"v{i}"} for i in range(40)])
    real = importer._put
    calls = {"n": 0}

    def full(st, table, row):
        calls["n"] += 1
        if calls["n"] == 6 * 12 + 3:  # in the middle of the 13th vote (6 rows a vote)
            raise sqlite3.OperationalError("database or disk is full")
        return real(st, table, row)

    monkeypatch.setattr(importer, "_put", full)
    monkeypatch.setattr(importer, "CHUNK_SECONDS", 0.0)  # commit after every vote
    monkeypatch.setattr(importer, "PAUSE_SECONDS", 0.0)
    assert main(["ratings", "import", "--db", str(store.path), str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "disk is full" in err[0] and "line 13" in err[0] and "12 ratings" in err[0]
    assert n_ratings(store) == 12
    # every stored vote is whole: each rating has its two replies, turn and conversation
    for table, n in (("conversations", None), ("turns", None), ("replies", None)):
        count = store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        assert count == n_ratings(store) * (2 if table == "replies" else 1)
    monkeypatch.setattr(importer, "_put", real)
    assert main(["ratings", "import", "--db", str(store.path), str(f)]) == 0  # adds the rest
    assert n_ratings(store) == 40


def test_disk_full_in_a_bundle_gives_one_line_not_hundreds_of_wrong_reasons(store, tmp_path, monkeypatch,
                                                                             capsys):
    from engine.results import importer
    from engine.store import Store

    for _ in range(5):
        add_rating(store, "A", "B", "likely_left")
    out = tmp_path / "b.jsonl"
    exports.export_bundle(store, out)
    other = Store(tmp_path / "o.sqlite3")
    real, calls = importer._put, {"n": 0}

    def full(st, table, row):
        calls["n"] += 1
        if calls["n"] == 8:
            raise sqlite3.OperationalError("database or disk is full")
        return real(st, table, row)

    monkeypatch.setattr(importer, "_put", full)
    assert main(["ratings", "import", "--db", str(other.path), str(out)]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and "disk is full" in captured.err
    assert "neither in the file" not in captured.out + captured.err
    monkeypatch.setattr(importer, "_put", real)
    assert main(["ratings", "import", "--db", str(other.path), str(out)]) == 0
    assert n_ratings(other) == 5
    other.close()


def test_read_only_store_refuses_the_import_in_one_line(store, tmp_path, capsys):
    f = write_lines(tmp_path / "s.jsonl", [MIN])
    store.db.execute("PRAGMA query_only=1")  # as an immutable file behaves: every write refused
    with pytest.raises(ValueError, match="read-only"):
        import_file(store, f)
    store.db.execute("PRAGMA query_only=0")
    assert n_ratings(store) == 0


def test_immutable_store_file_refuses_the_import_in_one_line(tmp_path, capsys):
    import shutil
    import subprocess

    from engine.store import Store

    db = tmp_path / "ro.sqlite3"
    s = Store(db)
    add_rating(s, "A", "B", "tie")
    s.close()
    f = write_lines(tmp_path / "s.jsonl", [MIN])
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(db)]).returncode:
        pytest.skip("chattr +i is not available here")
    try:
        code = main(["ratings", "import", "--db", str(db), str(f)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "read-only" in err[0], err
        assert main(["results", "--db", str(db)]) == 0  # reading still works
    finally:
        subprocess.run(["chattr", "-i", str(db)])


@pytest.mark.parametrize("when", ["0001-01-01T00:30:00+05:00", "9999-12-31T23:30:00-05:00",
                                  "last tuesday", "2025-13-45"])
def test_a_time_it_cannot_read_keeps_the_vote_without_it_and_says_so(store, tmp_path, when):
    f = write_lines(tmp_path / "s.jsonl", [{**MIN, "rated_at": when}, MIN])
    report = import_file(store, f)
    assert report["imported"] == 2 and report["skipped"] == []
    assert [w["line"] for w in report["kept_without_time"]] == [1]
    assert when in report["kept_without_time"][0]["reason"]


def test_deep_json_and_list_ids_are_reported_per_line(store, tmp_path, capsys):
    deep = "[" * 100_000 + "]" * 100_000
    f = write_lines(tmp_path / "s.jsonl", [MIN, deep, {**MIN, "id": [1, 2]}, {**MIN, "id": "ok"}])
    report = import_file(store, f)
    assert report["imported"] == 2
    reasons = {s["line"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {2, 3} and "nest" in reasons[2] and "'id'" in reasons[3]
    # bundle rows whose id is a list
    add_rating(store, "A", "B", "tie")
    out = tmp_path / "b.jsonl"
    exports.export_bundle(store, out)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    rows.append({"kind": "rating", "row": {**rows[-1]["row"], "id": ["x"]}})
    rows.append(deep)
    write_lines(out, rows)
    assert main(["ratings", "import", "--db", str(store.path), str(out), "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert {s["line"] for s in report["skipped"] if "duplicate" not in s["reason"]} == {len(rows) - 1, len(rows)}


def test_dev_zero_and_huge_lines_are_capped(store, tmp_path, monkeypatch, capsys):
    from engine.results import importer

    if os.path.exists("/dev/zero"):
        assert main(["ratings", "import", "--db", str(store.path), "/dev/zero"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "regular file" in err[0]
    monkeypatch.setattr(importer, "MAX_LINE_BYTES", 1000)
    f = write_lines(tmp_path / "s.jsonl", [MIN, {**MIN, "left_text": "x" * 5000}, {**MIN, "id": "2"}])
    report = import_file(store, f)
    assert report["imported"] == 2 and "longer than" in report["skipped"][0]["reason"]
    monkeypatch.setattr(importer, "MAX_FILE_BYTES", 100)
    with pytest.raises(ImportFormatError, match="larger than"):
        import_file(store, f)


# -- issue 10: CSV with A/B verdicts, exit 3, self-vs-self ---------------------------------
CSV = """model_a,model_b,verdict,conversation_a,conversation_b,rated_at,rater
HAL,Base,Certainly A,"user: hi
assistant: hey!","user: hi
assistant: Hello. How can I help?",2025-03-01T10:00:00Z,r1
HAL,Base,Likely B,yo,Greetings.,2025-03-01T10:01:00Z,r1
Base,HAL,Tie,a,b,yesterday-ish,r2
Base,HAL,Both bad,a,b,,r2
HAL,Base,Maybe A,a,b,,r2
HAL,HAL,Likely A,a,b,,r3
"""


def test_csv_with_ab_verdicts_imports_reports_and_exits_3(store, tmp_path, capsys):
    f = tmp_path / "study.csv"
    f.write_text(CSV)
    code = main(["ratings", "import", "--db", str(store.path), str(f), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 3 and report["format"] == "csv" and report["imported"] == 5
    assert [s["line"] for s in report["skipped"]] == [8] and "Maybe A" in report["skipped"][0]["reason"]
    assert [k["line"] for k in report["kept_without_time"]] == [6]
    assert [s["line"] for s in report["self_votes"]] == [9]
    verdicts = dict(store.db.execute("SELECT o.line, r.verdict FROM ratings r JOIN rating_origins o "
                                     "ON o.rating_id = r.id").fetchall())
    assert verdicts == {2: "certainly_left", 5: "likely_right", 6: "tie", 7: "both_bad", 9: "likely_left"}
    texts = store.db.execute("SELECT r.text FROM replies r JOIN ratings g ON g.left_reply_id = r.id "
                             "JOIN rating_origins o ON o.rating_id = g.id WHERE o.line = 2").fetchone()
    assert texts[0] == "user: hi\nassistant: hey!"
    again = main(["ratings", "import", "--db", str(store.path), str(f)])
    out = capsys.readouterr().out
    assert again == 3 and "already stored" in out and "same model on both sides" in out
    assert n_ratings(store) == 5


def test_csv_header_without_the_needed_columns_is_refused(store, tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("rating_id,verdict\nx,tie\n")
    with pytest.raises(ImportFormatError, match="model_a"):
        import_file(store, f)


def test_a_clean_import_exits_0_and_duplicates_alone_do_not_make_it_3(store, tmp_path, capsys):
    f = write_lines(tmp_path / "s.jsonl", [MIN])
    assert main(["ratings", "import", "--db", str(store.path), str(f)]) == 0
    assert main(["ratings", "import", "--db", str(store.path), str(f)]) == 0
    f2 = write_lines(tmp_path / "t.jsonl", [MIN, "{oops"])
    assert main(["ratings", "import", "--db", str(store.path), str(f2)]) == 3
