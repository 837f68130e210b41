"""The engine's read loop, in-process: control is immediate, errors are data."""

import io
import json
import threading
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import BadRequest
from engine.protocol import Message, decode
from engine.server import COMMANDS, Engine, command, read_lines


class Sink(io.RawIOBase):
    """A thread-safe byte sink that parses what the engine writes."""

    def __init__(self):
        self.lines = []
        self.cond = threading.Condition()

    def writable(self):
        return True

    def write(self, data):
        with self.cond:
            self.lines.extend(decode(line) for line in data.splitlines() if line.strip())
            self.cond.notify_all()
        return len(data)

    def wait_for(self, pred, timeout=10.0):
        end = time.monotonic() + timeout
        with self.cond:
            while not any(pred(m) for m in self.lines):
                left = end - time.monotonic()
                assert left > 0, f"timed out; got {[(m.type, m.content) for m in self.lines]}"
                self.cond.wait(left)
            return next(m for m in self.lines if pred(m))


@command("test.slow")
def _slow(engine, msg, state):
    for step in range(200):
        if state.cancelled():
            return {"stopped_at": step}
        state.progress(step, 200)
        time.sleep(0.02)
    return {"stopped_at": None}


@command("test.fail")
def _fail(engine, msg, state):
    if msg.content.get("bad_request"):
        raise BadRequest("you asked for it")
    raise RuntimeError("boom")


def make():
    sink = Sink()
    return Engine(sink), sink


def send(engine, type_, content=None):
    msg = Message(type=type_, content=content or {})
    engine.handle_line(msg.encode())
    return msg.id


def test_hello_reports_version_and_capabilities():
    engine, sink = make()
    mid = send(engine, "hello")
    reply = sink.wait_for(lambda m: m.parent == mid)
    assert reply.type == "result" and reply.content["protocol"] == 1
    assert "generate" in reply.content["capabilities"] or "test.slow" in reply.content["capabilities"]
    engine.close()


def test_cancel_is_handled_while_a_job_runs():
    engine, sink = make()
    job = send(engine, "test.slow")
    sink.wait_for(lambda m: m.parent == job and m.type == "progress")
    t0 = time.monotonic()
    cancel = send(engine, "cancel", {"target": job})
    assert sink.wait_for(lambda m: m.parent == cancel).content == {"found": True}
    done = sink.wait_for(lambda m: m.parent == job and m.type == "result")
    assert done.content["stopped_at"] is not None and done.content["stopped_at"] < 199
    assert time.monotonic() - t0 < 1.0
    engine.close()


def test_failures_become_error_events_and_the_loop_keeps_serving():
    engine, sink = make()
    a = send(engine, "test.fail")
    b = send(engine, "test.fail", {"bad_request": True})
    c = send(engine, "no.such.type")
    ea = sink.wait_for(lambda m: m.parent == a)
    eb = sink.wait_for(lambda m: m.parent == b)
    ec = sink.wait_for(lambda m: m.parent == c)
    assert (ea.type, ea.content["kind"]) == ("error", "internal") and "boom" in ea.content["message"]
    assert (eb.content["kind"], eb.content["message"]) == ("bad_request", "you asked for it")
    assert ec.content["kind"] == "unknown_type"
    d = send(engine, "ping")
    assert sink.wait_for(lambda m: m.parent == d).type == "result"
    engine.close()


def test_shutdown_cancels_jobs_and_stops():
    engine, sink = make()
    job = send(engine, "test.slow")
    sink.wait_for(lambda m: m.parent == job and m.type == "progress")
    send(engine, "shutdown")
    assert engine.stopping.is_set()
    engine.close()
    assert sink.wait_for(lambda m: m.parent == job and m.type == "result")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_get_an_error_and_never_raise(data):
    engine, sink = make()
    engine.handle_line(data)
    engine._pool.shutdown(wait=False)
    if data.strip():
        assert sink.lines, "every non-blank line gets an answer"
        assert all(m.type in ("error", "result") for m in sink.lines)


def test_read_lines_cuts_huge_lines_and_goes_on():
    stream = io.BytesIO(b"x" * 5000 + b"\n" + b'{"id":"1","type":"ping"}\n')
    lines = list(read_lines(stream, 100))
    assert len(lines) == 2 and len(lines[0]) == 101 and json.loads(lines[1])["type"] == "ping"


def test_registry_has_the_chat_commands():
    import engine.commands  # noqa: F401

    assert {"load", "generate", "models"} <= set(COMMANDS)
