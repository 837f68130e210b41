"""Sampling: top-k, min-p, repetition penalty and stop strings, validated once
and applied the same way by both backends."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import numpy as np
import pytest

from engine.errors import BadRequest
from engine.models.base import CHAT_DEFAULTS, Sampling, StopMatcher

torch = pytest.importorskip("torch")


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("bad,needle", [
    ({"top_k": -1}, "top_k"), ({"top_k": 2.5}, "whole number"), ({"top_k": "40"}, "top_k"),
    ({"min_p": 1.5}, "min_p"), ({"min_p": float("nan")}, "finite"), ({"min_p": True}, "min_p"),
    ({"repeat_penalty": 0.0}, "repeat_penalty"), ({"repeat_penalty": 9}, "repeat_penalty"),
    ({"repeat_last_n": 0}, "repeat_last_n"),
    ({"stop": "."}, "list"), ({"stop": [""]}, "non-empty"), ({"stop": [3]}, "non-empty"),
    ({"stop": ["x"] * 17}, "at most"), ({"stop": ["x" * 201]}, "at most"),
])
def test_bad_values_are_refused(bad, needle):
    with pytest.raises(BadRequest) as err:
        Sampling.from_dict(bad)
    assert needle in err.value.message


def test_new_fields_are_recorded_with_their_defaults():
    d = Sampling.from_dict({"top_k": 40, "min_p": 0.05, "repeat_penalty": 1.2, "stop": ["\n\n", "User:", "\n\n"]}
                           ).to_dict()
    assert d["top_k"] == 40 and d["min_p"] == 0.05 and d["repeat_penalty"] == 1.2
    assert d["stop"] == ["\n\n", "User:"]  # duplicates dropped, order kept
    plain = Sampling.from_dict({}).to_dict()
    for key in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "repeat_last_n", "max_tokens"):
        assert plain[key] == CHAT_DEFAULTS[key]
    assert plain["stop"] == []


# ------------------------------------------------------------------ stop strings
def feed_all(stops, pieces):
    m = StopMatcher(stops)
    out = [m.feed(p) for p in pieces]
    return "".join(out) + ("" if m.stopped else m.flush()), m.stopped, out


def test_stop_string_split_across_pieces_is_never_streamed():
    text, stopped, out = feed_all(["User:"], ["Hi there! Us", "e", "r: what", " else"])
    assert stopped and text == "Hi there! "
    assert all("U" not in p for p in out)  # the start of the stop string was held back
    text, stopped, _ = feed_all(["User:"], ["Hi there! Us", "ually fine"])
    assert not stopped and text == "Hi there! Usually fine"  # a false start is released


def test_earliest_stop_wins_and_no_stops_pass_through():
    assert feed_all(["b", "abc"], ["xxab", "c"])[0] == "xxa"
    assert feed_all(["\n\n", "."], ["one. two\n\nthree"])[0] == "one"
    assert feed_all([], ["a", "b"]) == ("ab", False, ["a", "b"])
    assert feed_all(["stop"], ["stop right there"])[0] == ""


# ------------------------------------------------- both backends, the same cuts
def llama_candidates(logits: np.ndarray, sampling: Sampling, recent: list[int]) -> dict[int, float]:
    """What llama.cpp's chain leaves of ``logits``: token id -> probability."""
    from llama_cpp import llama_cpp as ll

    from engine.models.llamacpp import sampler_chain

    n = len(logits)
    chain = sampler_chain(sampling, n, draw=False)
    try:
        for tok in recent:
            ll.llama_sampler_accept(chain, tok)
        data = (ll.llama_token_data * n)(*[ll.llama_token_data(i, float(x), 0.0) for i, x in enumerate(logits)])
        arr = ll.llama_token_data_array(data, n, -1, False)
        ll.llama_sampler_apply(chain, ctypes.byref(arr))
        kept = [(data[i].id, data[i].logit) for i in range(arr.size)]
    finally:
        ll.llama_sampler_free(chain)
    ids = np.array([k for k, _ in kept])
    z = np.array([v for _, v in kept], dtype=np.float64)
    keep = np.isfinite(z)
    p = np.exp(z[keep] - z[keep].max())
    return dict(zip(ids[keep].tolist(), (p / p.sum()).tolist()))


