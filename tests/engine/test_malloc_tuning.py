"""The engine's allocator settings: large blocks freed by a worker thread are
reused instead of being mapped and faulted in again (training runs on a worker
thread in the engine)."""

import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import json, resource, threading
from engine.malloc_tuning import tune
tuned = tune()
out = {}
def work():
    for i in range(6):
        if i == 1:
            out["start"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = bytearray(96 * 1024 * 1024)  # zero-filled: every page is touched
        del block
    out["faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - out["start"]
t = threading.Thread(target=work); t.start(); t.join()
print(json.dumps({"tuned": tuned, "faults": out["faults"]}))
"""


def _probe(**env) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_worker_thread_reuses_large_blocks_only_with_the_settings():
    tuned = _probe(HAL_MALLOC_DEFAULTS="0")
    default = _probe(HAL_MALLOC_DEFAULTS="1")
    assert tuned["tuned"] is True and default["tuned"] is False
    pages = 96 * 1024 * 1024 // 4096
    # defaults: each of the 5 blocks is a fresh mapping, faulted in page by page
    assert default["faults"] > 4 * pages
    # settings: the first block's memory is reused, so almost no new faults
    assert tuned["faults"] < pages // 4
