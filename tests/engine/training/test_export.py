"""``hal round export``: the exported folder trains what the round trained (every
setting carried or named as not belonging to training), launch.sh for one GPU or
many, pinned requirements, and a real two-process ``accelerate launch`` run."""

from __future__ import annotations

import dataclasses
import copy
import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.training import dpo, export
from engine.training import pairs as P
from engine.training.config import to_dict

ROOT = Path(__file__).resolve().parents[3]

# Every setting of a DPO round that must reach training, and where the export holds it.
CARRIED = {
    "learning_rate": ("dpo", "learning_rate"), "epochs": ("dpo", "num_train_epochs"),
    "max_steps": ("dpo", "max_steps"), "batch_size": ("dpo", "per_device_train_batch_size"),
    "grad_accum": ("dpo", "gradient_accumulation_steps"), "max_length": ("dpo", "max_length"),
    "warmup_ratio": ("dpo", "warmup_steps"), "save_steps": ("dpo", "save_steps"), "seed": ("dpo", "seed"),
    "beta": ("dpo", "beta"), "lora_r": ("lora", "r"), "lora_alpha": ("lora", "lora_alpha"),
    "lora_dropout": ("lora", "lora_dropout"), "lora_targets": ("lora", "target_modules"),
    "anchor_weight": ("anchor", "weight"), "anchor_batch": ("anchor", "batch_size"),
    "rating_repeat": ("data", "rating_repeat"),
}
# Carried in another shape: checked one by one below.
SHAPED = {"loss_type", "sft_weight", "anchor", "model", "continue_adapter"}

# A round whose every carried setting differs from the default preset.
ROUND = dict(learning_rate=3e-4, epochs=2.0, max_steps=7, batch_size=3, grad_accum=2, max_length=100,
             warmup_ratio=0.25, save_steps=3, seed=11, beta=0.3, lora_r=8, lora_alpha=12.0, lora_dropout=0.05,
             lora_targets=["q_proj", "v_proj"], loss_type="rpo", sft_weight=0.7, anchor="chitchat",
             anchor_weight=0.4, anchor_batch=3, rating_repeat=3)


def _parent_adapter(store, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.training.rounds import write_adapter

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)),
                           LoraConfig(r=8, lora_alpha=12.0, target_modules=["q_proj", "v_proj"],
                                      task_type="CAUSAL_LM"))
    return write_adapter(store, model, "earlier", str(tiny_model_dir), None, {})


def _stored_round(store, overrides: dict, kind: str = "dpo") -> str:
    """A finished round row with a pair set (one of them a 'certainly' rating)."""
    from engine.training.rounds import RoundRecord

    cfg = dpo.make_config("default", overrides)
    pairs = [P.Pair([{"role": "user", "content": f"hi {i}"}], "lol yeah", "Certainly! I can help.", 1.0, 0.0,
                    prompt_id=f"p{i}") for i in range(4)]
    pairs.append(P.Pair([{"role": "user", "content": "sup"}], "nm u?", "As an AI, I do not.", None, None,
                        "rating", "r1", 1.0))
    record = RoundRecord(store, kind, to_dict(cfg), overrides.get("continue_adapter") or None)
    pair_set = P.save(store, pairs, record.id, None)
    record.set_lineage(P.lineage(pair_set, pairs, None))
    record.finish("done")
    return record.id


@pytest.fixture
def exported(store, tiny_model_dir, tmp_path):
    parent = _parent_adapter(store, tiny_model_dir)
    overrides = {**ROUND, "model": str(tiny_model_dir), "continue_adapter": parent["id"]}
    round_id = _stored_round(store, overrides)
    out = export.export_round(store, round_id, tmp_path / "exp")
    return {"out": out, "folder": tmp_path / "exp", "cfg": dpo.make_config("default", overrides),
            "parent": parent, "round_id": round_id,
            "spec": json.loads((tmp_path / "exp" / "trl_config.json").read_text())}


def test_every_round_setting_is_carried_key_by_key(exported, tiny_model_dir):
    cfg, spec, folder = exported["cfg"], exported["spec"], exported["folder"]
    fields = {f.name for f in dataclasses.fields(dpo.DPORoundConfig)}
    unaccounted = fields - set(CARRIED) - SHAPED - set(export.NOT_CARRIED)
    assert not unaccounted, f"round settings the export neither carries nor explains: {sorted(unaccounted)}"
    assert not set(CARRIED) & set(export.NOT_CARRIED)
    for name, (section, key) in CARRIED.items():
        assert spec[section][key] == getattr(cfg, name), f"{name} -> {section}.{key}"
    assert spec["dpo"]["loss_type"] == ["sigmoid", "sft"] and spec["dpo"]["loss_weights"] == [1.0, 0.7]
    assert spec["anchor"]["source"] == "chitchat" and spec["anchor"]["max_length"] == cfg.max_length
    assert spec["anchor"]["seed"] == cfg.seed
    # the base: the weights the round trained on, copied in; launch.sh defaults to them
    assert spec["base"] == {"path": "base", "source": str(tiny_model_dir)}
    for f in tiny_model_dir.iterdir():
        assert (folder / "base" / f.name).read_bytes() == f.read_bytes()
    assert 'MODEL="${MODEL:-base}"' in (folder / "launch.sh").read_text()
    assert "HuggingFaceTB" not in (folder / "launch.sh").read_text()
    # the adapter it continued from is the start
    assert spec["start_adapter"] == "start_adapter"
    parent = Path(exported["parent"]["peft_path"])
    assert ((folder / "start_adapter" / "adapter_model.safetensors").read_bytes()
            == (parent / "adapter_model.safetensors").read_bytes())
    assert spec["studio"]["round_config"] == to_dict(cfg)
    # the data: a rating pair repeated round(1.0 x 3) times, as the round trains it
    import datasets

    assert exported["out"]["pairs"] == 5 and exported["out"]["rows"] == 4 + 3
    assert len(datasets.load_from_disk(str(folder / "dataset"))) == 7
    assert "chitchat-dataset==0.9.0" in (folder / "requirements.txt").read_text()


