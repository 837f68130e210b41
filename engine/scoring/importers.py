"""Read contrastive dialogues from the layouts the studio knows.

Each importer returns every dialogue it could read plus one ``Problem`` per
bad item (row, side or line) with a reason; a bad item never stops the rest.

JSONL schema (one object per line):
    {"id": "g7-A",                       # required, unique
     "turns": [["I", "hi"], ["W", "hey"]],   # or [{"speaker": .., "text": ..}]
     "transcript": "I: hi\\nW: hey",      # alternative to "turns"
     "rated_speaker": "W",              # required
     "label": "human" | "ai" | null,    # optional (also true/false, 1/0)
     "group": "g7",                     # optional: the game both sides share
     "ratings": {"1": 4, "2": 1, ...},  # optional precomputed 1..5 ratings by trait id
     "meta": {...}}                     # optional, passed through
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import BadRequest
from engine.scoring.dialogue import Dialogue, Turn, normalise_label, parse_transcript

# Which trait id each position of a layout's rating list belongs to (see the
# shared data README): the Turing file lists all 32 in id order; the before /
# after files list the release's 16 statements, each mapped to its nearest id.
TURING_RATING_IDS = list(range(1, 33))
QWEN_RATING_IDS = [1, 5, 10, 3, 4, 17, 7, 20, 8, 16, 26, 2, 11, 18, 22, 29]


@dataclass
class Problem:
    item: str
    reason: str
    kept: bool = False  # True when the item was still imported (e.g. without its ratings)

    def as_json(self) -> dict:
        out = {"id": self.item, "error": self.reason}
        if self.kept:
            out["kept"] = True
        return out


@dataclass
class Imported:
    dialogues: list[Dialogue] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    layout: str = ""


def _ratings(raw: Any, ids: list[int]) -> dict[int, float]:
    """A JSON list (in ``ids`` order) or an id-keyed dict of 1..5 ratings."""
    values = json.loads(raw) if isinstance(raw, str) else raw
    if isinstance(values, dict):
        pairs = [(int(k), v) for k, v in values.items()]
    elif isinstance(values, list):
        if len(values) != len(ids):
            raise ValueError(f"expected {len(ids)} ratings, found {len(values)}")
        pairs = list(zip(ids, values))
    else:
        raise ValueError("ratings are neither a list nor an object")
    out = {}
    for tid, v in pairs:
        if v is None:
            continue
        v = float(v)
        if not math.isfinite(v) or not 1 <= v <= 5:
            raise ValueError(f"rating {v} for trait {tid} is outside 1..5")
        out[tid] = v
    return out


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    csv.field_size_limit(1 << 30)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def load_turing_csv(path: str | Path) -> Imported:
    """One row per game, two witnesses A/B; only the witness ``W:`` lines are rated."""
    cols, rows = _read_csv(Path(path))
    need = {"conversation_A_transcript", "conversation_B_transcript"}
    if not need <= set(cols):
        raise BadRequest(f"{path}: not a Turing-test CSV (missing {sorted(need - set(cols))})")
    out = Imported(layout="turing")
    seen: set[str] = set()
    for index, row in enumerate(rows):
        game = (row.get("game_id") or "").strip() or str(index)
        if game in seen:
            out.problems.append(Problem(f"row {index + 2}", f"game id {game} repeats an earlier row; row skipped"))
            continue
        seen.add(game)
        for side in "AB":
            item = f"{game}-{side}"
            transcript = row.get(f"conversation_{side}_transcript")
            if transcript is None or not transcript.strip():
                out.problems.append(Problem(item, f"empty transcript {side} (row {index + 2})"))
                continue
            turns = parse_transcript(transcript, {"I", "W"})
            if not any(t.speaker == "W" and t.text for t in turns):
                out.problems.append(Problem(item, "no witness (W:) lines to rate"))
                continue
            ratings = None
            raw = row.get(f"likert_evaluation_{side}")
            if raw not in (None, ""):
                try:
                    ratings = _ratings(raw, TURING_RATING_IDS)
                except (ValueError, TypeError) as exc:
                    out.problems.append(Problem(item, f"precomputed ratings unreadable ({exc}); kept without them",
                                                kept=True))
            raw_label = row.get(f"label_{side}")
            out.dialogues.append(Dialogue(
                id=item, turns=tuple(turns), rated_speaker="W", label=normalise_label(raw_label),
                group=game, ratings=ratings,
                meta={"source_label": raw_label, "ai_model": row.get("ai_model"), "side": side, "row": index + 2},
            ))
    return out


def load_dialogue_csv(path: str | Path, speaker: str = "P") -> Imported:
    """The before/after layout: a ``dialogue`` column whose ``P:`` lines are rated."""
    cols, rows = _read_csv(Path(path))
    if "dialogue" not in cols:
        raise BadRequest(f"{path}: no 'dialogue' column")
    out = Imported(layout="dialogue_csv")
    for index, row in enumerate(rows):
        item = (row.get("dialogue_id") or "").strip() or str(index)
        text = row.get("dialogue") or ""
        turns = parse_transcript(text, {"P", "D"})
        if not any(t.speaker == speaker and t.text for t in turns):
            out.problems.append(Problem(item, f"no {speaker}: lines to rate (row {index + 2})"))
            continue
        ratings = None
        raw = row.get("likert_evaluation")
        if raw not in (None, ""):
            try:
                ratings = _ratings(raw, QWEN_RATING_IDS)
            except (ValueError, TypeError) as exc:
                out.problems.append(Problem(item, f"precomputed ratings unreadable ({exc}); kept without them",
                                            kept=True))
        out.dialogues.append(Dialogue(
            id=item, turns=tuple(turns), rated_speaker=speaker, label=normalise_label(row.get("label")),
            group=(row.get("group") or None), ratings=ratings, meta={"row": index + 2},
        ))
    return out


def _turns_from_json(obj: dict) -> list[Turn]:
    if "turns" in obj:
        turns = []
        for t in obj["turns"]:
            if isinstance(t, dict):
                turns.append(Turn(str(t["speaker"]), str(t["text"])))
            elif isinstance(t, (list, tuple)) and len(t) == 2:
                turns.append(Turn(str(t[0]), str(t[1])))
            else:
                raise ValueError("a turn is neither [speaker, text] nor {speaker, text}")
        return turns
    if "transcript" in obj:
        return parse_transcript(str(obj["transcript"]))
    raise ValueError("neither 'turns' nor 'transcript'")


def load_jsonl(path: str | Path) -> Imported:
    out = Imported(layout="jsonl")
    seen: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            item = f"line {lineno}"
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
                item = str(obj.get("id") or item)
                if "id" not in obj:
                    raise ValueError("no 'id'")
                if item in seen:
                    raise ValueError("id repeats an earlier line")
                speaker = obj.get("rated_speaker")
                if not speaker:
                    raise ValueError("no 'rated_speaker'")
                turns = _turns_from_json(obj)
                if not any(t.speaker == speaker and t.text.strip() for t in turns):
                    raise ValueError(f"no lines by the rated speaker {speaker!r}")
                label = obj.get("label")
                if (label is not None and not isinstance(label, (bool, int))
                        and str(label).lower() not in ("human", "ai")):
                    raise ValueError(f"label {label!r} is not 'human' or 'ai'")
                raw_ratings = obj.get("ratings")
                if raw_ratings is not None and not isinstance(raw_ratings, dict):
                    raise ValueError("'ratings' must be an object keyed by trait id")
                ratings = _ratings(raw_ratings, []) if raw_ratings else None
            except (ValueError, TypeError, KeyError) as exc:
                out.problems.append(Problem(item, f"line {lineno}: {exc}"))
                continue
            seen.add(item)
            group = obj.get("group")
            out.dialogues.append(Dialogue(
                id=item, turns=tuple(turns), rated_speaker=str(speaker), label=normalise_label(label),
                group=None if group is None else str(group), ratings=ratings, meta=dict(obj.get("meta") or {}),
            ))
    return out


def load_any(path: str | Path) -> Imported:
    """Pick the importer from the file: .jsonl, or a CSV's columns."""
    path = Path(path)
    if not path.is_file():
        raise BadRequest(f"no such file: {path}")
    try:
        return _load_any(path)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None


def _load_any(path: Path) -> Imported:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return load_jsonl(path)
    if path.suffix.lower() == ".csv":
        cols, _ = _read_csv(path)
        if "conversation_A_transcript" in cols:
            return load_turing_csv(path)
        if "dialogue" in cols:
            return load_dialogue_csv(path)
        raise BadRequest(f"{path}: CSV layout not recognised", detail=f"columns: {cols[:20]}")
    raise BadRequest(f"{path}: unknown file type (expected .csv or .jsonl)")
