"""The llm judge: a local language model asked about each trait, read from its
next-token probabilities over the digits 1..5.

The rating is an expectation, Σ p_k·k with p renormalised over the five digits,
not a parsed string, so it is graded and never fails to parse. The dialogue and
the instructions come first in every prompt and the trait's statement last, so
all traits of one reply share the dialogue's computation: the backend decodes
the common prefix once and only each trait's short tail on top of it.

Backends: llama.cpp for a GGUF file (the bundled SmolLM2 by default) through
``engine.models.llamacpp_scoring``; transformers for a model folder through
``HFModel.suffix_logprobs``. An already loaded model of either kind can be lent.
Bump ``PROMPT_VERSION`` whenever the prompt changes: it is part of the judge id,
so cached ratings of an older prompt are never reused.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from engine.errors import EngineError
from engine.scoring.dialogue import Dialogue
from engine.scoring.judges.base import Judge, JudgeUnavailable, Ratings, RatingError

PROMPT_VERSION = 1
DIGITS = ["1", "2", "3", "4", "5"]
RATED, PARTNER = "Speaker", "Partner"
SYSTEM = ("You read chat transcripts and judge how one person in them comes across. "
          "You answer with a single digit from 1 to 5.")
# The tail after the shared head is only the statement and the template's
# end of turn, so rating all traits costs little more than rating one.
HEAD = ("Here is a chat between {partner} and {rated}.\n\n{transcript}\n\n"
        "Rate how true the statement is of {rated}, judging only from how {rated} writes above: "
        "1 = not at all, 2 = a little, 3 = partly, 4 = mostly, 5 = completely. Reply with the digit.\n"
        "Statement about {rated}:")
QUESTION = " {statement}"
# Opening the answer for the model keeps ~95% of its next-token mass on the
# digits (SmolLM2-135M: ~9% without it, where it would rather start a sentence).
ANSWER_START = "Rating: "
MAX_LINE_CHARS = 1200


def file_identity(path: Path) -> str:
    """Name, size and a digest of the first and last MiB: names the weights
    in a cache key without reading a multi-GB file whole."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.suffix in (".json", ".safetensors", ".jinja", ".model", ".txt") and p.is_file())
        for p in files:
            h.update(p.name.encode() + str(p.stat().st_size).encode())
            with open(p, "rb") as fh:
                h.update(fh.read(1 << 20))
        return f"{path.name}-{h.hexdigest()[:12]}"
    size = path.stat().st_size
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        fh.seek(max(0, size - (1 << 20)))
        h.update(fh.read(1 << 20))
    return f"{path.name}-{size}-{h.hexdigest()[:12]}"


def read_digits(logprobs: np.ndarray) -> dict:
    """Expected rating, the renormalised distribution, its entropy and how much
    of the model's full next-token probability fell on the five digits."""
    lp = np.asarray(logprobs, dtype=np.float64)
    top = lp.max()
    w = np.exp(lp - top)
    p = w / w.sum()
    entropy = float(-(p * np.log(np.clip(p, 1e-300, None))).sum())
    return {"rating": float(np.dot(p, np.arange(1, 6))), "p": [round(float(x), 6) for x in p],
            "entropy": round(entropy, 6), "confidence": round(1.0 - entropy / math.log(5), 6),
            "digit_mass": round(float(np.exp(lp).sum()), 6)}


class _LlamaBackend:
    """Token-level prompts on llama.cpp; the common prefix is found on tokens."""

    kind = "llamacpp"

    def __init__(self, path: Path | None, loaded=None, n_threads: int | None = None, n_ctx: int = 2048,
                 forks: int = 0):
        from engine.models.llamacpp import LlamaCppModel
        from engine.models.llamacpp_scoring import PrefixScorer

        self.owned = loaded is None
        self.model = loaded or LlamaCppModel(path, n_ctx_per_seq=n_ctx, max_seqs=1, n_threads=n_threads)
        self.path = Path(self.model.path)
        self.n_ctx = min(n_ctx, int(getattr(self.model, "n_ctx_per_seq", n_ctx)))
        self.scorer = PrefixScorer(self.model, n_ctx=self.n_ctx, forks=forks, n_threads=n_threads)
        self.cands = []
        for d in DIGITS:
            ids = self._plain_tokens(d)
            if len(ids) != 1:
                raise JudgeUnavailable(f"{self.path.name} does not spell the digit {d} as one token",
                                       detail="the llm judge reads single-token digits")
            self.cands.append(ids[0])

    def _plain_tokens(self, text: str) -> list[int]:
        from llama_cpp import llama_cpp as ll

        vocab = getattr(self.model, "vocab_ptr", None) or getattr(self.model, "_vocab")
        data = text.encode("utf-8")
        buf = (ll.llama_token * (len(data) + 8))()
        n = ll.llama_tokenize(vocab, data, len(data), buf, len(buf), False, False)
        return list(buf[:max(n, 0)])

    def render(self, messages: list[dict]) -> str:
        return self.model.render(messages)

    def specials(self) -> list[str]:
        return self.model.special_texts()

    def count(self, text: str) -> int:
        return len(self._plain_tokens(text))

    def logprobs(self, prompts: list[str], shared: bool = True) -> np.ndarray:
        return self.scorer.logprobs([self.model.tokenize(p) for p in prompts], self.cands, shared=shared)

    def close(self) -> None:
        self.scorer.close()
        if self.owned:
            self.model.close()