def test_the_bundled_base_is_the_dequantized_folder_the_round_trained_on(store, tiny_model_dir, tmp_path,
                                                                          monkeypatch):
    """For the bundled GGUF the round trains on the transformers backend's dequantized copy:
    that folder is the export's base, not a hub id."""
    from engine.models import hf_load
    from engine.models.spec import bundled_gguf_path

    asked = []
    monkeypatch.setattr(hf_load, "dequantize_gguf", lambda path, **kw: asked.append(path) or tiny_model_dir)
    round_id = _stored_round(store, {"model": "bundled"})
    out = export.export_round(store, round_id, tmp_path / "exp")
    assert [Path(p) for p in asked] == [bundled_gguf_path()]
    assert out["base"]["from"] == str(tiny_model_dir) and out["base"]["copied"]
    assert (tmp_path / "exp" / "base" / "config.json").read_bytes() == (tiny_model_dir / "config.json").read_bytes()
    readme = (tmp_path / "exp" / "README.txt").read_text()
    assert "dequantized safetensors copy of " + bundled_gguf_path().name in readme
    # the default preset turns the anchor on: the export carries it
    assert out["anchor"]["weight"] == dpo.PRESETS["default"]["anchor_weight"]


def test_the_script_builds_the_rounds_own_trainer_settings(exported):
    """train.py's DPOConfig and LoraConfig equal the ones the round built, field for field."""
    from trl import DPOConfig

    from engine.training import export_train
    from engine.training.policy import lora_config
    from engine.training.runner import training_args

    cfg, spec = exported["cfg"], exported["spec"]
    mine = training_args(DPOConfig, cfg, "out", **dpo.dpo_settings(cfg)).to_dict()
    theirs = export_train.dpo_config(spec, "out", cpu=mine["use_cpu"]).to_dict()
    assert theirs == mine
    assert export_train.lora_config(spec).to_dict() == lora_config(cfg).to_dict()


def test_the_scripts_anchor_draws_the_rounds_human_replies(exported, tiny_model_dir):
    """The same chats, tokenised the same, in the same order; two processes split the batches."""
    from transformers import AutoTokenizer

    from engine.training import export_train
    from engine.training.anchor import Anchor

    spec = exported["spec"]
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    a = spec["anchor"]
    ours = Anchor(tok, batch_size=a["batch_size"], max_length=a["max_length"], seed=a["seed"])
    one = export_train.make_anchor(spec, tok)
    assert one.rows == ours.rows and len(ours.rows) > 100
    ranks = []
    for r in (0, 1):  # what make_anchor(spec, tok, rank=r, world=2) builds, without tokenising again
        rank = copy.copy(one)
        rank.rank, rank.world, rank.rng, rank.order = r, 2, random.Random(a["seed"]), []
        ranks.append(rank)
    studio = [ours.next("cpu") for _ in range(4)]
    for step in range(2):  # one process draws the studio's batches
        ids, mask, labels = one.next("cpu")
        assert ids.equal(studio[step].input_ids) and labels.equal(studio[step].labels)
        assert mask.equal(studio[step].attention_mask)
    for step in range(2):  # two processes together draw the studio's next two
        for k in (0, 1):
            ids, _, labels = ranks[k].next("cpu")
            assert ids.equal(studio[2 * step + k].input_ids) and labels.equal(studio[2 * step + k].labels)


def _fake_accelerate(tmp_path) -> dict:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "accelerate"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_launch_sh_runs_one_gpu_or_many(exported, tmp_path):
    env = _fake_accelerate(tmp_path)
    launch = str(exported["folder"] / "launch.sh")

    def run(**extra):
        return subprocess.run([launch, "--set", "max_steps=3"], env={**env, **extra}, capture_output=True,
                              text=True)

    one = run(NUM_GPUS="1")
    assert one.returncode == 0, one.stderr
    args = one.stdout.split()
    assert "--multi_gpu" not in args and args[args.index("--num_processes") + 1] == "1"
    assert args[args.index("--model") + 1] == "base" and args[-2:] == ["--set", "max_steps=3"]
    assert "--multi_gpu" not in run().stdout.split()  # one GPU is the default
    many = run(NUM_GPUS="8", MODEL="/big/model").stdout.split()
    assert "--multi_gpu" in many and many[many.index("--num_processes") + 1] == "8"
    assert many[many.index("--model") + 1] == "/big/model"
    bad = run(NUM_GPUS="two")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_requirements_pin_what_pyproject_pins():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for req in export.REQUIREMENTS + [export.ANCHOR_REQUIREMENT]:
        assert req in deps, f"{req} differs from pyproject.toml"


