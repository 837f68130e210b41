"""Distilled judges are plain data (JSON + .npz, no pickle) and their ids never name a path.

A crafted judge id (``../../x/evil``) once reached ``joblib.load`` and ran the
code a pickle carried, from ``hal score --model`` and from ``score.reply``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.ids import check_id, is_valid_id
from engine.scoring.judges import JudgeUnavailable, get_judge
from engine.scoring.judges import distilled as dj

from .helpers import FORMAL, SLANGY, turing_row, write_csv
from .test_distilled import teacher_items

ROOT = Path(__file__).resolve().parents[3]


class _Boom:
    """Unpickling this writes a marker file: proof that loading ran code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def _plant_evil(tmp_path: Path) -> tuple[Path, Path]:
    """An ``evil.joblib`` (a pickle) outside the data folder, and the marker it writes."""
    marker = tmp_path / "pwned.txt"
    evil_dir = tmp_path / "x"
    evil_dir.mkdir()
    (evil_dir / "evil.joblib").write_bytes(pickle.dumps(_Boom(str(marker))))
    (evil_dir / "evil").mkdir()  # a folder too, for a folder-per-judge loader
    (evil_dir / "evil" / "judge.json").write_text(json.dumps({"format": "hal-distilled-judge", "id": "evil"}))
    return evil_dir, marker


def _relative_id(tmp_path: Path, target: Path) -> str:
    """``target`` spelled relative to the user's distilled-judge folder (../../...)."""
    return os.path.relpath(target, dj.models_dir())


@pytest.mark.parametrize("bad", ["../evil", "../../x/evil", "/etc/passwd", "a/b", "a\\b", "..", ".hidden", "",
                                 "x" * 65, "a\x00b", "ok\n"])
def test_bad_ids_are_refused(bad):
    assert not is_valid_id(bad)
    with pytest.raises(Exception, match="bad"):
        check_id(bad, "judge id")


@pytest.mark.parametrize("good", ["gpt5-turing", "fit-distilled", "a.b_c-1", "20261204T101010"])
def test_good_ids_pass(good):
    assert check_id(good) == good


def test_score_cli_refuses_a_path_as_judge_id_and_runs_no_code(tmp_path):
    evil_dir, marker = _plant_evil(tmp_path)
    evil_id = _relative_id(tmp_path, evil_dir / "evil")
    rows = [turing_row(100 + g, "A", SLANGY, FORMAL) for g in range(2)]
    data = write_csv(tmp_path / "games.csv", rows)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "score", str(data), "--judge", "distilled",
                           "--model", evil_id, "--no-cache"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert not marker.exists(), "loading the judge ran code from a pickle"
    assert proc.returncode == 2, proc.stderr
    lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr and "distilled judge id" in lines[0]


def test_score_reply_over_the_wire_refuses_a_path_as_model(tmp_path):
    from engine.protocol import Message
    from engine.server import Engine
    from tests.engine.test_server import Sink

    import engine.scoring.commands  # noqa: F401

    evil_dir, marker = _plant_evil(tmp_path)
    sink = Sink()
    e = Engine(sink, store_path=str(tmp_path / "studio.sqlite3"))
    try:
        for model in (_relative_id(tmp_path, evil_dir / "evil"), str(evil_dir / "evil")):
            msg = Message(type="score.reply", content={"items": [{"text": "lol ok"}], "judge": "distilled",
                                                       "model": model})
            e.handle_line(msg.encode())
            final = sink.wait_for(lambda m: m.parent == msg.id and m.type in ("result", "error"), 60)
            assert final.type == "error" and final.content["kind"] == "bad_request", final.content
            assert "distilled judge id" in final.content["message"]
        assert not marker.exists()
    finally:
        e.close()


def test_saved_judge_is_a_folder_of_json_and_npz_that_loads_without_pickle():
    items = teacher_items(40)
    model, _ = dj.fit_distilled(items, [d.ratings for d in items], folds=2, model_id="teach-2")
    folder = dj.save_model(model)
    assert folder == dj.models_dir() / "teach-2"
    assert sorted(p.name for p in folder.iterdir()) == ["arrays.npz", "judge.json", "oof.json", "vocabulary.json"]
    with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:  # raises on any object array
        assert all(arrays[k].dtype != object for k in arrays.files)
    with zipfile.ZipFile(folder / "arrays.npz") as z:  # no pickle opcode stream anywhere in the archive
        assert all(name.endswith(".npy") for name in z.namelist())
    loaded = dj.load_model("teach-2")
    assert loaded.trait_ids == model.trait_ids and loaded.oof == model.oof
    assert np.array_equal(loaded.predict(items[:10]), model.predict(items[:10]))
    assert loaded.meta["heldout"] == model.meta["heldout"]


