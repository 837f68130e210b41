"""hal round / hal eval output shapes, the engine commands, the export folder."""

from __future__ import annotations

import io
import json
import time

import pytest

from engine.training import dpo, rounds


@pytest.fixture
def smoke_round(tiny_model_dir, tiny_gguf, tmp_path, capsys, data_dir):
    from engine.cli import main

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": str(tiny_model_dir), "base_gguf": str(tiny_gguf), "threads": 1,
                               "judge": "surface"}))
    db = data_dir / "studio.sqlite3"
    assert main(["round", "dpo", "--preset", "smoke", "--config", str(cfg), "--db", str(db), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return out, db, cfg


def test_round_and_eval_json(smoke_round, capsys, tmp_path, tiny_model_dir, tiny_gguf):
    from engine.cli import main

    out, db, _ = smoke_round
    assert {"round_id", "adapter", "seconds", "steps", "metrics", "verdict"} <= set(out)
    v = out["verdict"]
    assert {"base", "aligned", "delta", "traits_delta", "length_delta"} <= set(v)
    assert set(v["base"]) == {"mean", "ci"} and len(v["aligned"]["ci"]) == 2
    assert "loss" in out["metrics"] and out["steps"] == 2
    ecfg = tmp_path / "eval.json"
    ecfg.write_text(json.dumps({"model": str(tiny_model_dir), "base_gguf": str(tiny_gguf), "threads": 1,
                                "judge": "surface", "sampler": "transformers", "verdict_prompts": 2}))
    assert main(["eval", "--adapter", out["adapter"], "--config", str(ecfg), "--db", str(db), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"base", "aligned", "delta", "traits_delta", "length_delta"} <= set(ev)
    check_engine_commands(out, db, tmp_path)  # same store: saves a second smoke round


def test_bad_config_is_refused_by_the_cli(tmp_path, capsys):
    from engine.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"beta": -1}))
    assert main(["round", "dpo", "--preset", "smoke", "--config", str(bad)]) == 2
    assert "beta" in capsys.readouterr().err


def _engine(db):
    import engine.training.commands  # noqa: F401  (registers the commands)
    from engine.server import Engine

    buf = io.BytesIO()
    return Engine(buf, store_path=str(db)), buf


def _ask(engine, buf, type_, content, mid):
    from engine.protocol import Message

    engine.handle_line(Message(type=type_, content=content, id=mid).encode())
    for _ in range(600):
        msgs = [json.loads(line) for line in buf.getvalue().splitlines()]
        done = [m for m in msgs if m.get("parent") == mid and m["type"] in ("result", "error")]
        if done:
            return done[0]
        time.sleep(0.05)
    raise AssertionError("no answer")


def check_engine_commands(out, db, tmp_path):
    engine, buf = _engine(db)
    try:
        kinds = _ask(engine, buf, "round.kinds", {}, "k")["content"]["kinds"]
        assert {k["kind"] for k in kinds} == {"dpo", "online", "reward-weights", "reward-model"}
        assert any(k["title"] == "Online RL (GRPO)" for k in kinds)
        assert all(f["help"] for k in kinds for f in k["fields"])
        dpo_kind = next(k for k in kinds if k["kind"] == "dpo")
        # every preset's own values come with the fields, so the form shows what will run
        assert dpo_kind["preset_values"]["default"]["learning_rate"] == dpo.PRESETS["default"]["learning_rate"]
        assert dpo_kind["preset_values"]["smoke"]["max_steps"] == 2
        assert set(dpo_kind["preset_values"]["default"]) == {f["name"] for f in dpo_kind["fields"]}
        checked = _ask(engine, buf, "prompts.check", {}, "p")["content"]
        assert checked["n_train"] > 100 and checked["n_heldout"] > 20 and checked["problems"] == []
        listed = _ask(engine, buf, "round.list", {}, "l")["content"]["rounds"]
        assert listed[0]["id"] == out["round_id"] and listed[0]["status"] == "done"
        adapters = _ask(engine, buf, "adapter.list", {}, "a")["content"]["adapters"]
        assert adapters[0]["id"] == out["adapter"] and adapters[0]["gguf_path"]
        exported = _ask(engine, buf, "round.export", {"round_id": out["round_id"],
                                                     "folder": str(tmp_path / "exp")}, "e")["content"]
        assert {"dataset", "pairs.jsonl", "trl_config.json", "train.py", "launch.sh"} <= set(exported["files"])
        assert "accelerate launch" in (tmp_path / "exp" / "launch.sh").read_text()
        import datasets

        assert len(datasets.load_from_disk(str(tmp_path / "exp" / "dataset"))) == exported["pairs"]
        compile((tmp_path / "exp" / "train.py").read_text(), "train.py", "exec")
        bad = _ask(engine, buf, "round.start", {"kind": "dpo", "preset": "smoke", "config": {"beta": 0}}, "b")
        assert bad["type"] == "error" and "beta" in bad["content"]["message"]
        with rounds.exclusive("test holds it"):
            busy = _ask(engine, buf, "round.start", {"kind": "reward-weights", "config": {"judge": "surface"}},
                        "busy")
            t0 = time.perf_counter()  # refused before a child process is started for it
            busy_dpo = _ask(engine, buf, "round.start", {"kind": "dpo", "preset": "smoke"}, "busy2")
            assert time.perf_counter() - t0 < 5
        assert busy["type"] == "error" and busy["content"]["kind"] == "round_busy"
        assert busy_dpo["type"] == "error" and busy_dpo["content"]["kind"] == "round_busy"
    finally:
        engine.close()