def test_train_py_imports_nothing_from_the_studio():
    import ast

    from engine.training import export_train

    tree = ast.parse(Path(export_train.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    assert names and not [n for n in names if n.split(".")[0] in ("engine", "studio")]


def test_cli_export(store, tiny_model_dir, tmp_path, capsys, data_dir):
    from engine.cli import main

    db = str(data_dir / "studio.sqlite3")
    round_id = _stored_round(store, {"model": str(tiny_model_dir), "anchor": "off"})
    assert main(["round", "export", round_id, str(tmp_path / "out"), "--db", db, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"dataset", "pairs.jsonl", "trl_config.json", "train.py", "launch.sh", "requirements.txt",
            "README.txt", "base"} <= set(out["files"])
    assert out["anchor"] is None and out["start_adapter"] is None and out["base"]["copied"]
    assert "chitchat" not in (tmp_path / "out" / "requirements.txt").read_text()
    # --no-copy-base points at the weights instead, and the README says so
    assert main(["round", "export", round_id, str(tmp_path / "out2"), "--db", db, "--no-copy-base"]) == 0
    assert "Exported round" in capsys.readouterr().out
    assert not (tmp_path / "out2" / "base").exists()
    assert str(tiny_model_dir.resolve()) in (tmp_path / "out2" / "launch.sh").read_text()
    assert "not copied" in (tmp_path / "out2" / "README.txt").read_text()

    (tmp_path / "afile").write_text("x")
    online = _stored_round(store, {"model": str(tiny_model_dir)}, kind="online")
    for argv, words in ([["nope", str(tmp_path / "o3")], "no round"],
                        [[round_id, str(tmp_path / "out")], "not empty"],
                        [[round_id, str(tmp_path / "afile")], "is a file"],
                        [[online, str(tmp_path / "o4")], "only DPO rounds"]):
        assert main(["round", "export", *argv, "--db", db]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o4").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_tiny_round_trains_again_with_accelerate_on_two_cpu_processes(
        tiny_model_dir, tiny_gguf, tmp_path, data_dir, store):
    """A real tiny round that continued an earlier round's adapter with the anchor on, exported
    and run by its own launch.sh in two CPU processes (torchrun + gloo): an adapter comes out."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from engine.cli import main

    db = str(data_dir / "studio.sqlite3")
    base = {"model": str(tiny_model_dir), "base_gguf": str(tiny_gguf), "threads": 1, "judge": "surface",
            "verdict": False}
    first_cfg = tmp_path / "first.json"
    first_cfg.write_text(json.dumps(base))
    first = _run_cli(main, ["round", "dpo", "--preset", "smoke", "--config", str(first_cfg), "--db", db])
    from engine.training.rounds import get_round

    second_cfg = tmp_path / "second.json"
    second_cfg.write_text(json.dumps({**base, "continue_adapter": first["adapter"], "anchor": "chitchat",
                                      "anchor_weight": 0.5, "anchor_batch": 2, "loss_type": "rpo",
                                      "warmup_ratio": 0.5,
                                      "pair_set": get_round(store, first["round_id"])["lineage"]["pair_set"]}))
    second = _run_cli(main, ["round", "dpo", "--preset", "smoke", "--config", str(second_cfg), "--db", db])
    folder = tmp_path / "exp"
    assert main(["round", "export", second["round_id"], str(folder), "--db", db, "--json"]) == 0

    env = {**os.environ, "NUM_GPUS": "2", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "ACCELERATE_ARGS": f"--main_process_port {_free_port()}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)  # the script must not need the studio
    done = subprocess.run(["nice", str(folder / "launch.sh"), "--set", "max_steps=2"], env=env,
                          capture_output=True, text=True, timeout=540, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((folder / "output" / "run.json").read_text())
    assert run["num_processes"] == 2 and "MULTI_CPU" in run["distributed_type"] and run["steps"] == 2
    assert run["anchor"] and any("anchor_nll" in h for h in run["log_history"])
    adapter = folder / "output" / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(folder / "base")), str(adapter))
    assert model.peft_config["default"].r == 4  # the smoke preset's LoRA, continued
    trained = load_file(str(adapter / "adapter_model.safetensors"))
    start = load_file(str(folder / "start_adapter" / "adapter_model.safetensors"))
    assert set(trained) == set(start)
    assert any(not trained[k].equal(start[k]) for k in trained)  # it trained further


def _run_cli(main, argv):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([*argv, "--json"]) == 0
    return json.loads(buf.getvalue().strip().splitlines()[-1])
