"""The lexical judge, the judge registry and the rating cache."""

from __future__ import annotations

import pytest

from engine.scoring.dialogue import Dialogue, Turn
from engine.scoring.judges import JudgeUnavailable, RatingCache, RatingError, available_judges, get_judge
from engine.scoring.judges.lexical import VISIBLE_TRAITS, LexicalJudge

from .helpers import FORMAL, SLANGY


def speaker(lines, partner="so what do you do all day?", did="x"):
    turns = []
    for line in lines:
        turns += [Turn("I", partner), Turn("W", line)]
    return Dialogue(id=did, turns=tuple(turns), rated_speaker="W")


def rate(lines, **kw):
    return get_judge("lexical", cache=False).rate(speaker(lines, **kw))


def test_slangy_reply_beats_formal_on_slang_lowercase_typos():
    casual = rate(["lol ya its fine, dont worry bout it", "idk tbh im kinda tired rn", "nah teh game was mid lmao"])
    formal = rate(FORMAL)
    for trait in (2, 3, 4):
        assert casual[trait] > formal[trait], trait
    assert casual[1] > formal[1]  # shorter
    assert formal[6] < casual[6]  # formal wording


def test_questions_back_raise_trait_20():
    asking = rate(["pretty good, you?", "nice! what kind of music do you like?", "oh cool, where are you from?"])
    telling = rate(["pretty good.", "i like rock.", "i am from ohio."])
    assert asking[20] > telling[20]


def test_unseen_traits_are_none_not_guessed():
    r = rate(SLANGY)
    for trait in (10, 11, 13, 18, 19, 23, 24, 31):
        assert r[trait] is None
    assert all(r[t] is not None and 1 <= r[t] <= 5 for t in VISIBLE_TRAITS)
    assert set(r) == set(range(1, 33))


def test_lexical_is_deterministic_and_batch_equals_single():
    j = get_judge("lexical", cache=False)
    ds = [speaker(SLANGY, did="a"), speaker(FORMAL, did="b")]
    assert j.rate_many(ds) == [j.rate(ds[0]), j.rate(ds[1])]


def test_no_lines_for_the_rated_speaker_is_an_item_error():
    j = get_judge("lexical", cache=False)
    empty = Dialogue(id="e", turns=(Turn("I", "hello?"), Turn("W", "   ")), rated_speaker="W")
    out = j.rate_many([empty, speaker(SLANGY)])
    assert isinstance(out[0], RatingError) and "no lines" in out[0].message and out[0].item == "e"
    assert isinstance(out[1], dict)
    with pytest.raises(RatingError):
        j.rate(empty)


def test_meta_talk_lowers_trait_25():
    assert rate(["are you an ai or a human?", "i think youre a bot"])[25] < rate(SLANGY)[25]


def test_registry():
    assert {"lexical", "distilled", "llm", "api", "precomputed"} <= set(available_judges())
    with pytest.raises(JudgeUnavailable, match="base URL"):
        get_judge("api", cache=False)
    with pytest.raises(JudgeUnavailable, match="unknown judge"):
        get_judge("oracle")
    assert get_judge("distilled", cache=False).judge_id == "distilled:gpt5-turing"  # shipped, out of the box
    with pytest.raises(JudgeUnavailable, match="no distilled judge"):
        get_judge("distilled", model="not-fitted-here")


class CountingJudge(LexicalJudge):
    calls = 0

    def _rate_batch(self, dialogues):
        CountingJudge.calls += len(dialogues)
        return super()._rate_batch(dialogues)


def test_cache_hits_skip_the_judge(tmp_path):
    cache = RatingCache(tmp_path / "c.sqlite3")
    j = CountingJudge(cache=cache)
    ds = [speaker(SLANGY, did="a"), speaker(FORMAL, did="b")]
    first = j.rate_many(ds)
    assert CountingJudge.calls == 2 and cache.misses == 2
    again = j.rate_many([speaker(SLANGY, did="renamed"), *ds])
    assert CountingJudge.calls == 2 and cache.hits == 3  # the id is not part of the key; the text is
    assert again[1:] == first
    # Another questionnaire is another key.
    j16 = CountingJudge(questionnaire="hal16", cache=cache)
    r16 = j16.rate_many(ds[:1])[0]
    assert CountingJudge.calls == 3 and sorted(r16) == j16.questionnaire.trait_ids
    # The cache survives a reopen.
    cache.close()
    j2 = CountingJudge(cache=RatingCache(tmp_path / "c.sqlite3"))
    assert j2.rate_many(ds) == first and CountingJudge.calls == 3


def test_default_cache_lives_in_the_cache_dir(tmp_path):
    from engine import paths

    j = get_judge("lexical")
    j.rate(speaker(SLANGY))
    assert j.cache.path.parent == paths.cache_dir() and j.cache.path.exists()
