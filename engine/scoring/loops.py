"""A degeneracy ("loop") detector for chat replies: a fixed, documented rule.

Small models, and adapters pushed too far, fall into loops: the same word
again and again, a sentence repeated until the token limit, a run of one
character, or letters that are no longer words. A reply is *looping* when
any one of these rules fires (thresholds are module constants; the policy and
its tested agreement are in ``engine/scoring/README.md``):

``word_run``         the same word LOOP_WORD_RUN (5) or more times in a row
                     ("no no no no no"); "ha ha ha" is fine.
``repeated_phrase``  a phrase of 3 to 10 words said LOOP_PHRASE_MIN_COUNT (3) or
                     more times, its copies covering at least LOOP_PHRASE_COVERAGE
                     (50%) of the reply's words.
``repeated_3grams``  with at least LOOP_3GRAM_MIN (10) word 3-grams, the share of
                     3-grams already seen earlier in the reply is at least
                     LOOP_3GRAM_SHARE (0.30): loops over a cycle of sentences.
``char_run``         one character LOOP_CHAR_RUN (10) or more times in a row
                     ("!!!!!!!!!!", "aaaaaaaaaaaa"; layout runs such as "-----"
                     and whitespace are not counted), or a short pattern of 2–4
                     characters repeated LOOP_PATTERN_REPEATS (8) or more times
                     ("hahahahahahahahaha...").
``gibberish``        at least LOOP_GIBBERISH_MIN (3) letter strings that are not
                     words (no vowel, or six consonants in a row) making up at
                     least LOOP_GIBBERISH_SHARE (25%) of the words.

``loop_reason(text)`` names the first rule that fires (with a short quote of
what fired it) or returns None; ``is_looping(text)`` is ``loop_reason(text) is
not None``. Pure Python, no model: cheap enough to run on every stored reply.
"""

from __future__ import annotations

import re
from collections import Counter

LOOP_RULES_VERSION = 1
LOOP_WORD_RUN = 5
LOOP_PHRASE_MIN_N, LOOP_PHRASE_MAX_N = 3, 10
LOOP_PHRASE_MIN_COUNT = 3
LOOP_PHRASE_COVERAGE = 0.5
LOOP_3GRAM_MIN = 10
LOOP_3GRAM_SHARE = 0.30
LOOP_CHAR_RUN = 10
LOOP_PATTERN_REPEATS = 8
LOOP_GIBBERISH_MIN = 3
LOOP_GIBBERISH_SHARE = 0.25

RULES = ("word_run", "repeated_phrase", "repeated_3grams", "char_run", "gibberish")

_WORD = re.compile(r"\S+")
_EDGE_PUNCT = re.compile(r"^[^\w]+|[^\w]+$", re.UNICODE)
_LAYOUT = set("-=_~*#.·•|/\\+ \t\r\n")  # runs of these are layout (rules, ellipses), not loops
_PATTERN = re.compile(r"(.{2,4}?)\1{%d,}" % (LOOP_PATTERN_REPEATS - 1), re.DOTALL)
_VOWELS = set("aeiouy")
_NOT_PROSE = re.compile(r"http|www\.|[@/\\\d_]", re.I)
_CONSONANT_RUN = re.compile(r"[bcdfghjklmnpqrstvwxz]{6,}")


def words(text: str) -> list[str]:
    """Lower-cased words with punctuation stripped from their ends; tokens that
    are punctuation only are dropped."""
    out = []
    for raw in _WORD.findall(text.lower()):
        word = _EDGE_PUNCT.sub("", raw)
        if word:
            out.append(word)
    return out


def _quote(s: str, limit: int = 40) -> str:
    s = " ".join(s.split())
    return s if len(s) <= limit else s[:limit - 1] + "…"


def _word_run(ws: list[str]) -> str | None:
    run = 1
    for i in range(1, len(ws)):
        run = run + 1 if ws[i] == ws[i - 1] else 1
        if run >= LOOP_WORD_RUN:
            return f"word_run: {ws[i]!r} {LOOP_WORD_RUN}+ times in a row"
    return None


