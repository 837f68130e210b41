"""Measurable surface features of one speaker's lines, shared by the fast judges.

Word lists are matched in one pass over lower-cased word n-grams (dict look-ups),
plus a few cheap regular expressions, so thousands of replies a second fit on one
core. The word lists are the project's own; they measure style, not meaning.
"""

from __future__ import annotations

import re

import numpy as np

from engine.scoring.dialogue import Dialogue

_W = frozenset

SLANG = _W("""lol lmao lmfao rofl omg omfg idk idc tbh ngl imo imho btw brb gtg g2g ttyl ty thx thanks thnx np pls plz
u ur r ya yall y'all yea yeah yep yup nah nope gonna wanna gotta kinda sorta dunno lemme gimme ain't aint cuz cos coz
bc bro bruh dude fr frfr rn irl smh tho tho' thru nvm jk k kk ok okie okey sup wassup wbu hbu wyd hmu af asf ong istg
lowkey highkey deadass bet vibe vibes vibing chill chillin sus cap nocap goat lit fam bestie ig iirc fyi obv obvi prob
probs def defo legit mid based cringe yo hella mad sick dope ppl bday fav fave tmrw tmr tmw convo pic pics vid vids
""".split())

MISSING_APOSTROPHE = _W("""dont cant wont didnt doesnt isnt arent wasnt werent havent hasnt hadnt couldnt wouldnt
shouldnt im ive youre youve theyre thats whats hows wheres theres lets itll ill id""".split()) - {"ill", "id", "lets"}

COMMON_MISSPELLINGS = _W("""teh adn becuase becasue beacuse recieve definately definatly seperate wierd alot untill
thier occured tommorow tomorow truely wich realy acutally actualy probly prolly finaly goverment enviroment
beleive belive freind basicly suprise wat wut tht jst abt bout nd thn""".split())