class _HFBackend:
    """Text-level prompts on transformers: the prefix is cut at a line break
    and the rest of each prompt is scored from a copy of its KV cache."""

    kind = "transformers"

    def __init__(self, path: Path | None, loaded=None, source_kind: str = "hf"):
        from engine.models.hf import HFModel

        self.owned = loaded is None
        self.model = loaded or HFModel(path, source_kind=source_kind)
        self.path = Path(self.model.path)
        self.n_ctx = int(self.model.n_ctx)

    def render(self, messages: list[dict]) -> str:
        tok = self.model.tokenizer
        if not tok.chat_template:
            raise JudgeUnavailable(f"{self.path.name} has no chat template; the llm judge needs one")
        from engine.models.template_limits import chat_prompt

        return chat_prompt(tok, messages)

    def specials(self) -> list[str]:
        return self.model.special_texts()

    def count(self, text: str) -> int:
        return len(self.model._tokenize(text))

    def logprobs(self, prompts: list[str], shared: bool = True) -> np.ndarray:
        if not shared or len(prompts) == 1:
            rows = [self.model.suffix_logprobs(p, [""], DIGITS)[0] for p in prompts]
        else:
            common = prompts[0]
            for p in prompts[1:]:
                n = 0
                while n < min(len(common), len(p)) and common[n] == p[n]:
                    n += 1
                common = common[:n]
            cut = common.rfind("\n") + 1  # tokenizers do not merge across a line break before text
            if cut <= 0:
                return self.logprobs(prompts, shared=False)
            rows = self.model.suffix_logprobs(prompts[0][:cut], [p[cut:] for p in prompts], DIGITS)
        return np.array([[r[d] for d in DIGITS] for r in rows])

    def close(self) -> None:
        if self.owned:
            self.model.close()


