"""What the explaining judge is asked, and how its answers are read.

Prompts are short because the bundled 135M model loses the thread in long
ones. Answers are read defensively: a verdict only when the text names one
side, statements only when the judge wrote them, and every statement that was
thrown away keeps the reason, so weak output is visible and never patched up.
"""

from __future__ import annotations

import re

from engine.discovery.candidates import dictionary
from engine.scoring.dialogue import Dialogue

MIN_WORDS, MAX_WORDS = 3, 30

CONTEXTS = ("witness", "full")


def render_side(d: Dialogue, max_turns: int, max_chars: int, context: str = "witness") -> str:
    """One side as the judge sees it, clipped: the witness's messages ("- ..."), or the
    whole exchange as Q (interrogator) and W (witness) lines."""
    lines = []
    for t in d.turns[:max_turns]:
        text = " ".join(t.text.split())
        if len(text) > max_chars:
            text = text[: max_chars - 1].rstrip() + "\u2026"
        if context == "full":
            lines.append(f"{'W' if t.speaker == d.rated_speaker else 'Q'}: {text}")
        elif t.speaker == d.rated_speaker:
            lines.append(f"- {text}")
    return "\n".join(lines)


def verdict_messages(first: str, second: str, context: str = "witness") -> list[dict]:
    if context == "full":
        head, ask = "Chat", ("In one chat the witness W is a human, in the other an AI. Which chat has the human "
                             "witness? Answer with one letter, A or B.")
    else:
        head, ask = "Messages by writer", ("One writer is a human, the other an AI. Which writer is the human? "
                                           "Answer with one letter, A or B.")
    return [{"role": "user", "content": f"{head} A:\n{first}\n\n{head} B:\n{second}\n\n{ask}"}]


def explain_messages(human: str, ai: str, n: int, context: str = "witness") -> list[dict]:
    if context == "full":
        body = (f"Here is a chat whose witness W is a human:\n{human}\n\n"
                f"Here is a chat whose witness W is an AI:\n{ai}\n\n"
                "How does the human witness write or behave differently from the AI?")
    else:
        body = (f"Messages written by a human:\n{human}\n\nMessages written by an AI:\n{ai}\n\n"
                "How does the human write differently from the AI?")
    return [{"role": "user", "content": f"{body} Give {n} short general points, each on its own line starting "
                                        "with '- '."}]


# --- reading a verdict -------------------------------------------------------------------------

_NOUN = r"(?:chat|witness|side|conversation|option|writer|person|speaker)"
_L = r"(?-i:([AB]))"  # the letter itself is case-sensitive: "a human" is not side A
_SIDE = rf"(?:{_NOUN}\s*)?\(?\*{{0,2}}{_L}\b"
_VERDICT_RULES = [
    (re.compile(r"\bhuman\s*(?:witness|writer)?\s*(?:is|:|=|-|in)\s*(?:in\s+)?(?:the\s+)?(?:one\s+)?" + _SIDE, re.I),
     False),
    (re.compile(rf"\b(?:{_NOUN}\s+)?{_L}\b[^.\n]{{0,40}}?\b(?:is|seems|was)\s+(?:the\s+|a\s+)?(?:real\s+)?human\b",
                re.I), False),
    (re.compile(rf"\b(?:{_NOUN}\s+)?{_L}\b[^.\n]{{0,40}}?\b(?:is|seems|was)\s+(?:the\s+|an\s+|a\s+)?"
                r"(?:AI|bot|machine|computer)\b", re.I), True),
]
_BARE_LETTER = re.compile(r"^[\W_]{0,4}(?:answer|chat|human)?[\W_]{0,3}([AB])[\W_]{0,4}$", re.I)


def parse_verdict(text: str) -> tuple[str | None, str]:
    """('A'/'B', '') or (None, why not). A side named as the AI points to the other one."""
    if not text or not text.strip():
        return None, "empty answer"
    head = text.strip()[:400]
    for pattern, names_ai in _VERDICT_RULES:
        m = pattern.search(head)
        if m:
            side = m.group(1).upper()
            if re.search(rf"\b(?:not|isn't|is not)\s+(?:the\s+|a\s+)?human\b", head[m.start(): m.end() + 20], re.I):
                names_ai = not names_ai
            return ({"A": "B", "B": "A"}[side] if names_ai else side), ""
    m = _BARE_LETTER.match(head.split("\n", 1)[0].strip())  # "B", "**A**", "(B)." on the first line
    if m:
        return m.group(1).upper(), ""
    return None, "no side named as the human"


# --- reading statements ------------------------------------------------------------------------

_LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022\u2013]|\d{1,2}[.)]|\(\d{1,2}\))\s+(.+?)\s*$")
_TRANSCRIPT = re.compile(r"^\s*(?:Q|W|A|B|I|User|Assistant|Human|AI|Witness|Interrogator|Chat [AB])\s*:", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_FILLER = set("""the a an is are was were be been seems seem seemed because they them their he she it its this that
witness witnesses human humans ai chat chats conversation side person real more less than so very also and or but
of in to as like one other which who what than does do did not no yes b i you""".split())
_PLACEHOLDER = re.compile(r"<[^>]*>|\breason\s*\d*\s*$|\bpoint\s*\d*\s*$", re.I)
_FIRST_PERSON = re.compile(r"^(?:(?:hello|hi|hey)\b\W*)?(?:i|i'm|im|i've|i'd|i'll|my|me|we|we're|our)\b", re.I)
_SPEAKS = re.compile(r"\b(?:i'm|i am|i've|i have|i was|i like|i love|i think|i'd|i will|i'll)\b", re.I)
_ABOUT = re.compile(r"\b(?:human|humans|writer|witness|they|their|them|ai|person|people|speaker|one)\b", re.I)
_DANGLING = set("a an the of to and or but with in on for as by that which is are was were their its his her".split())


def _clean(text: str) -> str:
    text = re.sub(r"[*_`#]+", "", text).strip()
    text = re.sub(r"^\d{1,2}[.)]\s*", "", text)  # "- 1. ..." numbered inside a bullet
    text = re.sub(r"^(?:reason|point|statement|difference)\s*\d*\s*[:.-]\s*", "", text, flags=re.I)
    head, sep, rest = text.partition(": ")
    if sep and rest and len(head.split()) <= 3 and not _TRANSCRIPT.match(text):
        text = rest  # "Style: Uses ..." -> "Uses ..."
    return text.strip(" \"'\u201c\u201d").strip()


def _copied(norm: str, source: str) -> bool:
    """Most of the statement's word 4-grams (or all of a short one) occur in the prompt."""
    words = norm.split()
    if len(words) < 4:
        return f" {norm} " in f" {source} "
    grams = [" ".join(words[i:i + 4]) for i in range(len(words) - 3)]
    return sum(g in source for g in grams) / len(grams) >= 0.5


def _gibberish(words: list[str]) -> bool:
    """Fewer than half of the longer words are in the dictionary (keyboard mash, another script)."""
    vocab = dictionary()
    long = [w for w in words if w.isalpha() and len(w) >= 3]
    return bool(vocab) and len(long) >= 2 and sum(w in vocab for w in long) < len(long) / 2


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def parse_statements(text: str, prompt: str, limit: int, cut: bool = False) -> tuple[list[str], list[dict], str]:
    """(statements kept, [{text, reason}] thrown away, 'list' or 'sentences').

    List items are taken when the answer has any; otherwise its sentences, so a
    judge that ignores the format is still read, but only for what it wrote.
    """
    lines = [ln for ln in (text or "").replace("\r", "").split("\n") if ln.strip()]
    items = [m.group(1) for m in map(_LIST_ITEM.match, lines) if m]
    form = "list"
    if not items:
        form = "sentences"
        body = " ".join(ln for ln in lines if parse_verdict(ln)[0] is None or len(ln.split()) > 6)
        items = [s for s in _SENTENCE.split(body) if s.strip()]
    prompt_norm = _norm(prompt)
    kept, thrown, seen = [], [], set()
    for k, raw in enumerate(items):
        s = _clean(raw)
        norm = _norm(s)
        words = norm.split()
        if _TRANSCRIPT.match(raw) or _TRANSCRIPT.match(s):
            reason = "a transcript line, not a statement"
        elif cut and k == len(items) - 1 and not s.endswith((".", "!", "?", ")")):
            reason = "cut off by the token limit"
        elif words and words[-1] in _DANGLING and not s.endswith((".", "!", "?")):
            reason = "cut off mid-sentence"
        elif s.endswith(":"):
            reason = "a heading, not a statement"
        elif _FIRST_PERSON.match(s) or (_SPEAKS.search(s) and not _ABOUT.search(s)):
            reason = "written as a chat message (first person), not about the writer"
        elif not words or not re.search(r"[A-Za-z]", s):
            reason = "no words"
        elif _PLACEHOLDER.search(s):
            reason = "a format placeholder"
        elif len(words) < MIN_WORDS:
            reason = f"fewer than {MIN_WORDS} words"
        elif len(words) > MAX_WORDS:
            reason = f"more than {MAX_WORDS} words"
        elif _gibberish(words):
            reason = "mostly not words (garbage)"
        elif _copied(norm, prompt_norm):
            reason = "copied from the chats or the question"
        elif len(words) >= 6 and " ".join(words[:4]) in prompt_norm:
            reason = "starts with a quote from the chats (a comment on one line, not a general point)"
        elif len([w for w in words if w not in _FILLER]) < 2:
            reason = "says nothing beyond the verdict"
        elif norm in seen:
            reason = "repeats an earlier statement"
        elif len(kept) >= limit:
            reason = f"beyond the first {limit}"
        else:
            kept.append(s if s.endswith((".", "!", "?")) else s + ".")
            seen.add(norm)
            continue
        thrown.append({"text": s[:200], "reason": reason})
    return kept, thrown, form
