"""Issue 12 item 6: extra labelled text (contrast dialogues, a model's own chats) in the distilled
judge and the weight fit, and out-of-fold ratings that hold out whole AI systems."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from engine.scoring.cli import main
from engine.scoring.dialogue import AI, HUMAN, Dialogue, Turn
from engine.scoring.fit import FitConfig, fit_once
from engine.scoring.heldout import evaluate_heldout
from engine.scoring.importers import load_any
from engine.scoring.judges.distilled import fit_distilled

from .helpers import FORMAL, SLANGY, turing_row, write_csv

WORDS = "the game was long and we played until late then went home to eat some food with friends".split()
SHOUTY = ["WHY DO YOU SAY THAT", "PLEASE GO ON", "TELL ME MORE ABOUT YOUR FAMILY", "DOES THAT TROUBLE YOU"]


def chat(did, lines, label=None, ratings=None, system="", group=None):
    turns = tuple(t for line in lines for t in (Turn("I", "and then?"), Turn("W", line)))
    return Dialogue(id=did, turns=turns, rated_speaker="W", label=label, group=group or did, ratings=ratings,
                    meta={"ai_model": system} if system else {})


def rated_items(n=48, seed=0):
    """Humans write lower case (trait 3 rated 5), the AIs capitalised sentences (rated 1)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        human = i % 2 == 0
        lines = []
        for _ in range(3):
            text = " ".join(rng.sample(WORDS, 6))
            lines.append(text if human else text.capitalize() + ".")
        out.append(chat(f"d{i}", lines, HUMAN if human else AI, {3: 5.0 if human else 1.0, 2: 3.0},
                        system=f"bot-{(i // 2) % 3}", group=f"g{i // 2}"))
    return out


def test_extra_items_learn_the_mean_ratings_of_their_label():
    items = rated_items()
    # A new kind of AI text the rated items never show: shouting in capitals.
    extra = [chat(f"x{i}", [SHOUTY[i % 4], SHOUTY[(i + 1) % 4]], AI) for i in range(12)]
    extra += [chat(f"h{i}", [" ".join(random.Random(i).sample(WORDS, 5))], HUMAN) for i in range(12)]
    probe = [chat("p", ["PLEASE TELL ME MORE", "WHY DO YOU SAY THAT"])]
    plain, _ = fit_distilled(items, [d.ratings for d in items], [2, 3], folds=3)
    model, oof = fit_distilled(items, [d.ratings for d in items], [2, 3], folds=3, extra=extra)
    col = model.trait_ids.index(3)
    # the AI's mean rating of trait 3 is 1: the shouting now reads as AI-like, not neutral
    assert model.predict(probe)[0, col] < plain.predict(probe)[0, col] - 0.5
    assert oof.shape == (len(items) + len(extra), 2) and np.isfinite(oof).all()
    assert model.meta["n"] == len(items) and model.meta["extra"]["n"] == 24
    assert model.meta["extra"]["n_human"] == 12
    assert model.meta["heldout"]["3"]["n"] == len(items)  # correlations over rated items only
    assert len(model.oof) == len({d.digest() for d in items + extra})  # extras keyed too


def test_extra_items_need_rated_items_of_both_labels():
    items = [chat(f"d{i}", ["lol ok"], None, {3: 5.0}, group=f"g{i}") for i in range(12)]
    with pytest.raises(Exception, match="both labels"):
        fit_distilled(items, [d.ratings for d in items], [3], folds=3, extra=[chat("x", ["HI"], AI)])


def test_folds_by_ai_model_rate_each_system_with_a_judge_that_never_saw_it():
    items = rated_items()
    model, oof = fit_distilled(items, [d.ratings for d in items], [2, 3], folds=5, folds_by="ai_model")
    assert model.meta["folds_by"] == "ai_model" and model.meta["folds"] == 3  # three systems
    unseen = [d for d in items if d.meta["ai_model"] == "bot-1"]
    others = [d for d in items if d.meta["ai_model"] != "bot-1"]
    without, _ = fit_distilled(others, [d.ratings for d in others], [2, 3], folds=2)
    rows = [i for i, d in enumerate(items) if d.meta["ai_model"] == "bot-1"]
    assert np.allclose(oof[rows], without.predict(unseen), atol=1e-4)
    with pytest.raises(Exception, match="ai_model"):
        no_system = [chat(f"n{i}", ["lol"], HUMAN, {3: 5.0}) for i in range(12)]
        fit_distilled(no_system, [d.ratings for d in no_system], [3], folds=3, folds_by="ai_model")


