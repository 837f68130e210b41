"""`hal bench loops`: the table has the baseline and today's defaults, measured in one run."""

import json
import subprocess
import sys

import pytest

from engine.bench_loops import BASELINE, parse_setting


def hal(*args):
    return subprocess.run([sys.executable, "-m", "engine.cli", "bench", "loops", *args],
                          capture_output=True, text=True, timeout=600)


def test_settings_parse_and_bad_ones_are_refused():
    assert parse_setting("x=temperature:0.8,top_k:40") == ("x", {"temperature": 0.8, "top_k": 40})
    with pytest.raises(ValueError):
        parse_setting("x")
    proc = hal("--setting", "x=top_k:lots", "--limit", "1")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "top_k" in lines[0]
    proc = hal("--setting", "x=min_p:7", "--limit", "1")  # out of range: refused before any sampling
    assert proc.returncode == 2 and "min_p" in proc.stderr


def test_small_run_reports_baseline_defaults_and_a_setting(tmp_path):
    pytest.importorskip("llama_cpp")
    out = tmp_path / "replies.jsonl"
    proc = hal("--limit", "2", "--max-tokens", "6", "--setting", "cold=temperature:0.2,top_p:1.0",
               "--json", "--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [r["setting"] for r in report["rows"]] == ["baseline", "defaults", "cold"]
    assert report["rows"][0]["sampling"] == BASELINE
    for row in report["rows"]:
        assert row["replies"] == 2 and 0 <= row["looping_share"] <= 1 and len(row["looping_ci95"]) == 2
    replies = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(replies) == 6 and all("loop_reason" in r and r["prompt"] for r in replies)
    again = hal("--from-replies", str(out), "--json")  # the same table from the saved replies
    assert again.returncode == 0, again.stderr
    assert ([(r["setting"], r["looping"], r["sampling"]) for r in json.loads(again.stdout)["rows"]]
            == [(r["setting"], r["looping"], r["sampling"]) for r in report["rows"]])
    table = hal("--limit", "1", "--max-tokens", "4", "--defaults-only", "--quiet")
    assert table.returncode == 0 and "| baseline |" in table.stdout and "| defaults |" in table.stdout
