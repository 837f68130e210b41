"""The real engine process: hello, bad input as data, a clean protocol channel."""

import json

import pytest

from engine.client import EngineProcess


@pytest.fixture
def eng(tmp_path):
    proc = EngineProcess(env={"HAL_STUDIO_DATA": str(tmp_path)})
    yield proc
    proc.close()


def test_hello_and_clean_shutdown(eng):
    hello = eng.request("hello", timeout=60)
    assert hello.type == "result" and hello.content["protocol"] == 1
    assert hello.content["pid"] == eng.pid
    assert eng.close() == 0


def test_garbage_lines_get_errors_and_the_engine_keeps_serving(eng):
    eng.request("hello", timeout=60)
    for raw in (b"\x00\xff garbage\n", b"{not json\n", b'{"id":"x","type":"nope"}\n',
                b"[" * 100000 + b"\n"):
        eng.send_raw(raw)
    errors = [eng.orphans.get(timeout=10) for _ in range(3)]
    assert all(m.type == "error" for m in errors)
    assert eng.request("ping", timeout=10).type == "result"
    assert eng.proc.poll() is None


@pytest.mark.parametrize("make,kind", [
    (lambda p: str(p / "missing.gguf"), "model_missing"),
    (lambda p: (p / "junk.gguf").write_bytes(b"not a model at all" * 10) and str(p / "junk.gguf"),
     "model_invalid"),
    (lambda p: (p / "folder").mkdir() or str(p / "folder"), "model_invalid"),
])
def test_bad_model_files_give_a_clear_error(eng, tmp_path, make, kind):
    source = make(tmp_path)
    reply = eng.request("load", {"model": {"source": source}}, timeout=60)
    assert reply.type == "error" and reply.content["kind"] == kind
    assert reply.content["message"]
    assert eng.request("ping", timeout=10).type == "result"


def test_truncated_gguf_is_refused(eng, tmp_path):
    from engine.models.spec import bundled_gguf_path

    cut = tmp_path / "cut.gguf"
    cut.write_bytes(bundled_gguf_path().read_bytes()[:5_000_000])
    reply = eng.request("load", {"model": {"source": str(cut)}}, timeout=60)
    assert reply.type == "error" and "truncated" in reply.content["message"]


def test_library_prints_cannot_corrupt_the_channel(eng):
    """Anything written to fd 1 inside the engine lands on stderr instead."""
    eng.request("hello", timeout=60)
    reply = eng.request("generate", {"model": {"source": "/nonexistent"}, "messages": "bad"})
    assert reply.type == "error"
    # every line on stdout parsed as protocol (the reader drops nothing silently)
    assert eng.orphans.empty()
    assert any("hal engine" in line for line in eng.stderr_lines)
