"""The explanation path end to end: the bundled model as judge, and the api judge against a real
OpenAI-compatible server (llama-cpp-python's, serving the same bundled model on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from engine.discovery.runs import DiscoverConfig, run
from engine.jobs import RecordingState

from .helpers import write_games

SMALL = {"max_turns": 6, "max_chars": 120, "max_tokens": 48, "threads": 1, "cache": False}


def _bundled():
    from engine.models.spec import bundled_gguf_path

    try:
        return bundled_gguf_path()
    except Exception as exc:  # the package is part of the install; say so if it is not
        pytest.skip(f"bundled model missing: {exc}")


def _check_items(report):
    """Every game has a verdict or a reason, statements or a reason, and no statement the judge did not write."""
    assert report["n_games"] == len(report["items"])
    acc = report["judge_verdict_accuracy"]
    assert acc is None or 0.0 <= acc <= 1.0
    for it in report["items"]:
        assert it["verdict"] in ("A", "B") or it.get("verdict_reason")
        assert it["statements"] or it.get("reason")
        raw = " ".join(re.findall(r"[a-z0-9]+", it.get("raw", "").lower()))
        for s in it["statements"]:
            assert " ".join(re.findall(r"[a-z0-9]+", s.lower())) in raw
    assert report["clusters"] or report["clustering"].get("message")


@pytest.mark.slow
def test_bundled_model_as_judge(tmp_path):
    _bundled()
    path = write_games(tmp_path / "g.jsonl", 2, seed=5)
    report = run(DiscoverConfig.from_dict({"path": str(path), "method": "explain", "explain": SMALL}),
                 RecordingState())
    assert report["judge"]["kind"] == "llm" and report["n_verdicts"] == 2  # logit verdicts always exist
    assert all(it["verdict_from"] == "logits" and "margin" in it for it in report["items"])
    _check_items(report)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def local_server(tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1 with the bundled model."""
    try:
        import fastapi  # noqa: F401
        import llama_cpp.server  # noqa: F401
        import sse_starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"llama-cpp-python[server] extras are not installed ({exc})")
    from engine.models.spec import bundled_gguf_path

    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"  # a file, not a pipe: llama.cpp logs a lot at load
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gguf_path()),
                                 "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_ctx", "2048"],
                                stdout=sink, stderr=subprocess.STDOUT, env={**os.environ})
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as resp:
                    json.loads(resp.read())
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"the local server did not come up: {log.read_text(errors='replace')[-800:]}")
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_api_judge_against_a_real_local_server(tmp_path, local_server, monkeypatch):
    monkeypatch.setenv("HAL_API_KEY", "sk-test-not-stored")
    path = write_games(tmp_path / "g.jsonl", 2, seed=6)
    report = run(DiscoverConfig.from_dict({"path": str(path), "method": "explain",
                                           "explain": {**SMALL, "judge": "api", "api_base": local_server}}),
                 RecordingState())
    assert report["judge"]["kind"] == "api" and report["judge"]["base_url"] == local_server
    assert report["judge"]["key_env"] == "HAL_API_KEY"
    assert all(it["verdict_from"] == "text" for it in report["items"])
    _check_items(report)
    saved = open(report["saved_to"], encoding="utf-8").read()
    assert "sk-test-not-stored" not in saved and "sk-test-not-stored" not in json.dumps(report)


def test_api_judge_that_cannot_be_reached_is_a_clear_error(tmp_path):
    from engine.discovery.api_client import ApiError, ChatClient

    with pytest.raises(ApiError, match="cannot reach"):
        ChatClient(f"http://127.0.0.1:{_free_port()}/v1", model="m", timeout_s=2, retries=0).complete(
            [{"role": "user", "content": "hi"}], 4, 0.0)
    with pytest.raises(ApiError, match="base URL"):
        ChatClient("127.0.0.1:80")
