"""One policy for which judge and weights score a reply, used everywhere: the
reply badges, a round's pairs and reward, its verdict, ``hal score`` and
``hal compare``.

``auto`` weights for a judge are, in order:
0. for a distilled judge, the shipped weights fitted on its teacher's ratings
   (the paper's published weights for the judge distilled from GPT-5's):
   the judge reproduces the teacher's scale, and blind tests preferred them;
1. the weights shipped in ``resources/weights`` that were fitted on this very
   judge's ratings (``scripts/build_resources.py`` rebuilds them from the
   reference data), so a newcomer's first score is a fitted one and the
   default is the same whatever the data folder holds;
2. for a judge nothing is shipped for (``llm``, ``api``), the newest weights
   the researcher fitted on its own ratings;
3. equal weights (``hal32_equal``), said to be unfitted.

Weights fitted on another judge's scale (the published ones were fitted on
GPT-5's ratings) are used only when asked for by name, and every score then
says so.
"""

from __future__ import annotations

# Rates replies for the badge and builds a round's pairs. Chosen by blind tests
# (README, Figures): the distilled judge with the weights fitted on its
# teacher's (GPT-5's) ratings trained the adapter a blind reader preferred most
# (70% [60, 78] over base), ahead of lexical + published (64%) and distilled +
# its own fit (65%, and its verdict caught looping).
DEFAULT_JUDGE = "distilled"
UNFITTED = "hal32_equal"


def judge_base(judge_id: str) -> str:
    return str(judge_id).split("@")[0].split(":")[0]


def _fitted_on(w) -> str:
    return str(w.fitted_on.get("judge") or "")


def shipped_weights(judge_id: str):
    """The shipped weights fitted on exactly this judge (id and version, or a teacher's
    name such as ``gpt-5``), or None."""
    from engine.scoring.traits import bundled_weights

    found = [w for w in bundled_weights() if _fitted_on(w) == judge_id]
    return max(found, key=lambda w: int(w.version or 0)) if found else None


def researcher_weights(judge_id: str):
    """The newest weights in the data folder fitted on this judge's ratings (``fit-<judge>`` first)."""
    from engine.scoring.traits import user_weights

    found = [w for w in user_weights() if _fitted_on(w) == judge_id]
    if not found:
        return None
    base = judge_base(judge_id)
    return max(found, key=lambda w: (w.id == f"fit-{base}", int(w.version or 0)))


PUBLISHED = "hal16_published"  # fitted on GPT-5's ratings, as the paper's release gives them


def teacher_weights(teacher: str | None):
    """The shipped weights fitted on a distilled judge's teacher (the published ones for
    the GPT-5-distilled judge), or None."""
    return shipped_weights(teacher) if teacher else None


def default_weights(judge_id: str, teacher: str | None = None):
    """The weights ``auto`` means for this judge (see the module docstring)."""
    from engine.scoring.traits import load_weights

    if judge_base(judge_id) == "precomputed":  # ratings read from a file: the release's are GPT-5's
        return load_weights(PUBLISHED)
    return (teacher_weights(teacher) or shipped_weights(judge_id) or researcher_weights(judge_id)
            or load_weights(UNFITTED))


def resolve_weights(judge_id: str, weights: str | None, teacher: str | None = None):
    from engine.scoring.traits import load_weights

    if weights in (None, "", "auto"):
        return default_weights(judge_id, teacher)
    return load_weights(weights)


def mismatch_note(weights, judge_id: str, teacher: str | None = None) -> str | None:
    """A sentence when ``weights`` were not fitted on ``judge_id``'s own ratings (or on its
    ``teacher``'s, the judge a distilled judge was fitted to reproduce), else None."""
    fitted = _fitted_on(weights)
    if fitted == judge_id or (teacher and fitted == teacher):
        return None
    if judge_base(judge_id) == "precomputed" and fitted:
        return (f"{weights.ref} was fitted on {fitted} ratings; this assumes the file's ratings are on "
                "that judge's scale.")
    if not fitted:
        return (f"{weights.ref} was not fitted on any ratings: the score counts human-like traits equally "
                "and p is not calibrated.")
    return (f"{weights.ref} was fitted on {fitted} ratings, not on {judge_id}'s: the scales differ, so the "
            "score can misorder replies.")


# The verdict's evaluator: the first of these that loads and differs from the
# judge and weights a round trained on (engine.training.verdict_checks).
EVALUATORS = (("distilled", "distilled_turing"), ("lexical", "lexical_turing"), ("lexical", PUBLISHED))
