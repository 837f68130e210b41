"""kill -9 of the process running a training round, while it writes the
adapter: afterwards the round reads as failed with the reason and can be
resumed, the half-written adapter is never listed, and the lock is not stuck.

The process is a real one running engine.training.rounds (lock file, round row,
write_adapter's temp-then-rename); the trainer itself is replaced by a model
whose save_pretrained is killed half-way, so no torch start-up is needed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from engine.store import Store
    from engine.training import rounds

    class HalfWritten:
        def save_pretrained(self, folder):
            os.makedirs(folder)
            with open(os.path.join(folder, "adapter_config.json"), "w") as fh:
                fh.write('{{"r": 16}}')
            with open(os.path.join(folder, "adapter_model.safetensors"), "wb") as fh:
                fh.write(b"\\0" * 4096)
                fh.flush()
                print(rec.id, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)  # mid-file

    store = Store({db!r})
    with rounds.exclusive("dpo smoke"):
        rec = rounds.RoundRecord(store, "dpo", {{"max_steps": 4}})
        rec.set_lineage({{"n_pairs": 3}})
        rounds.write_adapter(store, HalfWritten(), rec.id, "bundled", None, rec.lineage)
""")


def test_kill_9_while_a_round_writes_its_adapter(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    db = data / "studio.sqlite3"
    monkeypatch.setenv("HAL_STUDIO_DATA", str(data))
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(root=ROOT, db=str(db))],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HAL_STUDIO_DATA": str(data)})
    assert proc.returncode == -9, proc.stderr[-2000:]
    round_id = proc.stdout.strip()

    from engine import paths
    from engine.store import Store
    from engine.training import rounds

    store = Store(db)
    assert store.integrity_ok()
    row = rounds.get_round(store, round_id)
    assert row["status"] == "failed" and "stopped" in row["error"]
    assert row["lineage"] == {"n_pairs": 3}
    # the half-written adapter is on disk only under its temp name, and never listed
    temps = list(paths.adapters_dir().glob(".tmp-*"))
    assert temps and all(not (t / "hal_adapter.json").exists() for t in temps)
    assert rounds.list_adapters(store) == [] and rounds.list_adapters(store, usable_only=False) == []
    assert [p for p in paths.adapters_dir().iterdir() if not p.name.startswith(".tmp-")] == []
    rounds.sweep_temp_adapters()
    assert list(paths.adapters_dir().glob(".tmp-*")) == []
    # the dead process's lock does not block the next round, and the round can be resumed
    assert (data / "round.lock").exists()
    with rounds.exclusive("next"):
        again = rounds.RoundRecord(store, "dpo", {}, resume_id=round_id)
        assert again.id == round_id and rounds.get_round(store, round_id)["status"] == "running"
        again.finish("failed", "test over")
    assert not (data / "round.lock").exists()
    store.close()