# Phrase lexicons, matched on lower-cased word n-grams (1-3 words) in one pass.
LEXICONS: dict[str, list[str]] = {
    "question_back": ["and you", "what about you", "how about you", "wbu", "hbu", "and u", "what about u",
                      "how about u", "you", "u", "yourself", "wby"],  # the last three count only before '?'
    "hedge": ["maybe", "probably", "prob", "perhaps", "i guess", "i think", "i suppose", "kinda", "kind of", "sorta",
              "sort of", "around", "roughly", "something like", "or so", "ish", "not sure", "i believe", "might",
              "could be", "i'd say", "possibly", "if i remember", "i forget", "idk", "dunno", "probs"],
    "dont_know": ["idk", "dunno", "i don't know", "i dont know", "i do not know", "no idea", "not sure", "no clue",
                  "can't remember", "cant remember", "don't remember", "dont remember", "forgot", "not certain",
                  "beats me", "i don't really know", "who knows"],
    "self_repair": ["i mean", "i meant", "wait", "actually", "sorry i", "oops", "typo", "or rather", "scratch that",
                    "correction", "what i meant", "my bad"],
    "support": ["sorry to hear", "that sucks", "oh no", "aw", "aww", "awww", "hope you", "hope u", "hope it",
                "hope that", "good luck", "you got this", "that's great", "thats great", "that's awesome",
                "thats awesome", "that's cool", "thats cool", "that's nice", "thats nice", "that's amazing",
                "that's rough", "thats rough", "that's tough", "glad", "congrats", "proud of", "take care",
                "feel better", "nice", "cool", "sounds fun", "sounds good"],
    "farewell": ["bye", "goodbye", "gtg", "g2g", "got to go", "gotta go", "see ya", "see you", "cya", "later",
                 "ttyl", "take care", "nice talking", "nice chatting", "have a good", "good night", "gn", "peace"],
    "meta_ai": ["ai", "bot", "bots", "robot", "chatgpt", "gpt", "language model", "llm", "human", "humans",
                "turing", "computer program", "artificial", "machine", "real person", "a person"],
    "recent": ["today", "yesterday", "tonight", "this morning", "last night", "this week", "last week", "lately",
               "recently", "just got", "just finished", "just woke", "just came", "just had", "just did", "just ate",
               "just went", "earlier", "right now", "rn", "at the moment", "currently", "this weekend"],
    "plans": ["tomorrow", "tmrw", "later", "next week", "next month", "next year", "next time", "this weekend",
              "tonight", "gonna", "going to", "planning", "plan to", "will be", "i'll", "ill be", "about to",
              "after this", "after work", "after class", "this summer", "soon"],
    "routine": ["usually", "every day", "everyday", "every morning", "every night", "every week", "always",
                "most days", "each day", "routine", "after work", "before work", "on weekends", "mornings",
                "evenings", "commute", "my shift", "daily", "normally", "typically"],
    "opinion": ["i think", "i feel like", "honestly", "imo", "imho", "personally", "tbh", "ngl", "overrated",
                "underrated", "best", "worst", "favorite", "favourite", "fav", "fave", "prefer", "love", "hate",
                "better than", "way better", "sucks", "goat", "i'd rather", "rather"],
    "emotion": ["love", "hate", "happy", "sad", "bored", "boring", "tired", "exhausted", "excited", "annoyed",
                "annoying", "ugh", "yay", "glad", "miss", "stressed", "stressful", "fun", "awesome", "sucks",
                "scared", "nervous", "worried", "angry", "mad", "lonely", "hungry", "sleepy", "great", "terrible",
                "awful", "weird", "crazy", "frustrated", "frustrating", "ugh", "meh", "enjoy", "enjoyed"],
    "self_fact": ["i'm a", "im a", "i am a", "i'm an", "i am an", "i work", "i live", "i'm from", "im from",
                  "i am from", "i study", "i'm studying", "my job", "my wife", "my husband", "my kid", "my kids",
                  "my son", "my daughter", "my mom", "my dad", "my brother", "my sister", "my family", "my dog",
                  "my cat", "my girlfriend", "my boyfriend", "my friend", "my friends", "my school", "my class",
                  "my major", "my boss", "my apartment", "my house", "my city", "my town", "years old", "my name"],
    "formal": ["furthermore", "moreover", "additionally", "however", "therefore", "thus", "consequently",
               "overall", "ultimately", "certainly", "absolutely", "indeed", "delighted", "fascinating",
               "intriguing", "assist", "regarding", "various", "numerous", "essentially", "particularly",
               "ensure", "utilize", "whereas", "wonderful", "truly", "quite", "perhaps"],
    "discourse": ["like", "you know", "i mean", "kinda", "sorta", "pretty much", "for sure", "no way", "oh",
                  "well", "anyway", "anyways", "so yeah", "yeah", "nah", "tbh", "honestly", "literally",
                  "basically", "lol", "bet", "yep", "nope", "ok", "okay", "um", "uh", "hmm"],
    "first_person": ["i", "me", "my", "mine", "myself", "i'm", "im", "i've", "ive", "i'll", "i'd"],
    "my": ["my"],
    "you": ["you", "u", "your", "ur", "you're", "youre", "yours", "ya"],
    "slang": sorted(SLANG),
    "missing_apos": sorted(MISSING_APOSTROPHE),
    "misspell": sorted(COMMON_MISSPELLINGS),
}
_LEX = list(LEXICONS)
_PHRASE: dict[str, list[int]] = {}
for _k, _name in enumerate(_LEX):
    for _p in LEXICONS[_name]:
        _PHRASE.setdefault(_p, []).append(_k)
_STARTS = {p.split()[0] for p in _PHRASE if " " in p}
_QB_BARE = {"you", "u", "yourself"}

TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|\?")
LAUGH_TOKEN = re.compile(r"l+o+l+z?|lmf?a+o+|rofl|a?ha(?:ha)+h?|he(?:he)+|xd+|jk|jkjk")
_LAUGH_HEADS = ("l", "h", "a", "x", "j", "r")
EMOJI = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF\U0001F000-\U0001F2FF]"  # pictographs
                   "|(?<!\\S)(?:[:;=8][-']?[)(DPpO/|3*]|<3|xD|XD|\\^_\\^)(?!\\S)")  # emoticons standing alone
ELONGATION = re.compile(r"([a-z])\1{2,}", re.I)
LIST_LINE = re.compile(r"^\s*(?:[-*\u2022]\s|\d+[.)]\s|#{1,6}\s)|\*\*", re.M)
SELF_REPAIR_STAR = re.compile(r"^\*\w|\w\*$", re.M)
TIME_OF_DAY = re.compile(r"\b\d{1,2}\s?(?:am|pm)\b|\bi'?m \d{1,2}\b", re.I)
ODD_SPACING = re.compile(r"\s[,.!?]|[,.][A-Za-z]|[!?]{2,}|,,|  ")
WORD = re.compile(r"[A-Za-z][A-Za-z']*|\d+")
_ASCII_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ASCII_UPPER = _ASCII_LETTERS[:26]
STOP = _W("""the a an and or but to of in on at for with is are was were be been it its it's this that i you me my
your we they he she him her them so do did does not no yes just like what how why when where who""".split())

