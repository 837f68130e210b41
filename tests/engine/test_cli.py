"""`hal`: bad input ends with one clear line on stderr and exit code 2."""

import json
import subprocess
import sys

import pytest


def hal(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("make,needle", [
    (lambda p: p / "missing.gguf", "not found"),
    (lambda p: (p / "x.gguf").write_text("hello") and p / "x.gguf", "not a GGUF"),
    (lambda p: (p / "d").mkdir() or p / "d", "not a model folder"),
])
def test_bad_model_gives_one_line_and_exit_2(tmp_path, make, needle):
    proc = hal("check", "--model", str(make(tmp_path)))
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hal: error:") and needle in lines[0]


def test_remote_code_folder_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "auto_map": {"x": "y"}}))
    proc = hal("check", "--model", str(tmp_path))
    assert proc.returncode == 2 and "remote code" in proc.stderr


def test_pickle_only_folder_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04junk")
    proc = hal("check", "--model", str(tmp_path))
    assert proc.returncode == 2 and "pickle" in proc.stderr


def test_bad_sampling_value_is_refused(tmp_path):
    proc = hal("chat", "hi", "--temperature", "9")
    assert proc.returncode == 2 and "temperature" in proc.stderr
