"""EngineClient against a fake engine process: hello, streaming, cancel, crash, restart."""

import os
import signal

import pytest

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """Collects every signal of a client, keyed by command id."""

    def __init__(self, client):
        self.tokens, self.results, self.errors, self.logs, self.states = {}, {}, {}, [], []
        client.sig_token.connect(lambda i, t: self.tokens.setdefault(i, []).append(t))
        client.sig_result.connect(lambda i, c: self.results.__setitem__(i, c))
        client.sig_error.connect(lambda i, c: self.errors.__setitem__(i, c))
        client.sig_log.connect(self.logs.append)
        client.sig_state_changed.connect(self.states.append)


@pytest.fixture
def started(qtbot, fake_client):
    clients = []

    def start(**env):
        client = fake_client(**env)
        rec = Recorder(client)
        client.start()
        clients.append(client)
        return client, rec

    yield start
    for client in clients:
        client.shutdown(wait_ms=2000)


def generate(client, prompt="hello there", **sampling):
    return client.send("generate", {"model": {"source": "bundled"},
                                    "messages": [{"role": "user", "content": prompt}],
                                    "sampling": {"max_tokens": 20, **sampling}})


def test_hello_then_streams_tokens_and_result(qtbot, started):
    client, rec = started()
    qtbot.waitUntil(lambda: client.state == "ready", timeout=15000)
    assert rec.states == ["starting", "ready"]
    assert client.info["protocol"] == 1 and client.info["pid"] == client.pid()
    cid = generate(client)
    qtbot.waitUntil(lambda: cid in rec.results, timeout=10000)
    assert "".join(rec.tokens[cid]) == rec.results[cid]["text"]
    assert rec.results[cid]["finish_reason"] == "stop"
    assert client.in_flight() == {}
    qtbot.waitUntil(lambda: "fake engine ready" in rec.logs, timeout=5000)  # stderr -> sig_log


def test_commands_sent_while_starting_are_queued(qtbot, started):
    client, rec = started()
    cid = generate(client)  # before the hello is answered
    qtbot.waitUntil(lambda: cid in rec.results, timeout=15000)
    assert rec.results[cid]["text"].startswith("bundled answers")


def test_cancel_stops_a_generation(qtbot, started):
    client, rec = started(FAKE_TOKEN_DELAY="0.05")
    qtbot.waitUntil(lambda: client.state == "ready", timeout=15000)
    cid = generate(client, max_tokens=200)
    qtbot.waitUntil(lambda: len(rec.tokens.get(cid, [])) >= 2, timeout=10000)
    client.cancel(cid)
    qtbot.waitUntil(lambda: cid in rec.results, timeout=10000)
    assert rec.results[cid]["finish_reason"] == "cancelled"
    assert len(rec.tokens[cid]) < 40


def test_engine_error_event_becomes_sig_error(qtbot, started):
    client, rec = started()
    cid = generate(client, prompt="TOO LONG " * 3)
    qtbot.waitUntil(lambda: cid in rec.errors, timeout=15000)
    assert rec.errors[cid]["kind"] == "prompt_too_long"
    assert "context" in rec.errors[cid]["message"]
    assert client.state == "ready"


@pytest.mark.parametrize("env", [{"FAKE_PROTOCOL": "2"}, {"FAKE_ENVELOPE_V": "2"}])
def test_unknown_protocol_version_is_refused(qtbot, started, env):
    client, rec = started(**env)
    qtbot.waitUntil(lambda: client.state == "crashed", timeout=15000)
    assert "protocol" in client.crash_message and "knows version 1" in client.crash_message
    assert "ready" not in rec.states


def test_kill_9_crashes_fails_in_flight_then_restart_works(qtbot, started):
    client, rec = started(FAKE_TOKEN_DELAY="0.2")
    qtbot.waitUntil(lambda: client.state == "ready", timeout=15000)
    cid = generate(client, max_tokens=200)
    qtbot.waitUntil(lambda: cid in rec.tokens, timeout=10000)
    os.kill(client.pid(), signal.SIGKILL)
    qtbot.waitUntil(lambda: client.state == "crashed", timeout=10000)
    assert "signal 9" in client.crash_message
    assert "fake engine ready" in client.stderr_tail()  # its last words are kept
    assert rec.errors[cid]["kind"] == "engine_crashed"
    assert client.in_flight() == {}
    late = generate(client)  # refused plainly while the engine is down
    qtbot.waitUntil(lambda: late in rec.errors, timeout=5000)
    assert rec.errors[late]["kind"] == "engine_not_running"
    client.restart()
    qtbot.waitUntil(lambda: client.state == "ready", timeout=15000)
    again = generate(client, max_tokens=3)
    qtbot.waitUntil(lambda: again in rec.results, timeout=10000)
    assert rec.results[again]["finish_reason"] == "stop"


def test_restart_of_a_running_engine_is_not_a_crash(qtbot, started):
    client, rec = started()
    qtbot.waitUntil(lambda: client.state == "ready", timeout=15000)
    old_pid = client.pid()
    client.restart()
    qtbot.waitUntil(lambda: client.state == "ready", timeout=15000)
    assert "crashed" not in rec.states and "stopped" in rec.states
    assert client.pid() != old_pid


def test_missing_program_is_reported_as_crash(qtbot, store):
    from studio.engine_client import EngineClient

    client = EngineClient(command=["/nonexistent/python-for-hal"])
    client.start()
    qtbot.waitUntil(lambda: client.state == "crashed", timeout=10000)
    assert "could not be started" in client.crash_message