def hf_candidates(logits: np.ndarray, sampling: Sampling, recent: list[int]) -> dict[int, float]:
    from engine.models.hf import candidates

    probs, order = candidates(torch.tensor(logits, dtype=torch.float32), sampling, recent)
    probs = probs.double()
    ids = order if order is not None else torch.arange(len(probs))
    total = float(probs.sum())
    return {int(i): float(p) / total for i, p in zip(ids, probs) if p > 0}


SETTINGS = [
    dict(temperature=0.7, top_p=0.9),
    dict(temperature=0.7, top_k=40),
    dict(temperature=0.8, top_p=1.0, top_k=40, min_p=0.05),
    dict(temperature=0.7, top_p=0.9, min_p=0.1),
    dict(temperature=1.0, top_p=0.95, top_k=20, repeat_penalty=1.3),
    dict(temperature=0.7, top_p=1.0, repeat_penalty=1.2, repeat_last_n=4),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_llamacpp_and_transformers_keep_the_same_candidates(settings):
    pytest.importorskip("llama_cpp")
    rng = np.random.default_rng(7)
    for trial in range(5):
        logits = (rng.normal(size=300) * 3).astype(np.float32)
        recent = rng.integers(0, 300, size=12).tolist() + [int(np.argmax(logits))]  # penalise the favourite
        s = Sampling(**settings)
        a, b = llama_candidates(logits, s, recent), hf_candidates(logits, s, recent)
        assert set(a) == set(b), (trial, sorted(set(a) ^ set(b)))
        assert max(abs(a[k] - b[k]) for k in a) < 1e-4


def test_repetition_penalty_only_sees_the_last_n_reply_tokens():
    logits = np.zeros(50, dtype=np.float32)
    logits[[3, 4]] = 2.0
    s = Sampling(temperature=1.0, top_p=1.0, repeat_penalty=2.0, repeat_last_n=2)
    probs = hf_candidates(logits, s, [3, 9, 9])  # 3 fell out of the window
    assert probs[3] == pytest.approx(probs[4])
    probs = hf_candidates(logits, s, [9, 3])
    assert probs[3] < probs[4] / 2


# ------------------------------------------------------------------ end to end
def _generate(model, sampling: Sampling):
    pieces: list[str] = []
    result = model.generate([{"role": "user", "content": "Name three fruits."}], sampling, None,
                            pieces.append, lambda: False)
    return result, pieces


def check_stop_cuts_reply(model):
    plain, _ = _generate(model, Sampling(temperature=0.0, max_tokens=40))
    assert len(plain.text) >= 20, plain.text
    k = len(plain.text) // 3
    stop = plain.text[k:k + 5]  # from the middle of the reply, most likely across a token boundary
    where = plain.text.index(stop)
    cut, pieces = _generate(model, Sampling(temperature=0.0, max_tokens=40, stop=[stop, "never-seen"]))
    assert cut.finish_reason == "stop" and cut.text == plain.text[:where]
    assert "".join(pieces) == cut.text  # nothing of the stop string was streamed
    assert cut.completion_tokens < plain.completion_tokens
    return plain


def test_llamacpp_stop_strings_and_new_samplers():
    pytest.importorskip("llama_cpp")
    from engine.models.llamacpp import LlamaCppModel
    from engine.models.spec import bundled_gguf_path

    model = LlamaCppModel(bundled_gguf_path(), n_ctx_per_seq=1024, max_seqs=1, n_threads=2)
    try:
        plain = check_stop_cuts_reply(model)
        one, _ = _generate(model, Sampling(temperature=1.5, top_k=1, max_tokens=40, seed=3))
        assert one.text == plain.text  # top-k 1 is greedy whatever the temperature
        long_plain, _ = _generate(model, Sampling(temperature=0.0, max_tokens=60))
        penalised, _ = _generate(model, Sampling(temperature=0.0, max_tokens=60, repeat_penalty=1.5))
        assert penalised.text != long_plain.text
        a, _ = _generate(model, Sampling(temperature=0.9, top_k=40, min_p=0.05, repeat_penalty=1.2,
                                         max_tokens=30, seed=11))
        b, _ = _generate(model, Sampling(temperature=0.9, top_k=40, min_p=0.05, repeat_penalty=1.2,
                                         max_tokens=30, seed=11))
        assert a.text == b.text  # still seeded
    finally:
        model.close()


def test_transformers_stop_strings_and_new_samplers(tmp_path):
    from engine.models.hf import HFModel
    from tests.engine.test_hf_backend import save_tiny

    model = HFModel(save_tiny(tmp_path / "tiny"), source_kind="hf")
    try:
        check_stop_cuts_reply(model)
        plain, _ = _generate(model, Sampling(temperature=0.0, max_tokens=40))
        one, _ = _generate(model, Sampling(temperature=1.5, top_k=1, max_tokens=40, seed=3))
        assert one.text == plain.text
        penalised, _ = _generate(model, Sampling(temperature=0.0, max_tokens=40, repeat_penalty=2.0))
        assert penalised.text != plain.text
    finally:
        model.close()


def test_hal_chat_flags_and_json(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "chat", "Name three fruits.", "--json",
                           "--max-tokens", "12", "--top-k", "30", "--min-p", "0.1", "--repeat-penalty", "1.15",
                           "--stop", "zzz", "--stop", "\\n\\n\\n"],  # typed as \n: a line break
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["sampling"]["top_k"] == 30 and out["sampling"]["min_p"] == 0.1
    assert out["sampling"]["repeat_penalty"] == 1.15 and out["sampling"]["stop"] == ["zzz", "\n\n\n"]
    assert out["looping"] in (True, False) and "loop_reason" in out
    bad = subprocess.run([sys.executable, "-m", "engine.cli", "chat", "hi", "--min-p", "2"],
                         capture_output=True, text=True, timeout=300)
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and "min_p" in lines[0]


# ------------------------------------------------------------------ the engine
@pytest.mark.parametrize("sampling,needle", [
    ({"top_k": -5}, "top_k"), ({"min_p": "lots"}, "min_p"), ({"repeat_penalty": 10}, "repeat_penalty"),
    ({"stop": "User:"}, "stop"), ({"stop": [None]}, "stop"),
])
def test_engine_refuses_bad_sampling_as_bad_request(sampling, needle):
    import engine.commands  # noqa: F401  (registers generate)
    from tests.engine.test_server import make, send

    eng, sink = make()
    try:
        mid = send(eng, "generate", {"model": {"source": "bundled"},
                                     "messages": [{"role": "user", "content": "hi"}], "sampling": sampling})
        err = sink.wait_for(lambda m: m.parent == mid)
        assert err.type == "error" and err.content["kind"] == "bad_request" and needle in err.content["message"]
    finally:
        eng.close()


def test_engine_result_carries_sampling_and_loop_flag(tmp_path):
    pytest.importorskip("llama_cpp")
    import engine.commands  # noqa: F401
    from engine.protocol import Message
    from engine.server import Engine
    from engine.store import Store
    from tests.engine.test_server import Sink

    sink = Sink()
    eng = Engine(sink, store_path=str(tmp_path / "s.db"))
    try:
        store = eng.store
        conv = store.create_conversation({"source": "bundled"}, {"source": "bundled"}, {}, False, "t")
        turn = store.add_turn(conv, "hi", False, "left")
        msg = Message(type="generate", content={
            "model": {"source": "bundled"}, "messages": [{"role": "user", "content": "Say hi."}],
            "sampling": {"max_tokens": 8, "top_k": 20, "min_p": 0.02, "repeat_penalty": 1.1, "stop": ["zz"]},
            "persist": {"turn_id": turn, "slot": "a", "side": "left"}})
        eng.handle_line(msg.encode())
        res = sink.wait_for(lambda m: m.parent == msg.id and m.type in ("result", "error"), timeout=120)
        assert res.type == "result", res.content
        assert res.content["sampling"]["top_k"] == 20 and res.content["sampling"]["stop"] == ["zz"]
        assert res.content["looping"] in (True, False)
        row = Store(tmp_path / "s.db").reply(res.content["reply_id"])
        assert row["sampling"] == res.content["sampling"]
        assert bool(row["looping"]) == res.content["looping"] and row["loop_reason"] == res.content["loop_reason"]
    finally:
        eng.close()
