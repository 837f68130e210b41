"""``hal score``, ``hal fit``, ``hal distill`` and ``hal bench score`` speak one JSON object per line."""

from __future__ import annotations

import json

import pytest

from engine.scoring.cli import main

from .helpers import FORMAL, SLANGY, turing_row, write_csv


def run(capsys, *argv):
    rc = main(list(argv))
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    return rc, lines


@pytest.fixture
def turing(tmp_path):
    rows = []
    for g in range(24):
        human = "A" if g % 2 else "B"
        a, b = (SLANGY, FORMAL) if human == "A" else (FORMAL, SLANGY)
        rows.append(turing_row(100 + g, human, a[g % 2:], b[g % 3:]))
    rows[3]["conversation_B_transcript"] = "I: anyone?"
    return write_csv(tmp_path / "games.csv", rows)


def test_score_lines(capsys, turing):
    rc, lines = run(capsys, "score", str(turing), "--judge", "lexical", "--json")
    assert rc == 3  # one side could not be rated
    errors = [x for x in lines if "error" in x]
    assert [x["id"] for x in errors] == ["103-B"] and "no witness" in errors[0]["error"]
    scored = [x for x in lines if "error" not in x]
    assert len(scored) == 47
    first = scored[0]
    assert first["id"] == "100-A" and first["label"] in ("human", "ai")
    assert {"id", "label", "score", "probability", "traits", "questionnaire", "weights", "missing"} <= set(first)
    # one policy: the shipped weights fitted on the lexical judge's own ratings
    assert first["questionnaire"] == "hal32@1" and first["weights"] == "lexical_turing@1"
    assert first["traits"]["10"] is None and 1 <= first["traits"]["3"] <= 5
    assert 0 < first["probability"] < 1


def test_score_says_on_stderr_when_the_weights_are_not_the_judges_own(capsys, turing):
    main(["score", str(turing), "--judge", "lexical", "--json"])
    err = capsys.readouterr().err
    assert "lexical_turing@1" in err and "Note" not in err
    main(["score", str(turing), "--judge", "lexical", "--weights", "hal16_published", "--json"])
    err = capsys.readouterr().err
    assert "fitted on gpt-5 ratings, not on lexical" in err


def test_fit_json_names_the_saved_weights_and_score_takes_its_output_file(capsys, turing, tmp_path):
    rc, lines = run(capsys, "fit", str(turing), "--judge", "lexical", "--folds", "4", "--json")
    report = lines[-1]
    assert rc == 0 and report["saved_id"] == "fit-lexical"
    assert report["saved_path"].endswith("fit-lexical@1.json")
    assert json.loads(open(report["saved_path"]).read())["id"] == "fit-lexical"
    out = tmp_path / "fit.json"
    out.write_text(json.dumps(report))
    rc, lines = run(capsys, "score", str(turing), "--judge", "lexical", "--weights", str(out), "--json")
    assert [x["weights"] for x in lines if "error" not in x][0] == "fit-lexical@1"
    assert "Note" not in capsys.readouterr().err


def test_score_with_precomputed_and_other_weights(capsys, turing):
    rc, lines = run(capsys, "score", str(turing), "--judge", "precomputed", "--questionnaire", "hal16", "--json")
    scored = [x for x in lines if "error" not in x]
    assert scored and all(sorted(map(int, x["traits"])) == sorted(map(int, scored[0]["traits"])) for x in scored)
    assert scored[0]["missing"] == []


def test_fit_precomputed_and_select(capsys, turing):
    rc, lines = run(capsys, "fit", str(turing), "--precomputed", "--folds", "4", "--json")
    report = lines[-1]
    assert rc == 0
    assert {"cv_accuracy", "cv_std", "pairwise_accuracy", "weights", "bias", "n", "weights_sd",
            "saved_weights"} <= set(report)
    assert report["saved_weights"] == "fit-precomputed@1" and report["n"] == 47
    rc, lines = run(capsys, "fit", str(turing), "--judge", "lexical", "--select", "3", "--penalty", "l2",
                    "--folds", "4", "--repeats", "2", "--no-save", "--json")
    assert len(lines[-1]["weights"]) == 3 and "saved_weights" not in lines[-1]


def test_fit_heldout_lexical(capsys, turing):
    rc, lines = run(capsys, "fit", str(turing), "--judge", "lexical", "--heldout", "--outer-folds", "3", "--json")
    assert {"heldout_accuracy", "heldout_pairwise_accuracy", "accuracy_by_source_label"} <= set(lines[-1])


def test_distill_then_score(capsys, turing):
    rc, lines = run(capsys, "distill", str(turing), "--folds", "3", "--save-as", "tiny", "--json")
    assert rc == 0 and lines[-1]["model"] == "tiny" and "heldout" in lines[-1]
    rc, lines = run(capsys, "score", str(turing), "--judge", "distilled", "--json")
    assert any(x.get("judge") == "distilled:tiny" for x in lines)


def test_unavailable_judge_is_one_clear_error(capsys, turing):
    rc = main(["score", str(turing), "--judge", "api", "--json"])  # no endpoint given
    captured = capsys.readouterr()
    assert rc == 2
    assert json.loads(captured.out)["error"]["kind"] == "judge_unavailable"
    assert "base URL" in captured.err


def test_bench_score(capsys, turing):
    rc, lines = run(capsys, "bench", "score", "--path", str(turing), "--repeat", "1", "--llm-n", "0", "--json")
    rep = lines[-1]
    assert rep["baseline"]["replies_per_s"] > 0
    assert rep["judges"]["lexical"]["replies_per_s"] > 0 and rep["judges"]["distilled"]["replies_per_s"] > 0


def test_registered_in_the_hal_command():
    from engine.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["score", "x.csv", "--judge", "lexical", "--json"]).judge == "lexical"
    assert parser.parse_args(["fit", "x.csv", "--precomputed", "--select", "16"]).select == 16
    assert callable(parser.parse_args(["bench", "score", "--json"]).func)


def test_agree_and_compare(capsys, turing):
    rc, lines = run(capsys, "agree", str(turing), "--judge", "lexical", "--json")
    assert rc == 0 and lines[-1]["judge"] == "lexical@1" and "3" in lines[-1]["traits"]
    rc, lines = run(capsys, "compare", str(turing), str(turing), "--judge", "lexical", "--json")
    rep = [x for x in lines if "error" not in x][-1]
    assert rep["mean_before"] == rep["mean_after"] and rep["n_before"] == 47