def test_fit_once_takes_sample_weights():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    _, b_plain = fit_once(X, y, FitConfig(penalty="l2"))
    _, b_heavy = fit_once(X, y, FitConfig(penalty="l2"), np.array([10.0, 10.0, 1.0, 1.0]))
    assert b_heavy < b_plain  # heavier AI rows pull the boundary towards "AI"


def shouty_games(tmp_path):
    """bot-1 and bot-2 write formal prose; bot-3 shouts. Humans are slangy throughout."""
    rows = []
    for g in range(30):
        system = ("bot-1", "bot-2", "bot-3")[g % 3]
        ai_lines = [s.upper() for s in SLANGY] if system == "bot-3" else FORMAL
        human = "A" if g % 2 else "B"
        a, b = (SLANGY, ai_lines) if human == "A" else (ai_lines, SLANGY)
        rows.append(turing_row(g, human, a[g % 2:], b[g % 2:], ai_model=system))
    return load_any(write_csv(tmp_path / "games.csv", rows)).dialogues


def test_heldout_with_extra_items_in_the_weights(tmp_path):
    data = shouty_games(tmp_path)
    extra = [chat(f"x{i}", [SLANGY[i % 4].upper(), SLANGY[(i + 1) % 4].upper()], AI) for i in range(20)]
    extra += [chat(f"h{i}", [SLANGY[i % 4], SLANGY[(i + 2) % 4]], HUMAN) for i in range(20)]
    plain = evaluate_heldout(data, "lexical", by="ai_model")
    rep = evaluate_heldout(data, "lexical", by="ai_model", extra=extra, extra_in=("weights",))
    assert rep["n"] == plain["n"] == 60 and rep["n_extra"] == 40 and rep["extra_in"] == ["weights"]
    # the shouting system is recognised only once the weights have seen shouting AI text
    assert rep["accuracy_by_held_out_system"]["bot-3"] > plain["accuracy_by_held_out_system"]["bot-3"]
    with pytest.raises(Exception, match="used in"):
        evaluate_heldout(data, "lexical", by="ai_model", extra=extra, extra_in=("nowhere",))


def test_heldout_distilled_with_extra_in_both_and_inner_folds_by_system(tmp_path):
    data = shouty_games(tmp_path)
    for d in data:
        d.ratings.update({3: 5.0 if d.is_human else 1.0})
    extra = [chat(f"x{i}", [SHOUTY[i % 4]], AI) for i in range(6)] + \
        [chat(f"h{i}", [SLANGY[i % 4]], HUMAN) for i in range(6)]
    rep = evaluate_heldout(data, "distilled", config=FitConfig(penalty="l2"), by="ai_model", inner_folds=2,
                           extra=extra, inner_by="ai_model")
    assert rep["extra_in"] == ["distill", "weights"] and rep["inner_by"] == "ai_model"
    assert set(rep["accuracy_by_held_out_system"]) == {"bot-1", "bot-2", "bot-3"}


def run(capsys, *argv):
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, [json.loads(x) for x in captured.out.splitlines() if x.strip()], captured.err


@pytest.fixture
def files(tmp_path):
    games = tmp_path / "games.csv"
    rows = [turing_row(g, "A" if g % 2 else "B", SLANGY if g % 2 else FORMAL, FORMAL if g % 2 else SLANGY,
                       ai_model=f"bot-{g % 3}") for g in range(24)]
    write_csv(games, rows)
    contrast = tmp_path / "contrast.jsonl"
    with open(contrast, "w") as fh:
        for i in range(6):
            for label, text in (("human", SLANGY[i % 4]), ("ai", FORMAL[i % 4])):
                fh.write(json.dumps({"id": f"c{i}-{label}", "turns": [["A", "hey"], ["B", text]],
                                     "rated_speaker": "B", "label": label, "group": f"c{i}"}) + "\n")
    own = tmp_path / "own.jsonl"
    own.write_text("".join(json.dumps({"id": f"o{i}", "turns": [["A", "hi"], ["B", FORMAL[i % 4]]],
                                       "rated_speaker": "B"}) + "\n" for i in range(4)))
    return games, contrast, own