def test_damaged_or_pickled_arrays_are_refused_in_one_line():
    items = teacher_items(40)
    model, _ = dj.fit_distilled(items, [d.ratings for d in items], folds=2, model_id="t3")
    folder = dj.save_model(model)
    buf = io.BytesIO()
    np.savez(buf, coef=np.array([object()], dtype=object))  # an object array is a pickle inside the npz
    (folder / "arrays.npz").write_bytes(buf.getvalue())
    with pytest.raises(JudgeUnavailable, match="damaged"):
        dj.load_model("t3")
    (folder / "arrays.npz").write_bytes(b"not a zip")
    with pytest.raises(JudgeUnavailable, match="damaged"):
        dj.load_model("t3")


def test_an_old_joblib_judge_is_refused_with_the_fix(tmp_path, monkeypatch):
    marker = tmp_path / "pwned.txt"
    (dj.models_dir() / "old.joblib").write_bytes(pickle.dumps(_Boom(str(marker))))
    (dj.models_dir() / "old.json").write_text(json.dumps({"id": "old", "created": "2026-01-01"}))
    with pytest.raises(JudgeUnavailable, match="re-run hal distill"):
        dj.load_model("old")
    assert dj.load_model().id == "gpt5-turing"  # the newest loadable one: the shipped judge
    monkeypatch.setattr(dj, "shipped_dir", lambda: tmp_path / "nothing-shipped")
    with pytest.raises(JudgeUnavailable, match="re-run hal distill"):
        dj.load_model()  # the newest: only an old one exists
    assert not marker.exists()


def test_shipped_judges_load_after_the_users_own(tmp_path, monkeypatch):
    shipped = tmp_path / "resources" / "judges"
    monkeypatch.setattr(dj, "shipped_dir", lambda: shipped)
    items = teacher_items(40)
    model, _ = dj.fit_distilled(items, [d.ratings for d in items], folds=2, model_id="shipped-1")
    dj.save_model(model, shipped)
    assert [(m["id"], m["where"]) for m in dj.list_models()] == [("shipped-1", "shipped")]
    judge = get_judge("distilled", cache=False)  # the newest, from the shipped folder
    assert judge.judge_id == "distilled:shipped-1"
    assert np.array_equal(dj.load_model("shipped-1").predict(items[:3]), model.predict(items[:3]))
    mine, _ = dj.fit_distilled(items[:30], [d.ratings for d in items[:30]], folds=2, model_id="shipped-1")
    dj.save_model(mine)  # the user's own judge of the same id wins
    assert [m["where"] for m in dj.list_models()] == ["user"]
    assert np.array_equal(dj.load_model("shipped-1").predict(items[:3]), mine.predict(items[:3]))


def test_distill_cli_refuses_a_path_as_save_as(tmp_path, capsys):
    from engine.scoring.cli import main

    rows = [turing_row(100 + g, "A" if g % 2 else "B", SLANGY, FORMAL) for g in range(24)]
    data = write_csv(tmp_path / "games.csv", rows)
    assert main(["distill", str(data), "--save-as", "../../outside", "--json"]) == 2
    assert "distilled judge id" in capsys.readouterr().err
    assert not (dj.models_dir().parent.parent / "outside").exists()


def test_distill_out_writes_a_shippable_folder(tmp_path, capsys, monkeypatch):
    from engine.scoring.cli import main

    rows = [turing_row(100 + g, "A" if g % 2 else "B", SLANGY, FORMAL) for g in range(24)]
    data = write_csv(tmp_path / "games.csv", rows)
    shipped = tmp_path / "resources" / "judges"
    assert main(["distill", str(data), "--save-as", "ship-1", "--out", str(shipped), "--folds", "2", "--json"]) == 0
    assert (shipped / "ship-1" / "judge.json").is_file() and not (dj.models_dir() / "ship-1").exists()
    monkeypatch.setattr(dj, "shipped_dir", lambda: shipped)
    assert dj.load_model("ship-1").id == "ship-1"
