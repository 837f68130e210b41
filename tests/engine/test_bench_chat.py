"""`hal bench chat --json`: the contract keys, measured (short replies, one repeat)."""

import json
import subprocess
import sys


def test_bench_chat_prints_the_issue_keys_from_a_real_run():
    out = subprocess.run([sys.executable, "-m", "engine.cli", "bench", "chat", "--json",
                          "--max-tokens", "12", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("raw_tok_s", "single_tok_s", "pair_tok_s_per_pane", "ttft_ms_single", "ttft_ms_pair",
                "pair_peak_rss_mb", "single_peak_rss_mb", "cores"):
        assert key in r
    assert r["raw_tok_s"] > 0 and r["single_tok_s"] > 0 and r["pair_tok_s_per_pane"] > 0
    assert r["ttft_ms_single"] > 0 and r["ttft_ms_pair"] > 0
    # The engine's memory is measured, and a second pane on the same base does not load the weights again.
    assert 50 < r["single_peak_rss_mb"] <= r["pair_peak_rss_mb"] < 2 * r["single_peak_rss_mb"]
    assert set(r["targets"]) == {"single_tok_s >= 0.9 * raw_tok_s", "2 * pair_tok_s_per_pane >= single_tok_s",
                                 "pair_peak_rss_mb <= 1.15 * single_peak_rss_mb"}
    assert r["paired_ratios"]["pair_total_vs_single"]["each"]