FEATURE_NAMES = [
    "n_msgs", "n_words", "words_per_msg", "chars_per_msg", "long_msg_frac", "lower_start_frac", "upper_ratio",
    "lower_i_frac", "no_end_punct_frac", "missing_apos_rate", "misspell_rate", "odd_spacing_rate",
    "slang_rate", "emoji_per_msg", "elong_per_msg", "laugh_per_msg", "formal_rate", "list_lines",
    "semicolon_colon_rate", "long_word_rate", "mean_word_len", "contraction_rate", "discourse_rate",
    "question_msg_frac", "question_back_per_msg", "hedge_per_msg", "dont_know_per_msg", "self_repair_per_msg",
    "support_per_msg", "farewell_last", "last_msg_words", "meta_ai_per_msg", "recent_per_msg", "plans_per_msg",
    "routine_per_msg", "opinion_per_msg", "emotion_per_msg", "first_person_rate", "my_rate", "you_rate",
    "self_fact_per_msg", "digit_rate", "proper_noun_rate", "partner_overlap", "exclaim_msg_frac",
    "ellipsis_per_msg",
]
INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
_L = {name: k for k, name in enumerate(_LEX)}


def lexicon_counts(toks: list[str]) -> list[int]:
    """Hits per lexicon among lower-cased tokens, one pass over their 1-3-grams."""
    counts = [0] * len(_LEX)
    phrase, starts = _PHRASE, _STARTS
    n = len(toks)
    for i, t in enumerate(toks):
        hit = phrase.get(t)
        if hit:
            if t in _QB_BARE and (i + 1 >= n or toks[i + 1] != "?"):
                hit = [k for k in hit if k != 0]
            for k in hit:
                counts[k] += 1
        if t in starts and i + 1 < n:
            two = t + " " + toks[i + 1]
            for k in phrase.get(two, ()):
                counts[k] += 1
            if i + 2 < n:
                for k in phrase.get(two + " " + toks[i + 2], ()):
                    counts[k] += 1
    return counts


def line_features(lines: list[str], partner: list[str] | None = None) -> np.ndarray:
    """Feature vector for one speaker's messages (``partner``: the line before each)."""
    lines = [s for s in (x.strip().replace("\u2019", "'") for x in lines) if s]
    f = np.zeros(len(FEATURE_NAMES))
    if not lines:
        return f
    m = len(lines)
    text = "\n".join(lines)
    low = text.lower()
    per_line = [WORD.findall(s) for s in lines]
    words = [w for ws in per_line for w in ws]
    n = max(len(words), 1)
    counts = [len(ws) for ws in per_line]
    raw = text.encode("utf-8")
    letters = (len(raw) - len(raw.translate(None, _ASCII_LETTERS))) or 1  # ASCII letters: cheap and enough
    uppers = len(raw) - len(raw.translate(None, _ASCII_UPPER))
    firsts = [c for c in (next((c for c in s if c.isalpha()), "") for s in lines) if c]
    i_tokens = [w[0] for w in words if w[0] in "iI" and w.lower() in ("i", "i'm", "i've", "i'll", "i'd", "im", "ive")]
    toks = TOKEN.findall(low)
    lex = lexicon_counts(toks)
    digits = sum(w.isdigit() for w in words)
    laughs = sum(1 for t in toks if t[0] in _LAUGH_HEADS and len(t) > 1 and LAUGH_TOKEN.fullmatch(t))
    laughs += text.count(";)") + low.count(":p")
    emoji = len(EMOJI.findall(text)) if (not text.isascii() or any(c in text for c in ":;=<^")) else 0
    per_msg = lambda name: lex[_L[name]] / m  # noqa: E731
    per_word = lambda name: lex[_L[name]] / n  # noqa: E731
    f[:] = (
        m, len(words), sum(counts) / m, len(text) / m, sum(c > 25 for c in counts) / m,
        (sum(map(str.islower, firsts)) / len(firsts)) if firsts else np.nan,
        uppers / letters,
        (i_tokens.count("i") / len(i_tokens)) if i_tokens else np.nan,
        sum(s[-1] not in ".!?)\u2026" for s in lines) / m,
        per_word("missing_apos"), per_word("misspell"), len(ODD_SPACING.findall(text)) / n,
        per_word("slang"), emoji / m, len(ELONGATION.findall(text)) / m,
        laughs / m, per_word("formal"), len(LIST_LINE.findall(text)),
        (text.count(";") + text.count(":") + text.count("\u2014")) / n,
        sum(len(w) >= 9 for w in words) / n, sum(map(len, words)) / n,
        (low.count("'") + lex[_L["missing_apos"]]) / n, per_word("discourse"),
        sum("?" in s for s in lines) / m, per_msg("question_back"), per_msg("hedge"), per_msg("dont_know"),
        (lex[_L["self_repair"]] + (len(SELF_REPAIR_STAR.findall(text)) if "*" in text else 0)) / m, per_msg("support"),
        float(bool(lexicon_counts(TOKEN.findall(lines[-1].lower()))[_L["farewell"]])), counts[-1],
        per_msg("meta_ai"), per_msg("recent"),
        (lex[_L["plans"]] + (len(TIME_OF_DAY.findall(text)) if digits else 0)) / m,
        per_msg("routine"), per_msg("opinion"), per_msg("emotion"), per_word("first_person"), per_word("my"),
        per_word("you"), per_msg("self_fact"), digits / n,
        _proper_nouns(lines) / n,
        _overlap(partner, lines) if partner is not None else np.nan,
        sum("!" in s for s in lines) / m, (low.count("...") + low.count("\u2026")) / m,
    )
    return f


