"""Servers for the api judge's tests: llama-cpp-python's real OpenAI-compatible
server with the bundled model, and a tiny scripted one from the standard library."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """http://127.0.0.1:PORT/v1 of a llama_cpp.server on the bundled GGUF, stopped after the session."""
    for name in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
        pytest.importorskip(name, reason="llama-cpp-python's server extras are not installed")
    from engine.models.llamacpp_scoring import default_threads
    from engine.models.spec import bundled_gguf_path

    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gguf_path()), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "2048", "--n_threads", str(default_threads()),
             "--n_threads_batch", str(default_threads()), "--verbose", "False"],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{Path(log).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/models", timeout=2) as r:
                    if r.status == 200 and json.loads(r.read()).get("data"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer /v1/models in 120 s:\n{Path(log).read_text()[-2000:]}")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class FakeEndpoint:
    """A scripted OpenAI-compatible endpoint on 127.0.0.1.

    ``script`` holds what the next chat requests get, in order: a dict is sent
    as the message content (JSON-encoded), a str as the content itself,
    ``("raw", status, bytes)`` as the whole HTTP answer, ``("sleep", s)`` waits
    before answering. When it runs out, ``default`` is used. Requests are kept
    in ``requests`` (path, headers, JSON body).
    """

    def __init__(self):
        self.script: list = []
        self.default = ("raw", 500, b"script exhausted")
        self.requests: list[tuple[str, dict, dict | None]] = []
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):  # keep test output clean
                pass

            def _send(self, status: int, body: bytes):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (a timeout test)
                    pass

            def do_GET(self):
                endpoint.requests.append((self.path, dict(self.headers), None))
                self._send(200, json.dumps({"object": "list", "data": [{"id": "fake-model"}]}).encode())

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                with endpoint._lock:
                    endpoint.requests.append((self.path, dict(self.headers), body))
                    step = endpoint.script.pop(0) if endpoint.script else endpoint.default
                if isinstance(step, tuple) and step[0] == "sleep":
                    time.sleep(step[1])
                    step = {"1": 3}
                if isinstance(step, tuple) and step[0] == "raw":
                    self._send(step[1], step[2])
                    return
                content = step if isinstance(step, str) else json.dumps(step)
                answer = {"id": "x", "object": "chat.completion", "model": "fake-model",
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": content}}]}
                self._send(200, json.dumps(answer).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def chats(self) -> list[dict]:
        return [body for path, _, body in self.requests if path.endswith("/chat/completions")]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_endpoint():
    ep = FakeEndpoint()
    yield ep
    ep.close()
