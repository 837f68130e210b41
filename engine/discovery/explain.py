"""The explanation path: a judge picks the human of each game and says what gave it away.

Per game: the verdict, asked with the chats in both orders (human shown as A,
then as B), since judges lean towards one letter: from letter logits the mean
difference of the two orders cancels a fixed pull; from text a verdict counts
only when both orders point at the same chat (answering "A" both times names
two different chats, so it is no verdict, never a right one). Then the
judge is asked how the side it picked writes differently from the other
(``explain_from="truth"`` shows it the real human instead). Statements are
clustered into themes. The verdict accuracy is reported against the paper's
best judge (GPT-5, 64.8%).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from engine.discovery.clusters import cluster_statements
from engine.discovery.prompts import (CONTEXTS, explain_messages, parse_statements, parse_verdict, render_side,
                                      verdict_messages)
from engine.errors import BadRequest, Cancelled
from engine.fieldtypes import check_types
from engine.scoring.dialogue import Dialogue

PAPER_BEST_JUDGE = 0.648


@dataclass
class ExplainConfig:
    judge: str = field(default="llm", metadata={"help": "llm (a local GGUF model) or api (OpenAI-compatible)"})
    model: str = field(default="bundled", metadata={"help": "llm: 'bundled' or a .gguf file"})
    threads: int = field(default=0, metadata={"help": "llm: CPU threads (0 = one on a busy machine)"})
    api_base: str = field(default="", metadata={"help": "api: base URL, e.g. http://127.0.0.1:8000/v1"})
    api_model: str = field(default="", metadata={"help": "api: model name (default: the server's first)"})
    api_key_env: str = field(default="HAL_API_KEY", metadata={"help": "api: environment variable holding the key"})
    verdict: str = field(default="auto", metadata={"help": "auto (logits when the judge has them), logits or text"})
    both_orders: bool = field(default=True, metadata={"help": "text verdicts: ask in both orders and keep only "
                                                               "consistent ones (off: one order, position bias "
                                                               "uncorrected)"})
    explain_from: str = field(default="verdict", metadata={"help": "verdict (the side the judge picked, as the "
                                                                    "paper) or truth (the real human)"})
    context: str = field(default="witness", metadata={"help": "witness (only the witness's messages: short, best "
                                                                "for small judges) or full (both speakers)"})
    max_turns: int = field(default=12, metadata={"help": "turns of each side shown to the judge"})
    max_chars: int = field(default=200, metadata={"help": "characters per turn shown to the judge"})
    max_statements: int = field(default=3, metadata={"help": "statements kept per game"})
    max_tokens: int = field(default=120, metadata={"help": "tokens the judge may write per explanation"})
    temperature: float = field(default=0.3, metadata={"help": "sampling temperature of the explanation"})
    min_cluster_size: int | None = field(default=None, metadata={"help": "HDBSCAN's smallest theme (auto)"})
    seed: int = field(default=0, metadata={"help": "order of the sides and sampling seed"})
    cache: bool = field(default=True, metadata={"help": "reuse cached judge answers"})

    def __post_init__(self):
        check_types(self, "explain.")
        if self.judge not in ("llm", "api"):
            raise BadRequest(f"the explaining judge is llm or api, not {self.judge!r}")
        if self.verdict not in ("auto", "logits", "text"):
            raise BadRequest("verdict is auto, logits or text")
        if self.context not in CONTEXTS:
            raise BadRequest("context is witness or full")
        if self.explain_from not in ("verdict", "truth"):
            raise BadRequest("explain_from is verdict or truth")
        if self.max_turns < 2 or self.max_chars < 20 or self.max_statements < 1 or self.max_tokens < 8:
            raise BadRequest("need max_turns >= 2, max_chars >= 20, max_statements >= 1, max_tokens >= 8")


def pair_games(dialogues: list[Dialogue]) -> tuple[list[tuple[str, Dialogue, Dialogue]], list[dict]]:
    """(game, human side, AI side) for each game with exactly one of each; a reason for the rest."""
    by_game: dict[str, list[Dialogue]] = {}
    problems = []
    for d in dialogues:
        if d.group is None:
            problems.append({"id": d.id, "error": "no game to pair with (the item has no group)"})
        elif not any(line.strip() for line in d.speaker_lines()):
            problems.append({"id": d.id, "error": "this side is empty (no lines by the rated speaker)"})
        else:
            by_game.setdefault(d.group, []).append(d)
    games = []
    for game, sides in by_game.items():
        humans = [d for d in sides if d.label == "human"]
        ais = [d for d in sides if d.label == "ai"]
        if len(sides) == 2 and len(humans) == 1 and len(ais) == 1:
            games.append((game, humans[0], ais[0]))
        elif len(sides) < 2:
            problems.append({"id": game, "error": "only one side could be read, so there is nothing to contrast"})
        else:
            problems.append({"id": game, "error": f"needs one human and one AI side, found {len(humans)} human, "
                                                  f"{len(ais)} AI, {len(sides) - len(humans) - len(ais)} unlabelled"})
    return games, problems


def wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(centre - half, 4), round(centre + half, 4)]


def _judge_game(judge, game: str, human: Dialogue, ai: Dialogue, config: ExplainConfig, rng: random.Random) -> dict:
    ctx = config.context
    h_text = render_side(human, config.max_turns, config.max_chars, ctx)
    a_text = render_side(ai, config.max_turns, config.max_chars, ctx)
    human_first = rng.random() < 0.5
    first, second = (h_text, a_text) if human_first else (a_text, h_text)
    truth = "A" if human_first else "B"
    item = {"game": game, "human_shown_as": truth, "ai_model": human.meta.get("ai_model") or ai.meta.get("ai_model")}
    use_logits = config.verdict == "logits" or (config.verdict == "auto" and judge.scores_letters)
    if use_logits and not judge.scores_letters:
        raise BadRequest("this judge cannot score letters; use verdict=text")
    if use_logits:
        s1 = judge.letter_scores(verdict_messages(first, second, ctx))  # > 0: prefers A
        s2 = judge.letter_scores(verdict_messages(second, first, ctx))  # same chats, swapped
        margin = (s1 - s2) / 2  # > 0: prefers the chat shown first in order 1, wherever it stands
        item.update(verdict="A" if margin > 0 else "B" if margin < 0 else None, margin=round(margin, 4),
                    position_pull=round((s1 + s2) / 2, 4), verdict_from="logits")
        if item["verdict"] is None:
            item["verdict_reason"] = "the judge scored both sides the same"
    else:
        answer, _ = judge.complete(verdict_messages(first, second, ctx), 12, 0.0, config.seed)
        side, why = parse_verdict(answer)
        item.update(verdict=side, verdict_from="text", verdict_raw=answer[:200], answers=[side])
        if side is None:
            item["verdict_reason"] = why
        elif config.both_orders:
            swapped_answer, _ = judge.complete(verdict_messages(second, first, ctx), 12, 0.0, config.seed)
            swapped, why2 = parse_verdict(swapped_answer)
            item.update(answers=[side, swapped], verdict_raw_swapped=swapped_answer[:200])
            if swapped is None:
                item.update(verdict=None, verdict_reason=f"no verdict with the chats swapped: {why2}")
            elif swapped == side:  # the same letter for swapped chats: the letter, not the chat, was chosen
                item.update(verdict=None, verdict_reason=f"position bias: answered {side} in both orders")
            item["consistent"] = swapped is not None and swapped != side
    item["correct"] = None if item["verdict"] is None else item["verdict"] == truth
    if config.explain_from == "truth":
        picked_human = True
    elif item["verdict"] is None:
        item.update(statements=[], rejected=[], reason="no verdict, so nothing to explain")
        return item
    else:
        picked_human = item["correct"]
    messages = explain_messages(*((h_text, a_text) if picked_human else (a_text, h_text)), n=config.max_statements,
                                context=ctx)
    answer, finish = judge.complete(messages, config.max_tokens, config.temperature, config.seed)
    kept, thrown, form = parse_statements(answer, messages[0]["content"], config.max_statements,
                                          cut=finish == "length")
    item.update(statements=kept, rejected=thrown, form=form, raw=answer[:600], explained="human" if picked_human
                else "ai (the judge's wrong pick)")
    if not kept:
        item["reason"] = ("empty answer" if not answer.strip() else
                          "no usable statement: " + "; ".join(sorted({t['reason'] for t in thrown}))
                          if thrown else "no statements in the answer")
    return item


def position_bias(items: list[dict]) -> dict:
    """How much the judge picks a letter rather than a chat, from every order it was asked in.

    ``answers_a_share``: share of "A" among its answers (0.5 = no lean; for
    logits, the share of asks where A scored higher). ``consistent_share``: share
    of games where both orders named the same chat. ``first_order_accuracy``:
    what one order alone would have scored, the figure a biased judge inflates
    or deflates depending on where the human happened to be shown.
    """
    answers, consistent, first_right = [], [], []
    for it in items:
        if it.get("verdict_from") == "logits":
            s1 = it["position_pull"] + it["margin"]
            s2 = it["position_pull"] - it["margin"]
            asked = ["A" if s1 > 0 else "B" if s1 < 0 else None, "A" if s2 > 0 else "B" if s2 < 0 else None]
        else:
            asked = it.get("answers") or []
        answers += [a for a in asked if a is not None]
        if len(asked) == 2 and None not in asked:
            consistent.append(asked[0] != asked[1])
        if asked and asked[0] is not None:
            first_right.append(asked[0] == it["human_shown_as"])
    share = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    return {"answers_a_share": share([a == "A" for a in answers]), "n_answers": len(answers),
            "consistent_share": share(consistent), "n_asked_both": len(consistent),
            "first_order_accuracy": share(first_right)}


def run_explain(dialogues: list[Dialogue], config: ExplainConfig, state, judge=None, limit: int | None = None) -> dict:
    """Verdicts, statements and themes for up to ``limit`` games; ``judge`` is built when not given."""
    games, problems = pair_games(dialogues)
    if limit:
        games = games[:limit]
    if not games:
        raise BadRequest("no game with one human and one AI side to show the judge",
                         "; ".join(f"{p['id']}: {p['error']}" for p in problems[:5]))
    own = judge is None
    if own:
        from engine.discovery.judges import make_judge

        state.progress(0, len(games), "loading the judge", force=True)
        judge = make_judge(config.judge, model=config.model, threads=config.threads, api_base=config.api_base,
                           api_model=config.api_model, api_key_env=config.api_key_env, use_cache=config.cache)
    rng = random.Random(config.seed)
    items = []
    try:
        for k, (game, human, ai) in enumerate(games):
            if state.cancelled():
                raise Cancelled(f"discovery cancelled after {k} of {len(games)} games")
            items.append(_judge_game(judge, game, human, ai, config, rng))
            state.progress(k + 1, len(games), f"game {game}: verdict {items[-1]['verdict'] or '-'}, "
                                              f"{len(items[-1]['statements'])} statements")
        described = judge.describe()
    finally:
        if own:
            judge.close()
    judged = [it for it in items if it["correct"] is not None]
    right = sum(it["correct"] for it in judged)
    statements = [{"text": s, "game": it["game"], "correct": it["correct"], "explained": it.get("explained")}
                  for it in items for s in it["statements"]]
    state.progress(len(games), len(games), f"clustering {len(statements)} statements", force=True)
    themes = cluster_statements(statements, config.min_cluster_size, config.seed)
    for it in items:
        if not it["statements"]:
            why = it.get("reason") or it.get("verdict_reason") or "no statements"
            problems.append({"id": it["game"], "error": why})
    letters = {}
    scored = [it for it in items if it.get("verdict_from") == "logits"]
    if scored:  # how much asking in both orders mattered
        first_only = [(it["position_pull"] + it["margin"] > 0) == (it["human_shown_as"] == "A") for it in scored]
        letters = {"position_pull_mean": round(sum(it["position_pull"] for it in scored) / len(scored), 4),
                   "accuracy_first_order_only": round(sum(first_only) / len(first_only), 4)}
    bias = position_bias(items)
    if not judged and any(it.get("consistent") is False for it in items):
        bias["message"] = ("no game got the same chat named in both orders: the judge picks a letter, not a "
                           "side, so nothing it says can be counted as right; explain_from=truth still collects "
                           "its explanations")
    return {
        "method": "explain", "judge": described, "n_games": len(games),
        "judge_verdict_accuracy": round(right / len(judged), 4) if judged else None,
        "verdict_ci": wilson(right, len(judged)), "n_verdicts": len(judged),
        "verdict_coverage": round(len(judged) / len(items), 4),
        "accuracy_counting_no_verdict_as_wrong": round(right / len(items), 4),
        "accuracy_ties_as_half": round((right + 0.5 * (len(items) - len(judged))) / len(items), 4),
        "answers_a_share": bias["answers_a_share"], "position_bias": bias, **letters,
        "paper_best_judge_accuracy": PAPER_BEST_JUDGE,
        "games_with_statements": sum(1 for it in items if it["statements"]),
        "n_statements": len(statements), "clusters": themes["clusters"],
        "clustering": {k: v for k, v in themes.items() if k != "clusters"},
        "statements": statements, "items": items, "problems": problems,
    }
