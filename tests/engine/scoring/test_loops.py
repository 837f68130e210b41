"""The loop detector agrees with our own labels, rule by rule."""

import json
from pathlib import Path

import pytest

from engine.scoring.loops import RULES, is_looping, loop_reason, loop_rule

EXAMPLES = [json.loads(line) for line in
            (Path(__file__).resolve().parents[2] / "fixtures" / "loop_examples.jsonl").read_text().splitlines()
            if line.strip()]


def test_the_labelled_set_is_large_and_balanced_enough():
    assert len(EXAMPLES) >= 40
    assert sum(e["looping"] for e in EXAMPLES) >= 20 and sum(not e["looping"] for e in EXAMPLES) >= 20
    assert len({e["id"] for e in EXAMPLES}) == len(EXAMPLES)


def test_agreement_with_our_labels():
    wrong = [(e["id"], e["looping"], loop_reason(e["text"])) for e in EXAMPLES
             if is_looping(e["text"]) != e["looping"]]
    assert not wrong, wrong  # 70 of 70 today; the README states the agreement


def test_every_rule_is_exercised_by_a_looping_example():
    fired = {loop_rule(loop_reason(e["text"])) for e in EXAMPLES if e["looping"]}
    assert fired == set(RULES)


@pytest.mark.parametrize("text", ["", "   ", None, 42])
def test_empty_or_odd_input_is_not_looping(text):
    assert loop_reason(text) is None and not is_looping(text)


def test_reason_names_rule_and_quote():
    reason = loop_reason("ok ok ok ok ok ok")
    assert loop_rule(reason) == "word_run" and "'ok'" in reason
    assert loop_rule(None) is None
