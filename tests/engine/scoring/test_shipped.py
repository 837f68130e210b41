"""The numbers shipped in resources/ are what our own fit makes of the reference
data, hold only numbers, and are what a newcomer's scores use."""

from __future__ import annotations

import json

import pytest

from engine.scoring import shipped
from engine.scoring.defaults import default_weights, mismatch_note
from engine.scoring.judges import get_judge
from engine.scoring.traits import load_questionnaire


def _has_reference_data() -> bool:
    try:
        shipped.turing_file()
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _has_reference_data(), reason="the paper's reference data is not beside the checkout")
@pytest.mark.parametrize("item", shipped.SHIPPED_WEIGHTS, ids=lambda i: i.id)
def test_a_rebuild_matches_what_is_shipped(item):
    shipped_now = json.loads(shipped.weights_path(item).read_text(encoding="utf-8"))
    assert shipped.differences(shipped.build_weights(item), shipped_now) == []


@pytest.mark.skipif(not _has_reference_data(), reason="the paper's reference data is not beside the checkout")
def test_a_rebuild_of_the_distilled_judge_matches_what_is_shipped():
    assert shipped.distilled_differences(shipped.build_distilled()) == []


def test_the_shipped_judge_holds_no_text_from_the_data():
    folder = shipped.judge_dir()
    assert sorted(p.name for p in folder.iterdir()) == ["arrays.npz", "judge.json", "oof.json", "vocabulary.json"]
    words = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
    assert len(words) > 1000 and all(w.startswith("#b2:") and len(w) == 20 for w in words)
    oof = json.loads((folder / "oof.json").read_text(encoding="utf-8"))
    assert all(len(k) == 64 and all(isinstance(x, float) for x in v) for k, v in oof.items())  # digests


def test_differences_sees_a_changed_number():
    item = shipped.SHIPPED_WEIGHTS[0]
    now = json.loads(shipped.weights_path(item).read_text(encoding="utf-8"))
    changed = json.loads(json.dumps(now))
    changed["weights"]["2"] += 0.01
    assert shipped.differences(now, changed) and not shipped.differences(now, now)


@pytest.mark.parametrize("item", shipped.SHIPPED_WEIGHTS, ids=lambda i: i.id)
def test_shipped_files_hold_numbers_and_our_own_words_only(item):
    data = json.loads(shipped.weights_path(item).read_text(encoding="utf-8"))
    assert all(isinstance(v, float) for v in data["weights"].values()) and isinstance(data["bias"], float)
    assert data["name"] == item.name and data["description"] == item.description
    assert data["fitted_on"]["source"] == shipped.TURING_FILE  # a file name, no path, no content


def test_a_newcomer_scores_with_the_shipped_fit_of_the_default_judge(tmp_path, monkeypatch):
    monkeypatch.setenv("HAL_SHARED_DATA", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("HAL_STUDIO_DATA", str(tmp_path / "fresh"))
    judge = get_judge("lexical", questionnaire=load_questionnaire("hal32"), cache=False)
    w = default_weights(judge.judge_id)
    # fails when the judge's rules change without a rebuild of the shipped weights
    assert w.id == "lexical_turing" and mismatch_note(w, judge.judge_id) is None
    assert w.metrics["cv_accuracy"] > 0.8
    distilled = get_judge("distilled", questionnaire=load_questionnaire("hal32"), cache=False)
    assert distilled.judge_id.startswith("distilled:gpt5-turing")
    w = default_weights(distilled.judge_id)  # no teacher named: its own shipped fit
    assert w.id == "distilled_turing" and mismatch_note(w, distilled.judge_id) is None
    # the default judge (defaults.DEFAULT_JUDGE) names its teacher: the weights fitted on GPT-5's ratings
    assert distilled.teacher == "gpt-5"
    w = default_weights(distilled.judge_id, distilled.teacher)
    assert w.id == "hal16_published" and mismatch_note(w, distilled.judge_id, distilled.teacher) is None
    assert mismatch_note(w, judge.judge_id) is not None  # on the lexical judge they are another scale