def _repeated_phrase(ws: list[str]) -> str | None:
    total = len(ws)
    if total < LOOP_PHRASE_MIN_N * LOOP_PHRASE_MIN_COUNT:
        return None
    best = None
    for n in range(LOOP_PHRASE_MIN_N, min(LOOP_PHRASE_MAX_N, total // LOOP_PHRASE_MIN_COUNT) + 1):
        positions: dict[tuple, list[int]] = {}
        for i in range(total - n + 1):
            positions.setdefault(tuple(ws[i:i + n]), []).append(i)
        for gram, starts in positions.items():
            count, last = 0, -n  # copies that do not overlap
            for s in starts:
                if s >= last + n:
                    count, last = count + 1, s
            if count >= LOOP_PHRASE_MIN_COUNT:
                coverage = count * n / total
                if coverage >= LOOP_PHRASE_COVERAGE and (best is None or coverage > best[0]):
                    best = (coverage, gram, count)
    if best is None:
        return None
    coverage, gram, count = best
    return f"repeated_phrase: {_quote(' '.join(gram))!r} {count} times ({coverage:.0%} of the words)"


def _repeated_3grams(ws: list[str]) -> str | None:
    grams = [tuple(ws[i:i + 3]) for i in range(len(ws) - 2)]
    if len(grams) < LOOP_3GRAM_MIN:
        return None
    seen: set[tuple] = set()
    repeats = 0
    for g in grams:
        if g in seen:
            repeats += 1
        seen.add(g)
    share = repeats / len(grams)
    if share >= LOOP_3GRAM_SHARE:
        top = Counter(grams).most_common(1)[0][0]
        return f"repeated_3grams: {share:.0%} of 3-grams repeat (e.g. {_quote(' '.join(top))!r})"
    return None


def _char_run(text: str) -> str | None:
    run, prev = 0, ""
    for ch in text:
        run = run + 1 if ch == prev else 1
        prev = ch
        if run >= LOOP_CHAR_RUN and ch not in _LAYOUT:
            return f"char_run: {ch!r} {LOOP_CHAR_RUN}+ times in a row"
    for m in _PATTERN.finditer(text):
        unit = m.group(1)
        if not set(unit) <= _LAYOUT and len(set(unit)) > 1:
            return f"char_run: {unit!r} repeated {len(m.group(0)) // len(unit)} times"
    return None


def _is_gibberish(raw: str) -> bool:
    letters = "".join(ch for ch in raw if ch.isalpha())
    if len(letters) < 4 or not letters.isascii():
        return False
    if letters.isupper():  # acronyms: NYC, HTML
        return False
    low = letters.lower()
    if len(set(low)) <= 2:  # hmmm, zzzz, brrr, shhh
        return False
    return not (set(low) & _VOWELS) or bool(_CONSONANT_RUN.search(low))


def _gibberish(text: str) -> str | None:
    raw_words = [w for w in _WORD.findall(text) if any(ch.isalpha() for ch in w)]
    # addresses, handles and codes are not words but are not gibberish either
    bad = [w for w in raw_words if not _NOT_PROSE.search(w) and _is_gibberish(w)]
    if len(bad) >= LOOP_GIBBERISH_MIN and len(bad) / len(raw_words) >= LOOP_GIBBERISH_SHARE:
        return f"gibberish: {len(bad)} of {len(raw_words)} words are not words (e.g. {_quote(bad[0], 20)!r})"
    return None


def loop_reason(text: str) -> str | None:
    """Why this reply counts as looping (``"<rule>: <detail>"``), or None."""
    if not isinstance(text, str) or not text.strip():
        return None
    ws = words(text)
    for check in (lambda: _word_run(ws), lambda: _repeated_phrase(ws), lambda: _repeated_3grams(ws),
                  lambda: _char_run(text), lambda: _gibberish(text)):
        reason = check()
        if reason:
            return reason
    return None


def is_looping(text: str) -> bool:
    """True when the reply is degenerate by any rule in this module."""
    return loop_reason(text) is not None


def loop_rule(reason: str | None) -> str | None:
    """The rule name of a ``loop_reason`` string (``"word_run"``...), or None."""
    return reason.split(":", 1)[0] if reason else None
