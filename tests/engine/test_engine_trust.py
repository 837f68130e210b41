"""Issue 11 through the real engine process: no line silences it, a dead reader ends it,
a duplicate live id is refused, a non-regular model file never blocks a worker."""

from __future__ import annotations

import json
import os
import time

import pytest

from engine.client import EngineProcess


@pytest.fixture
def eng(tmp_path):
    proc = EngineProcess(env={"HAL_STUDIO_DATA": str(tmp_path)})
    yield proc
    proc.close()


def _orphans(eng, n, timeout=10):
    return [eng.orphans.get(timeout=timeout) for _ in range(n)]


@pytest.mark.parametrize("line", [
    '{"v":1,"id":"\\ud800","type":"ping"}',
    '{"v":1,"id":"x1","type":"\\udc00"}',
    '{"v":1,"id":"x2","type":"ping","parent":"\\ud800"}',
    '{"v":1,"id":"x3","type":"cancel","content":{"target":"\\udfff"}}',
    '{"v":1,"id":"x4","type":"generate","content":{"messages":[{"role":"user","content":"a\\ud800b"}]}}',
    '{"v":1,"id":"x5","type":"hello","content":{"\\ud800":1}}',
])
def test_a_lone_surrogate_gets_an_error_and_the_engine_keeps_serving(eng, line):
    assert eng.request("hello", timeout=60).type == "result"
    eng.send_raw(line.encode("ascii") + b"\n")
    err = eng.orphans.get(timeout=10)
    assert err.type == "error" and err.content["kind"] == "bad_encoding", err.content
    assert "surrogate" in err.content["message"]
    assert eng.request("ping", timeout=10).type == "result"  # still listening
    assert eng.close() == 0  # and it still hears shutdown


def test_a_valid_surrogate_pair_is_ordinary_text(eng):
    reply = eng.request("ping", timeout=60)
    eng.send_raw(b'{"v":1,"id":"\\ud83d\\ude00","type":"ping"}\n')
    answer = eng.orphans.get(timeout=10)
    assert reply.type == "result" and answer.type == "result" and answer.parent == "\U0001F600"


def test_a_dead_reader_ends_the_process_with_a_nonzero_exit(tmp_path):
    proc = EngineProcess(env={"HAL_STUDIO_DATA": str(tmp_path), "HAL_ENGINE_FAULT": "reader-on:ping"})
    try:
        assert proc.request("hello", timeout=60).type == "result"
        proc.send("ping")
        proc.proc.wait(30)  # a deaf engine would live on here
        assert proc.proc.returncode not in (0, None)
        time.sleep(0.2)
        assert any("FATAL error in the message reader" in line for line in proc.stderr_lines)
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()


def test_end_of_input_ends_the_engine(eng):
    assert eng.request("hello", timeout=60).type == "result"
    eng.proc.stdin.close()
    assert eng.proc.wait(30) == 0


def test_a_duplicate_live_id_is_refused_and_cancel_reaches_the_running_one():
    from engine.protocol import Message
    from engine.server import Engine
    from tests.engine.test_server import Sink

    sink = Sink()
    engine = Engine(sink)
    try:
        first = Message(type="test.slow", id="same")
        engine.handle_line(first.encode())
        sink.wait_for(lambda m: m.parent == "same" and m.type == "progress")
        engine.handle_line(Message(type="test.slow", id="same").encode())
        err = sink.wait_for(lambda m: m.parent == "same" and m.type == "error")
        assert err.content["kind"] == "duplicate_id" and "still running" in err.content["message"]
        engine.handle_line(Message(type="cancel", content={"target": "same"}).encode())
        done = sink.wait_for(lambda m: m.parent == "same" and m.type == "result", 10)
        assert done.content["stopped_at"] is not None  # the running one was stopped
        time.sleep(0.3)
        assert len([m for m in sink.lines if m.parent == "same" and m.type == "result"]) == 1
        again = Message(type="test.slow", id="same")  # once finished, the id may be used again
        engine.handle_line(again.encode())
        sink.wait_for(lambda m: m.parent == "same" and m.type == "progress" and m.content["done"] > 0
                      and sink.lines.index(m) > sink.lines.index(done))
    finally:
        engine.close()


def test_a_fifo_named_gguf_is_refused_at_once_and_shutdown_returns(eng, tmp_path):
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    assert eng.request("hello", timeout=60).type == "result"
    replies = [eng.send("load", {"model": {"source": str(fifo)}}) for _ in range(9)]  # more than the 8 workers
    for reply in replies:
        assert reply.done.wait(20), "a load of a FIFO blocked a worker"
        assert reply.final.type == "error" and "FIFO" in reply.final.content["message"]
    folder = tmp_path / "model"  # a model folder with a FIFO as its weights
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    os.mkfifo(folder / "model.safetensors")
    reply = eng.request("load", {"model": {"source": str(folder)}}, timeout=20)
    assert reply.type == "error" and "FIFO" in reply.content["message"]
    assert eng.request("ping", timeout=10).type == "result"
    t0 = time.monotonic()
    assert eng.close(timeout=30) == 0 and time.monotonic() - t0 < 30


def test_hal_check_refuses_a_fifo_in_one_line(tmp_path):
    import subprocess
    import sys

    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "check", "--model", str(fifo)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": root,
                                                      "HAL_STUDIO_DATA": str(tmp_path / "data")})
    assert proc.returncode == 2 and "FIFO" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("url", ["http://user:s3cretpw@127.0.0.1:9/v1", "http://127.0.0.1:9/v1?key=s3cretpw",
                                 "https://:s3cretpw@example.org/v1", "http://127.0.0.1:9/v1#s3cretpw"])
def test_credentials_in_the_api_base_are_refused_without_repeating_them(tmp_path, url):
    import subprocess
    import sys

    from engine.discovery.api_client import ChatClient
    from engine.errors import EngineError

    with pytest.raises(EngineError) as info:
        ChatClient(url, model="m")
    assert "HAL_API_KEY" in info.value.message and "s3cretpw" not in info.value.message
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "a", "rated_speaker": "W", "transcript": "W: hey lol"}) + "\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "score", str(data), "--judge", "api", "--api-base",
                           url, "--model", "m"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": root, "HAL_STUDIO_DATA": str(tmp_path / "data")})
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "HAL_API_KEY" in lines[0], proc.stderr[-1000:]
    assert "s3cretpw" not in proc.stderr + proc.stdout
