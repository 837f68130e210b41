"""Ratings in and out: import (dedupe, partial, foreign), exports, browser edits, CLI."""

import csv
import json

import pytest

from engine.cli import main
from engine.results import browser, compute, exports, report_html
from engine.results.data import Filters
from engine.results.importer import ImportFormatError, import_file
from engine.results.sample import add_rating


def lines(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def counts(store):
    return {t: store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("conversations", "turns", "replies", "ratings")}


MIN = {"model_left": "HAL", "model_right": "Base", "verdict": "likely_left", "prompt": "hi",
       "left_text": "hey :)", "right_text": "Hello. How may I assist you?"}


def test_minimal_import_dedupes_and_reports_what_it_skipped(store, tmp_path):
    f = lines(tmp_path / "study.jsonl", [
        MIN, MIN,                                                       # two raters, same pair: two votes
        {**MIN, "verdict": "Certainly Right", "rated_at": "2025-01-02T10:00:00Z", "prompt_set": "p1"},
        {**MIN, "verdict": "meh"},
        "{not json",
        {"model_left": "HAL", "verdict": "tie"},
        {**MIN, "rated_at": "last tuesday"},
        {**MIN, "id": "s-7", "blind": False, "colour": "red"},
        {**MIN, "id": "s-7"},
    ])
    report = import_file(store, f)
    assert report["format"] == "minimal" and report["imported"] == 5
    reasons = {s["line"]: s["reason"] for s in report["skipped"]}
    assert "unknown verdict 'meh'" in reasons[4] and reasons[5] == "not valid JSON"
    assert "model_right" in reasons[6] and 7 not in reasons and "repeats" in reasons[9]
    # a time it cannot read keeps the vote (without its time) and says so
    assert report["kept_without_time"] == [
        {"line": 7, "reason": "'rated_at' 'last tuesday' is not a time this studio can read"}]
    assert "colour" in report["notes"][0]
    before = counts(store)
    again = import_file(store, f)  # the same file again adds nothing
    assert again["imported"] == 0 and again["already_stored"] == 5 and counts(store) == before
    res = compute(store, n_boot=10)
    pair = res["pairs"][0]
    # HAL's side: likely (0.75) x4 and certainly right = Base (0) -> (0.75·4 + 0)/5 = 0.6
    assert (pair["a"], pair["b"]) == ("Base", "HAL") and pair["win_rate"] == pytest.approx(1 - 0.6)
    assert compute(store, Filters(prompt_set="p1"), n_boot=10)["n_ratings"] == 1
    # dates: the one vote rated 2025-01-02 (a date covers its whole day); the rest carry the import time
    assert compute(store, Filters(until="2025-01-02"), n_boot=10)["n_ratings"] == 1
    assert compute(store, Filters(since="2025-01-03"), n_boot=10)["n_ratings"] == 4
    assert compute(store, Filters(since="2025-01-02T10:00", until="2025-01-02T10:00"), n_boot=10)["n_ratings"] == 1
    assert compute(store, Filters(blind=False), n_boot=10)["n_ratings"] == 1
    origin = store.db.execute("SELECT source, line FROM rating_origins ORDER BY line").fetchall()
    assert origin[0] == ("study.jsonl", 1)


def test_foreign_and_other_schema_files_are_refused_clearly(store, tmp_path):
    add_rating(store, "A", "B", "tie")
    before = counts(store)
    cases = {
        "data.csv": ("rating_id,verdict\nx,tie\n", "looks like CSV"),
        "other.jsonl": ('{"format": "chatbot-arena-battles", "v": 2}\n', "not a HAL ratings bundle"),
        "random.jsonl": ('{"question": "q", "answer": "a"}\n', "neither a HAL ratings bundle"),
        "newer.jsonl": ('{"format": "hal-ratings-bundle", "bundle_schema": 99}\n', "newer studio"),
        "older.jsonl": ('{"format": "hal-ratings-bundle", "bundle_schema": 0}\n', "older"),
        "headless.jsonl": ('{"kind": "rating", "row": {"id": "x"}}\n', "no header"),
        "empty.jsonl": ("\n\n", "empty"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ImportFormatError, match=message):
            import_file(store, tmp_path / name)
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ImportFormatError, match="not a text file"):
        import_file(store, tmp_path / "bin.jsonl")
    assert counts(store) == before


def test_bundle_round_trip_merges_without_duplicates(store, tmp_path):
    from engine.store import Store

    ids = [add_rating(store, "A", "B + v1", v) for v in ("certainly_left", "likely_right", "tie")]
    r0 = store.db["ratings"].get(ids[0])
    browser.record_repeat(store, ids[0], r0["right_reply_id"], r0["left_reply_id"], "certainly_right")
    out = tmp_path / "b.jsonl"
    assert exports.export_bundle(store, out)["rating"] == 3
    other = Store(tmp_path / "other.sqlite3")
    mine = add_rating(other, "C", "D", "likely_left")
    mine_row = other.db["ratings"].get(mine)
    report = import_file(other, out)
    assert report["imported"] == 3 and report["skipped"] == []
    assert other.db["ratings"].get(mine) == mine_row  # nothing stored changes
    again = import_file(other, out)
    assert again["imported"] == 0 and again["already_stored"] == 3
    assert {s["reason"] for s in again["skipped"]} == {"rating already stored (duplicate)"}
    assert other.db.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 4
    a = compute(store, n_boot=10)
    b = compute(other, Filters(models=("B + v1",)), n_boot=10)
    assert a["pairs"][0]["win_rate"] == b["pairs"][0]["win_rate"]
    assert b["consistency"]["n"] == 1
    browser.delete_rating(other, ids[1])  # a deletion here is respected by later imports
    third = import_file(other, out)
    assert third["imported"] == 0 and any("deleted in this studio" in s["reason"] for s in third["skipped"])
    other.close()


def test_partial_bundle_skips_ratings_with_missing_replies_or_a_rated_turn(store, tmp_path):
    rid = add_rating(store, "A", "B", "tie")
    out = tmp_path / "b.jsonl"
    exports.export_bundle(store, out)
    text = out.read_text().splitlines()
    rows = [json.loads(x) for x in text[1:]]
    rating = next(r for r in rows if r["kind"] == "rating")["row"]
    broken = {**rating, "id": "r-broken", "left_reply_id": "gone"}
    second = {**rating, "id": "r-second"}  # same turn, another rating
    lines(out, text + [json.dumps({"kind": "rating", "row": broken}),
                       json.dumps({"kind": "rating", "row": second}), "garbage", '{"kind": "vote"}'])
    report = import_file(store, out)
    reasons = [s["reason"] for s in report["skipped"]]
    assert report["imported"] == 0
    assert any("left_reply_id='gone'" in r and "neither in the file nor stored" in r for r in reasons)
    assert any("already has another rating" in r for r in reasons)
    assert "not valid JSON" in reasons and any("not a bundle row" in r for r in reasons)
    assert store.db.execute("SELECT id FROM ratings").fetchall() == [(rid,)]


def test_csv_neutralises_formula_like_cells(store, tmp_path):
    add_rating(store, "=cmd|' /C calc'!A0", "B", "likely_left", left_text="+1 yes", right_text="-no",
               prompt="@SUM(A1:A2)")
    rid = store.db.execute("SELECT id FROM ratings").fetchone()[0]
    browser.edit_note(store, rid, '=HYPERLINK("http://x")')
    out = tmp_path / "r.csv"
    assert exports.export_csv(store, out) == 1
    with out.open(encoding="utf-8", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert row["left_model"].startswith("'=") and row["left_text"] == "'+1 yes"
    assert row["right_text"] == "'-no" and row["prompt"] == "'@SUM(A1:A2)"
    assert row["note"] == "'=HYPERLINK(\"http://x\")"
    assert row["right_model"] == "B" and row["verdict"] == "likely_left" and row["left_score"] == "0.75"
    assert exports.neutralise("\tx") == "'\tx" and exports.neutralise(-1) == -1


def test_trl_pairs_and_datasets_folder(store, tmp_path):
    conv_sys = add_rating(store, "A", "B", "likely_right", left_text="no", right_text="yes", prompt="q?")
    add_rating(store, "A", "B", "tie")
    add_rating(store, "A", "B", "both_bad")
    turn = store.db["ratings"].get(conv_sys)["turn_id"]
    conv = store.db["turns"].get(turn)["conversation_id"]
    store.db.execute("UPDATE conversations SET sampling=? WHERE id=?",
                     [json.dumps({"system_prompt": "be casual"}), conv])
    rows = exports.preference_pairs(store)
    assert rows == [{"prompt": [{"role": "system", "content": "be casual"}, {"role": "user", "content": "q?"}],
                     "chosen": [{"role": "assistant", "content": "yes"}],
                     "rejected": [{"role": "assistant", "content": "no"}]}]
    meta = exports.preference_pairs(store, with_metadata=True)[0]
    assert meta["rating_id"] == conv_sys and meta["strength"] == "likely" and meta["chosen_model"] == "B"
    assert exports.export_jsonl(store, tmp_path / "p.jsonl") == 1
    assert json.loads((tmp_path / "p.jsonl").read_text())["chosen"][0]["content"] == "yes"
    import datasets

    exports.export_datasets(store, tmp_path / "ds")
    ds = datasets.load_from_disk(str(tmp_path / "ds"))
    assert ds.column_names == ["prompt", "chosen", "rejected"] and len(ds) == 1


def test_delete_keeps_history_and_can_be_restored(store):
    keep = add_rating(store, "A", "B", "certainly_left")
    gone = add_rating(store, "A", "B", "certainly_right", note="oops")
    browser.edit_note(store, gone, "misclick")
    browser.delete_rating(store, gone, reason="misclick")
    assert [r["rating_id"] for r in browser.list_rated(store)] == [keep]
    hist = {r["action"]: json.loads(r["snapshot"]) for r in store.db["rating_history"].rows_where("rating_id=?", [gone])}
    assert hist["note"]["note"] == "oops" and hist["deleted"]["note"] == "misclick"
    assert hist["deleted"]["delete_reason"] == "misclick" and hist["deleted"]["verdict"] == "certainly_right"
    assert compute(store, n_boot=10)["pairs"][0]["win_rate"] == 1.0
    with pytest.raises(browser.RatingNotFound):
        browser.delete_rating(store, gone)
    assert [d["id"] for d in browser.deleted_ratings(store)] == [gone]
    browser.restore_rating(store, gone)
    assert compute(store, n_boot=10)["pairs"][0]["win_rate"] == 0.5


def test_browser_rows_carry_both_replies_sides_and_scores(store):
    rid = add_rating(store, "A", "B + v2", "likely_left", left_text="L", right_text="R", prompt="p")
    reply = store.db["ratings"].get(rid)["left_reply_id"]
    store.db.execute("INSERT INTO scores (id, reply_id, judge, score, traits, created_at) "
                     "VALUES ('s', ?, 'lexical', 3.5, '{}', '2025')", [reply])
    row = browser.list_rated(store)[0]
    assert row["left"] == {"reply_id": reply, "model": "A", "text": "L", "scores": {"lexical": 3.5}}
    assert row["right"]["model"] == "B + v2" and row["right"]["scores"] == {}
    assert (row["verdict"], row["prompt"], row["blind"]) == ("likely_left", "p", True)


def test_ratings_with_a_missing_reply_are_reported(store):
    rid = add_rating(store, "A", "B", "tie")
    store.db.execute("PRAGMA foreign_keys=OFF")
    store.db.execute("DELETE FROM replies WHERE id=?", [store.db["ratings"].get(rid)["left_reply_id"]])
    res = compute(store, n_boot=10)
    assert res["n_ratings"] == 0 and res["problems"] == [
        {"rating_id": rid, "reason": "refers to a reply that is not in the store"}]


def test_html_report_is_standalone_and_escaped(store, tmp_path):
    add_rating(store, "<script>alert(1)</script>", "B", "likely_left")
    add_rating(store, "B", "C", "certainly_left")
    path = report_html.write(compute(store, n_boot=20), tmp_path / "r.html")
    html = path.read_text()
    assert "<svg" in html and "How this is computed" in html and "<script>" not in html
    assert "&lt;script&gt;" in html and "http" not in html.replace("http://www.w3.org/2000/svg", "")


def test_cli_results_json_and_exports(store, tmp_path, capsys):
    add_rating(store, "A", "B + v1", "likely_right")
    add_rating(store, "B + v1", "A", "certainly_left")
    db = str(store.path)
    assert main(["results", "--db", db, "--json", "--bootstrap", "20", "--pair", "B + v1:A"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"pairs", "bradley_terry", "position_bias", "consistency", "elo", "both_bad", "leaks",
            "score_agreement", "methods"} <= set(res)
    p = res["pairs"][0]
    assert (p["a"], p["b"], p["n"], p["win_rate"]) == ("B + v1", "A", 2, 0.875)  # (0.75 + 1)/2
    assert {"model", "score", "ci"} <= set(res["bradley_terry"][0])
    for fmt in ("jsonl", "csv", "html", "bundle"):
        assert main(["ratings", "export", "--db", db, "--format", fmt, str(tmp_path / f"o.{fmt}"),
                     "--bootstrap", "10"]) == 0
    capsys.readouterr()
    (tmp_path / "x.txt").write_text("hello\n")
    assert main(["ratings", "import", "--db", db, str(tmp_path / "x.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not JSONL" in err[0]
    assert main(["ratings", "import", "--db", db, str(tmp_path / "o.bundle")]) == 0
    assert "2 already stored" in capsys.readouterr().out
    assert main(["results", "--db", db, "--pair", "nonsense"]) == 2


def test_a_hand_written_study_imports_and_reads_back_as_written(store, tmp_path, capsys):
    """A published-study-like file: counts per pairing chosen so the win rates are known.
    HAL vs Base: 10 certainly HAL, 6 likely HAL, 4 ties, 3 likely Base, 2 certainly Base, 1 both bad
      -> (10 + 6·0.75 + 4·0.5 + 3·0.25 + 0)/25 = 17.25/25 = 0.69
    HAL vs Big: 5 certainly HAL, 5 certainly Big -> 0.5 ; Big vs Base: 8 likely Big, 2 ties -> 0.7"""
    plan = [("HAL", "Base", "certainly", 10), ("HAL", "Base", "likely", 6), ("HAL", "Base", "tie", 4),
            ("Base", "HAL", "likely", 3), ("Base", "HAL", "certainly", 2), ("HAL", "Base", "both_bad", 1),
            ("HAL", "Big", "certainly", 5), ("Big", "HAL", "certainly", 5),
            ("Big", "Base", "likely", 8), ("Big", "Base", "tie", 2)]
    rows, k = [], 0
    for winner, loser, how, count in plan:
        for _ in range(count):
            k += 1
            left_is_winner = k % 2 == 0  # alternate sides
            left, right = (winner, loser) if left_is_winner else (loser, winner)
            verdict = how if how in ("tie", "both_bad") else f"{how}_{'left' if left_is_winner else 'right'}"
            rows.append({"model_left": left, "model_right": right, "verdict": verdict, "blind": True,
                         "prompt": "p", "left_text": "a", "right_text": "b",
                         "rated_at": f"2025-02-01T10:{k // 60:02d}:{k % 60:02d}Z"})
    lines(tmp_path / "study.jsonl", rows)
    assert main(["ratings", "import", "--db", str(store.path), str(tmp_path / "study.jsonl")]) == 0
    capsys.readouterr()
    assert main(["results", "--db", str(store.path), "--json", "--bootstrap", "50",
                 "--with-trajectory"]) == 0
    res = json.loads(capsys.readouterr().out)
    rate = {frozenset((p["a"], p["b"])): (p["a"], p["win_rate"], p["n"]) for p in res["pairs"]}
    a, r, n = rate[frozenset(("HAL", "Base"))]
    assert n == 25 and (r if a == "HAL" else 1 - r) == pytest.approx(0.69)
    assert res["both_bad"]["n"] == 1
    a, r, n = rate[frozenset(("Big", "Base"))]
    assert n == 10 and (r if a == "Big" else 1 - r) == pytest.approx(0.7)
    assert rate[frozenset(("HAL", "Big"))][1] == pytest.approx(0.5)
    # online Elo replayed independently in file order (K = 4)
    elo = {"HAL": 1000.0, "Base": 1000.0, "Big": 1000.0}
    score = {"certainly_left": 1, "likely_left": 0.75, "tie": 0.5, "likely_right": 0.25, "certainly_right": 0}
    for row in rows:
        if row["verdict"] == "both_bad":
            continue
        l, rr = row["model_left"], row["model_right"]
        e = 1 / (1 + 10 ** ((elo[rr] - elo[l]) / 400))
        d = 4 * (score[row["verdict"]] - e)
        elo[l], elo[rr] = elo[l] + d, elo[rr] - d
    got = {m["model"]: m["score"] for m in res["elo"]["models"]}
    assert got == pytest.approx({m: round(v, 1) for m, v in elo.items()}, abs=0.06)
    assert len(res["elo"]["trajectory"]) == 45  # 46 votes less the one "both bad"


def test_bundle_keeps_each_raters_rating_of_the_same_turn(store, tmp_path):
    """An LLM rater's (or a colleague's) rating sits beside the researcher's on one turn;
    a bundle carries both, with their raters, and a second one by the same rater is refused."""
    from engine.store import Store

    rid = add_rating(store, "A", "B + v1", "likely_left")
    r = store.db["ratings"].get(rid)
    llm, _ = store.rate_as("llm:qwen", r["turn_id"], r["left_reply_id"], r["right_reply_id"], "certainly_right")
    out = tmp_path / "b.jsonl"
    assert exports.export_bundle(store, out)["rating"] == 2
    other = Store(tmp_path / "other.sqlite3")
    report = import_file(other, out)
    assert report["imported"] == 2 and report["skipped"] == []
    assert other.db["ratings"].get(llm)["rater"] == "llm:qwen" and other.db["ratings"].get(rid)["rater"] is None
    assert compute(other, Filters(rater="llm:qwen"), n_boot=10)["n_ratings"] == 1
    assert compute(other, Filters(rater="me"), n_boot=10)["n_ratings"] == 1
    text = out.read_text().splitlines()
    row = json.loads(text[-1])["row"] if json.loads(text[-1])["kind"] == "rating" else None
    row = row or next(json.loads(x)["row"] for x in text[1:] if json.loads(x)["kind"] == "rating")
    lines(out, text[:1] + [json.dumps({"kind": "rating", "row": {**row, "id": "r-again"}})])
    again = import_file(other, out)
    assert again["imported"] == 0 and any("already has another rating" in s["reason"] for s in again["skipped"])
    other.close()


def test_a_deleted_rating_is_restorable_beside_another_raters(store):
    rid = add_rating(store, "A", "B", "likely_left")
    r = store.db["ratings"].get(rid)
    store.rate_as("llm:qwen", r["turn_id"], r["left_reply_id"], r["right_reply_id"], "tie")
    browser.delete_rating(store, rid)
    assert [d["id"] for d in browser.deleted_ratings(store)] == [rid]
    browser.restore_rating(store, rid)
    assert store.rating_for_turn(r["turn_id"])["id"] == rid
    assert store.db.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 2


def test_recheck_reshows_only_the_researchers_own_ratings(store):
    ids = [add_rating(store, "A", "B", "likely_left", prompt=f"p{i}") for i in range(4)]
    for rid in ids[:3]:  # an LLM rated three of the same turns, and a fourth pair of its own
        r = store.db["ratings"].get(rid)
        store.rate_as("llm:qwen", r["turn_id"], r["left_reply_id"], r["right_reply_id"], "tie")
    items = browser.pick_for_recheck(store, share=1.0, seed=1)
    assert sorted(i["rating_id"] for i in items) == sorted(ids)