def _proper_nouns(lines: list[str]) -> int:
    """Capitalised words that do not start a sentence: names of people, places, things."""
    hits = 0
    for s in lines:
        if s[1:].islower() or s[1:].isupper():  # no capital after the first letter, or all caps
            continue
        prev_end = True
        for t in s.split():
            if not prev_end and t[:1].isupper() and t[1:2].islower() and t.lower() not in STOP:
                hits += 1
            prev_end = t[-1:] in ".!?"
    return hits


def _overlap(partner: list[str], lines: list[str]) -> float:
    """Mean share of the partner's content words that the reply takes up."""
    shares = []
    for before, reply in zip(partner, lines):
        said = {w for w in TOKEN.findall(before.lower()) if len(w) > 2} - STOP
        if not said:
            continue
        got = set(TOKEN.findall(reply.lower()))
        shares.append(len(said & got) / len(said))
    return sum(shares) / len(shares) if shares else np.nan


def dialogue_features(d: Dialogue) -> np.ndarray:
    pairs = [(p, r) for p, r in d.exchanges() if r.strip()]
    return line_features([r for _, r in pairs], [p for p, _ in pairs])


def feature_matrix(dialogues: list[Dialogue]) -> np.ndarray:
    return np.vstack([dialogue_features(d) for d in dialogues]) if dialogues else np.zeros((0, len(FEATURE_NAMES)))


STYLE_NAMES = ["mixed_lower_start", "mixed_end_punct", "msg_length_cv"]


def style_consistency(dialogues: list[Dialogue]) -> np.ndarray:
    """How much a speaker's style varies from message to message (NaN below two messages).

    People mix: some messages start in lower case and some do not, some end with
    punctuation and some do not, lengths vary. A chat model keeps one style, whichever
    it is told to keep (all capitalised and punctuated, or all lower case). In the Turing
    games the human sides average 0.25 / 0.42 / 0.59 on these three, every AI system
    0.18 / 0.37 / 0.44 or less (ELIZA 0 / 0 / 0.37). ``4p(1-p)`` is 0 when every message
    does the same and 1 when half do.
    """
    out = np.full((len(dialogues), len(STYLE_NAMES)), np.nan)
    for i, d in enumerate(dialogues):
        msgs = [m.strip() for m in d.speaker_lines() if m.strip()]
        if len(msgs) < 2:
            continue
        lower = float(np.mean([m[0].islower() for m in msgs]))
        punct = float(np.mean([m[-1] in ".!?" for m in msgs]))
        words = np.array([len(m.split()) for m in msgs], dtype=float)
        out[i] = [4 * lower * (1 - lower), 4 * punct * (1 - punct), words.std() / max(words.mean(), 1.0)]
    return out