def test_cli_fit_heldout_and_distill_take_extra_files(capsys, files):
    games, contrast, own = files
    rc, lines, _ = run(capsys, "fit", str(games), "--judge", "lexical", "--heldout", "--heldout-by", "ai_model",
                       "--extra", str(contrast), "--extra-ai", str(own), "--json")
    assert rc == 0 and lines[-1]["n_extra"] == 16 and lines[-1]["n"] == 48
    rc, lines, _ = run(capsys, "distill", str(games), "--folds", "3", "--save-as", "wide", "--extra", str(contrast),
                       "--extra-weight", "0.5", "--folds-by", "ai_model", "--style-features", "--json")
    assert rc == 0 and lines[-1]["extra"]["n"] == 12 and lines[-1]["extra"]["weight"] == 0.5
    assert lines[-1]["folds_by"] == "ai_model" and lines[-1]["style_features"] is True
    rc, lines, _ = run(capsys, "fit", str(games), "--judge", "distilled", "--model", "wide", "--extra", str(contrast),
                       "--no-save", "--folds", "3", "--json")
    assert rc == 0 and lines[-1]["n"] == 60 and lines[-1]["n_extra"] == 12
    assert lines[-1]["out_of_fold_ratings"] == 60  # the extras were distilled on: their ratings are out-of-fold


def test_cli_bad_extra_file_is_one_line_and_exit_2(capsys, files, tmp_path):
    games, _, own = files
    rc, _, err = run(capsys, "fit", str(games), "--judge", "lexical", "--heldout", "--extra", str(own))
    assert rc == 2 and err.strip().count("\n") == 0 and "human/AI label" in err
    rc, _, err = run(capsys, "fit", str(games), "--precomputed", "--extra", str(files[1]))
    assert rc == 2 and "no precomputed ratings" in err
    rc, _, err = run(capsys, "distill", str(games), "--extra", str(tmp_path / "missing.jsonl"))
    assert rc == 2 and "no such file" in err


def test_heldout_on_the_files_own_ratings_is_a_reference(capsys, files, tmp_path):
    _, contrast, _ = files
    rows = [turing_row(g, "A" if g % 2 else "B", SLANGY, FORMAL, ai_model=f"bot-{g % 3}") for g in range(24)]
    for row in rows:  # the toy ratings follow the human: 5s for the human's side, 1s for the AI's
        if row["who_is_human"] == "B":
            row["likert_evaluation_A"], row["likert_evaluation_B"] = row["likert_evaluation_B"], row["likert_evaluation_A"]
    games = write_csv(tmp_path / "rated.csv", rows)
    rc, lines, _ = run(capsys, "fit", str(games), "--precomputed", "--heldout", "--heldout-by", "ai_model", "--json")
    rep = lines[-1]
    assert rc == 0 and rep["judge"] == "precomputed" and set(rep["accuracy_by_held_out_system"]) == {
        "bot-0", "bot-1", "bot-2"}
    assert rep["heldout_accuracy"] == 1.0
    rc, _, err = run(capsys, "fit", str(games), "--precomputed", "--heldout", "--extra", str(contrast))
    assert rc == 2 and "no precomputed ratings" in err


def test_style_consistency_tells_a_mixed_style_from_a_fixed_one():
    from engine.scoring.features import STYLE_NAMES, style_consistency

    person = chat("p", ["lol ok", "Sure thing.", "idk maybe later tonight i guess", "Yes"])
    bot = chat("b", ["Certainly, I can help.", "That sounds lovely.", "I agree completely.", "Thank you."])
    one = chat("o", ["just one message"])
    S = style_consistency([person, bot, one])
    assert S.shape == (3, len(STYLE_NAMES))
    assert (S[0] > S[1]).all() and S[1, 0] == 0 and S[1, 1] == 0  # the bot never varies case or punctuation
    assert np.isnan(S[2]).all()  # one message has no variation to measure


def test_a_judge_with_style_features_saves_and_loads_and_rates_the_same(tmp_path):
    from engine.scoring.judges.distilled import _load_folder, save_model

    items = rated_items()
    model, _ = fit_distilled(items, [d.ratings for d in items], [2, 3], folds=3, model_id="styled", style=True)
    plain, _ = fit_distilled(items, [d.ratings for d in items], [2, 3], folds=3, model_id="plain")
    assert model.features.width() == plain.features.width() + 3
    folder = save_model(model, tmp_path)
    meta = json.loads((folder / "judge.json").read_text())
    assert meta["features"]["style"] is True
    assert "style" not in json.loads((save_model(plain, tmp_path) / "judge.json").read_text())["features"]
    again = _load_folder(folder)
    assert np.allclose(again.predict(items[:6]), model.predict(items[:6]), atol=1e-5)