class LLMJudge(Judge):
    """Rates every trait of a questionnaire for one speaker with a local model.

    ``model``: "bundled" (default), a .gguf path, a model folder, or a loaded
    LlamaCppModel / HFModel to borrow. ``backend``: auto, llamacpp or
    transformers (transformers can also read a .gguf, dequantised).
    """

    name = "llm"

    def __init__(self, questionnaire=None, cache=True, model=None, backend: str = "auto",
                 max_prompt_tokens: int = 1536, n_threads: int | None = None, forks: int = 0):
        super().__init__(questionnaire, cache)
        self._lock = threading.Lock()
        self.max_prompt_tokens = int(max_prompt_tokens)
        self.backend = self._open(model, backend, n_threads, forks)
        self.model_id = file_identity(self.backend.path)
        q = hashlib.sha256(repr([(t.id, t.statement) for t in self.questionnaire.traits]).encode()).hexdigest()
        self._qdigest = q[:8]
        self._details: OrderedDict[str, dict] = OrderedDict()

    def _open(self, model, backend: str, n_threads, forks):
        from engine.models.spec import BUNDLED, resolve_source

        if backend not in ("auto", "llamacpp", "transformers"):
            raise JudgeUnavailable(f"unknown llm backend {backend!r}")
        if model is not None and not isinstance(model, (str, Path)):
            if getattr(model, "backend", "") == "llamacpp":
                return _LlamaBackend(None, loaded=model, n_threads=n_threads, forks=forks)
            if getattr(model, "backend", "") == "transformers":
                return _HFBackend(None, loaded=model)
            raise JudgeUnavailable(f"cannot judge with a loaded {type(model).__name__}")
        kind, path = resolve_source(str(model or BUNDLED))
        if kind == "hf" or backend == "transformers":
            return _HFBackend(path, source_kind=kind)
        return _LlamaBackend(path, n_threads=n_threads, forks=forks)

    @property
    def judge_id(self) -> str:
        """Prompt version, backend, weights file and trait wording: all change ratings."""
        return f"llm@{PROMPT_VERSION}:{self.backend.kind}:{self.model_id}:q{self._qdigest}"

    def describe(self) -> dict:
        return {**super().describe(), "model": str(self.backend.path), "backend": self.backend.kind}

    # ----------------------------------------------------------- prompting
    def _specials(self) -> list[str]:
        """Control-token texts of the judge's model (longer than one character)."""
        if getattr(self, "_special_cache", None) is None:
            self._special_cache = [s for s in self.backend.specials() if len(s) > 1]
        return self._special_cache

    def _transcript(self, dialogue: Dialogue, budget: int) -> str:
        """Lines as 'Speaker:' / 'Partner:', oldest dropped first to fit ``budget`` tokens."""
        lines = []
        specials = self._specials()
        for t in dialogue.turns:
            text = " ".join(t.text.split())
            if not text:
                continue
            for s in specials:  # the rated text is never the prompt's markup: break control-token text
                if s in text:
                    text = text.replace(s, s[0] + "\u200b" + s[1:])
            if len(text) > MAX_LINE_CHARS:
                text = text[:MAX_LINE_CHARS] + " ..."
            lines.append(f"{RATED if t.speaker == dialogue.rated_speaker else PARTNER}: {text}")
        kept, used = [], 0
        for line in reversed(lines):
            n = self.backend.count(line) + 1
            if kept and used + n > budget:
                break
            kept.append(line)
            used += n
        kept.reverse()
        if len(kept) < len(lines):
            kept.insert(0, "(earlier lines left out)")
        return "\n".join(kept)

    def prompts(self, dialogue: Dialogue, trait_ids: list[int] | None = None) -> list[str]:
        """The full prompt text for each trait (in questionnaire order, or ``trait_ids``)."""
        overhead = self.backend.count(SYSTEM + HEAD + QUESTION) + 80
        budget = max(64, min(self.max_prompt_tokens, self.backend.n_ctx - 8) - overhead)
        head = HEAD.format(partner=PARTNER, rated=RATED, transcript=self._transcript(dialogue, budget))
        ids = trait_ids or self.questionnaire.trait_ids
        return [self.backend.render([
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": head + QUESTION.format(statement=self.questionnaire.trait(tid).statement)},
        ]) + ANSWER_START for tid in ids]

    # ------------------------------------------------------------- rating
    def rate_detailed(self, dialogue: Dialogue, shared: bool = True,
                      trait_ids: list[int] | None = None) -> dict[int, dict]:
        """Per trait: rating, p over 1..5, entropy, confidence, digit mass (no cache)."""
        ids = trait_ids or self.questionnaire.trait_ids
        with self._lock:
            lp = self.backend.logprobs(self.prompts(dialogue, ids), shared=shared)
        return {tid: read_digits(row) for tid, row in zip(ids, lp)}

    def _rate_batch(self, dialogues: list[Dialogue]) -> list[Ratings | RatingError]:
        out: list[Ratings | RatingError] = []
        for d in dialogues:
            try:
                detail = self.rate_detailed(d)
            except EngineError as exc:
                out.append(RatingError(exc.message, item=d.id, detail=exc.detail))
                continue
            self._remember(d.digest(), detail)
            out.append({tid: round(v["rating"], 4) for tid, v in detail.items()})
        return out

    def _remember(self, digest: str, detail: dict) -> None:
        self._details[digest] = detail
        while len(self._details) > 2048:
            self._details.popitem(last=False)
        if self.cache:
            self.cache.put_many(self.judge_id + "#detail", self.questionnaire.ref,
                                [(digest, {tid: v for tid, v in detail.items()})])

    def details(self, dialogue: Dialogue) -> dict[int, dict] | None:
        """The distribution behind each rating of an item rated before (memory or cache)."""
        digest = dialogue.digest()
        if digest in self._details:
            return self._details[digest]
        if self.cache:
            found = self.cache.get_many(self.judge_id + "#detail", self.questionnaire.ref, [digest])
            return found.get(digest)
        return None

    def close(self) -> None:
        self.backend.close()
