"""The responsiveness benchmark's arithmetic and its command line (the full run
starts the real studio and a real round: ``python -m studio.bench_responsiveness``)."""

import pytest

from studio import bench_responsiveness as B


def test_percentiles_and_summary():
    values = [float(v) for v in range(1, 101)]
    assert B.percentile(values, 50) == pytest.approx(50.5)
    assert B.percentile(values, 99) == pytest.approx(99.01)
    assert B.percentile([], 99) is None
    out = B.summary([1.0, 2.0, 3.0, 100.0], "baseline_")
    assert out["baseline_max_ms"] == 100.0 and out["baseline_samples"] == 4
    assert B.summary([])["p99_ms"] is None


def test_halfway_reads_step_messages():
    assert B._halfway("DPO: step 4/8") and B._halfway("GRPO: step 2/2")
    assert not B._halfway("DPO: step 1/8") and not B._halfway("sampling 3/8") and not B._halfway("")


def test_defaults_are_the_smoke_dpo_round():
    args = B.parse_args(["--json"])
    assert (args.kind, args.preset, args.interval_ms, args.json) == ("dpo", "smoke", 10, True)
    assert B.parse_args(["--preset", "default"]).preset == "default"
