"""What the explaining judge is asked, and how its answers are read.

Prompts are short because the bundled 135M model loses the thread in long
ones. Answers are read defensively: a verdict only when the text names one
side, statements only when the judge wrote them, and every statement that was
thrown away keeps the reason, so weak output is visible and never patched up.
"""

from __future__ import annotations

import re

from engine.scoring.dialogue import Dialogue

MIN_WORDS, MAX_WORDS = 3, 30

VERDICT_ASK = ("In one chat the witness W is a human, in the other an AI. Which chat has the human witness? "
               "Answer with one letter, A or B.")
EXPLAIN_ASK = ("How does the human witness write or behave differently from the AI? Give up to {n} short, "
               "general points, each on its own line starting with '- '.")


def render_side(d: Dialogue, max_turns: int, max_chars: int) -> str:
    """The game as the judge sees it: Q (interrogator) and W (witness) lines, clipped."""
    lines = []
    for t in d.turns[:max_turns]:
        text = " ".join(t.text.split())
        if len(text) > max_chars:
            text = text[: max_chars - 1].rstrip() + "\u2026"
        lines.append(f"{'W' if t.speaker == d.rated_speaker else 'Q'}: {text}")
    return "\n".join(lines)


def verdict_messages(first: str, second: str) -> list[dict]:
    return [{"role": "user", "content": f"Chat A:\n{first}\n\nChat B:\n{second}\n\n{VERDICT_ASK}"}]


def explain_messages(human: str, ai: str, n: int) -> list[dict]:
    return [{"role": "user", "content": (f"Here is a chat whose witness W is a human:\n{human}\n\n"
                                         f"Here is a chat whose witness W is an AI:\n{ai}\n\n"
                                         + EXPLAIN_ASK.format(n=n))}]


# --- reading a verdict -------------------------------------------------------------------------

_SIDE = r"(?:chat|witness|side|conversation|option)?\s*\(?\*{0,2}([AB])\b"
_VERDICT_RULES = [
    (re.compile(r"\bhuman\s*(?:witness)?\s*(?:is|:|=|-|in)\s*(?:in\s+)?(?:the\s+)?" + _SIDE, re.I), False),
    (re.compile(r"\b(?:chat|witness|side|conversation)\s+([AB])\b[^.\n]{0,40}?\b(?:is|seems|was)\s+(?:the\s+|a\s+)?"
                r"human\b", re.I), False),
    (re.compile(r"\b(?:chat|witness|side|conversation)\s+([AB])\b[^.\n]{0,40}?\b(?:is|seems|was)\s+(?:the\s+|an\s+)?"
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


def _clean(text: str) -> str:
    text = re.sub(r"[*_`#]+", "", text)
    text = re.sub(r"^(?:reason|point|statement)\s*\d*\s*[:.-]\s*", "", text.strip(), flags=re.I)
    return text.strip(" \"'\u201c\u201d").strip()


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def parse_statements(text: str, prompt: str, limit: int) -> tuple[list[str], list[dict], str]:
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
    for raw in items:
        s = _clean(raw)
        norm = _norm(s)
        words = norm.split()
        if _TRANSCRIPT.match(raw) or _TRANSCRIPT.match(s):
            reason = "a transcript line, not a statement"
        elif not words or not re.search(r"[A-Za-z]", s):
            reason = "no words"
        elif _PLACEHOLDER.search(s):
            reason = "a format placeholder"
        elif len(words) < MIN_WORDS:
            reason = f"fewer than {MIN_WORDS} words"
        elif len(words) > MAX_WORDS:
            reason = f"more than {MAX_WORDS} words"
        elif len(words) >= 5 and norm in prompt_norm:
            reason = "copied from the prompt"
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
