"""What a researcher reads: model and adapter names (not a GGUF's internal name or a hex
id), self-vs-self votes explained, and an HTML report whose notes and axes are true."""

import csv
import json
import re

from engine.cli import main
from engine.results import compute, exports, report_html, svg
from engine.results.sample import add_rating

GGUF_NAME = "Smollm2 135M 8k Lc100K Mix1 Ep2"


def rate_pair(store, left, right, verdict="likely_left"):
    """left/right: (model_name, spec dict)"""
    conv = store.create_conversation(left[1], right[1], {}, blind=False)
    turn = store.add_turn(conv, "hi", blind=False, a_side="left")
    a = store.add_reply(turn, "a", "left", "hey", "stop", left[1], {"name": left[0], "backend": "llamacpp"}, {}, {})
    b = store.add_reply(turn, "b", "right", "Hello.", "stop", right[1], {"name": right[0], "backend": "llamacpp"},
                        {}, {})
    return store.rate(turn, a, b, verdict)


def an_adapter(store, tmp_path, kind="dpo", preset="default"):
    """A round and its adapter row as a finished round leaves them."""
    from engine.results.names import default_adapter_name
    from engine.store import new_id, now

    rid, aid = new_id(), new_id()
    store._insert("rounds", {"id": rid, "kind": kind, "status": "done", "config": "{}", "created_at": now()})
    folder = tmp_path / "adapters" / aid
    store._insert("adapters", {"id": aid, "name": default_adapter_name(store, rid, preset), "base_model": "bundled",
                               "peft_path": str(folder), "gguf_path": str(folder / "adapter.gguf"),
                               "round_id": rid, "usable": 1, "lineage": "{}", "created_at": now()})
    return aid, folder


def test_the_bundled_base_and_an_adapter_read_as_names(store, tmp_path, capsys):
    an_adapter(store, tmp_path)  # DPO round 1
    aid, folder = an_adapter(store, tmp_path)  # DPO round 2
    base = (GGUF_NAME, {"source": "bundled", "adapter": None})
    tuned = (GGUF_NAME, {"source": "bundled", "adapter": str(folder)})
    via_gguf = (GGUF_NAME, {"source": "bundled", "adapter": str(folder / "adapter.gguf")})
    rate_pair(store, tuned, base)
    rate_pair(store, base, via_gguf, "likely_right")
    res = compute(store, n_boot=10)
    pair = res["pairs"][0]
    assert (pair["a"], pair["b"], pair["n"]) == ("SmolLM2-135M-Instruct + DPO round 2 · default",
                                                 "SmolLM2-135M-Instruct", 2)
    html = report_html.render(res)
    assert "DPO round 2 · default" in html and GGUF_NAME not in html and aid not in html
    # renamed on the command line: every figure and export follows
    db = str(store.path)
    assert main(["adapters", "rename", aid[:8], "warm and brief", "--db", db]) == 0
    capsys.readouterr()
    assert main(["results", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "SmolLM2-135M-Instruct + warm and brief vs SmolLM2-135M-Instruct" in out
    exports.export_csv(store, tmp_path / "r.csv")
    with (tmp_path / "r.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["left_model"] for r in rows} == {"SmolLM2-135M-Instruct + warm and brief", "SmolLM2-135M-Instruct"}
    pairs = exports.preference_pairs(store, with_metadata=True)
    assert {p["chosen_model"] for p in pairs} == {"SmolLM2-135M-Instruct + warm and brief"}
    assert main(["adapters", "list", "--db", db, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [a["display_name"] for a in listed if a["id"] == aid] == ["warm and brief"]


def test_a_rename_that_would_merge_two_adapters_is_refused(store, tmp_path, capsys):
    first, _ = an_adapter(store, tmp_path)
    second, _ = an_adapter(store, tmp_path, kind="online", preset=None)
    assert store.db["adapters"].get(second)["name"] == "Online RL round 1 · custom"
    db = str(store.path)
    assert main(["adapters", "rename", first, "Online RL round 1 · custom", "--db", db]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already named" in err[0]
    assert main(["adapters", "rename", "nope", "x", "--db", db]) == 2
    assert main(["adapters", "rename", first, "  ", "--db", db]) == 2


def test_self_vs_self_votes_are_explained_in_hal_results(store, capsys):
    add_rating(store, "base", "base", "likely_left")
    add_rating(store, "A", "B", "tie")
    assert main(["results", "--db", str(store.path), "--bootstrap", "10"]) == 0
    out = capsys.readouterr().out
    assert "2 ratings" in out and "same model on both sides (SmolLM2-135M-Instruct)" in out
    res = compute(store, n_boot=10)
    assert res["self_votes"]["n"] == 1 and len(res["self_votes"]["rating_ids"]) == 1


def test_report_method_notes_state_the_resamples_used_without_field_names(store):
    for _ in range(3):
        add_rating(store, "A", "B", "likely_left")
        add_rating(store, "B", "C", "certainly_left")
    html = report_html.render(compute(store, n_boot=50))
    notes = " ".join(re.findall(r'<p class="method">(.*?)</p>', html))
    assert "50 resamples" in notes and "50 times" in notes
    assert "2000" not in notes and "1000 times" not in notes and "ci_bootstrap" not in notes


def _ticks(chart: str) -> list[float]:
    return [float(t) for t in re.findall(r'<text class="tick"[^>]*>([^<]+)</text>', chart)]


def test_chart_axes_have_round_labelled_ticks_and_a_labelled_reference():
    chart = svg.interval_chart([("A", 700.0, (606.4, 790.0)), ("B", 1300.0, (1210.0, 1393.3))],
                               586.4, 1413.3, ref=1000, value_fmt="{:.0f}", axis_label="score")
    ticks = _ticks(chart)
    assert len(ticks) >= 3 and all(t % 100 == 0 for t in ticks), ticks
    assert ticks[0] <= 606.4 and ticks[-1] >= 1393.3
    assert re.search(r'<text class="ref"[^>]*>1000', chart) and ">score<" in chart
    rate = svg.interval_chart([("A vs B", 0.62, (0.41, 0.8))], 0.0, 1.0, ref=0.5)
    assert _ticks(rate) == [0.0, 0.25, 0.5, 0.75, 1.0] or _ticks(rate) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    line = svg.line_chart({"A": [1000, 1003.7, 996.2], "B": [1000, 996.3, 1003.8]}, y_label="Elo")
    ticks = _ticks(line)
    assert len(ticks) >= 3 and all(abs(t * 2 - round(t * 2)) < 1e-9 for t in ticks), ticks


def test_the_engine_renames_an_adapter_and_refuses_a_taken_name(store, tmp_path):
    from engine.errors import BadRequest
    from engine.protocol import Message
    from engine.training import commands

    first, _ = an_adapter(store, tmp_path)
    second, _ = an_adapter(store, tmp_path)

    class E:
        pass
    engine = E()
    engine.store = store

    def call(content):
        return commands.adapter_rename(engine, Message(type="adapter.rename", id="c1", content=content), None)
    assert call({"id": first, "name": "warm"}) == {"id": first, "name": "warm"}
    import pytest

    with pytest.raises(BadRequest, match="already named"):
        call({"id": second, "name": "warm"})
