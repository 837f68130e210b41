"""One interface for every judge, and the rating cache they share.

A judge maps (dialogue, rated speaker) to ``{trait_id: rating or None}`` on the
1..5 scale; None means "this judge cannot see that trait", never a guess.
A rating that fails for one item comes back as a ``RatingError`` in its place,
so a batch always finishes.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterable, Union

from engine import paths
from engine.errors import EngineError
from engine.scoring.dialogue import Dialogue
from engine.scoring.traits import Questionnaire, load_questionnaire

Ratings = dict[int, Union[float, None]]


class RatingError(EngineError):
    """One item could not be rated; ``item`` names it."""

    kind = "rating_failed"

    def __init__(self, message: str, item: str = "", detail: str = ""):
        super().__init__(message, detail)
        self.item = item


class JudgeUnavailable(EngineError):
    kind = "judge_unavailable"


class RatingCache:
    """Ratings keyed by (judge id, questionnaire ref, text digest) in one SQLite file."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else paths.cache_dir() / "ratings.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS ratings (judge TEXT NOT NULL, questionnaire TEXT NOT NULL,"
                " digest TEXT NOT NULL, ratings TEXT NOT NULL, created REAL NOT NULL,"
                " PRIMARY KEY (judge, questionnaire, digest)) WITHOUT ROWID"
            )
            self._db.commit()
        self.hits = 0
        self.misses = 0

    def get_many(self, judge: str, questionnaire: str, digests: list[str]) -> dict[str, Ratings]:
        found: dict[str, Ratings] = {}
        unique = list(dict.fromkeys(digests))
        with self._lock:
            for start in range(0, len(unique), 500):
                chunk = unique[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT digest, ratings FROM ratings WHERE judge=? AND questionnaire=? AND digest IN ({marks})",
                    [judge, questionnaire, *chunk],
                ).fetchall()
                for digest, raw in rows:
                    found[digest] = {int(k): v for k, v in json.loads(raw).items()}
        self.hits += sum(1 for d in digests if d in found)
        self.misses += sum(1 for d in digests if d not in found)
        return found

    def put_many(self, judge: str, questionnaire: str, items: Iterable[tuple[str, Ratings]]) -> None:
        now = time.time()
        rows = [(judge, questionnaire, d, json.dumps({str(k): v for k, v in r.items()}), now) for d, r in items]
        if not rows:
            return
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO ratings VALUES (?,?,?,?,?)", rows)
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def rows_to_ratings(trait_ids: list[int], R) -> list[Ratings]:
    """Rows of an (n, traits) array to rating dicts, NaN becoming None."""
    return [dict(zip(trait_ids, [None if v != v else v for v in row])) for row in R.tolist()]


class Judge(ABC):
    """Subclasses implement ``_rate_batch``; caching and per-item errors live here."""

    name = "judge"
    cacheable = True
    clean_output = False  # True when _rate_batch already returns one float-or-None per questionnaire trait

    def __init__(self, questionnaire: Questionnaire | str | None = None, cache: RatingCache | bool | None = True):
        if questionnaire is None or isinstance(questionnaire, str):
            questionnaire = load_questionnaire(questionnaire or "hal32")
        self.questionnaire = questionnaire
        if cache is True and self.cacheable:
            cache = RatingCache()
        self.cache: RatingCache | None = cache or None

    @property
    def judge_id(self) -> str:
        """Names the judge and its version; part of every cache key."""
        return self.name

    def describe(self) -> dict:
        return {"judge": self.judge_id, "questionnaire": self.questionnaire.ref}

    @abstractmethod
    def _rate_batch(self, dialogues: list[Dialogue]) -> list[Ratings | RatingError]:
        """Rate dialogues that all have lines by their rated speaker."""

    def rate(self, dialogue: Dialogue) -> Ratings:
        out = self.rate_many([dialogue])[0]
        if isinstance(out, RatingError):
            raise out
        return out

    def rate_many(self, dialogues: list[Dialogue]) -> list[Ratings | RatingError]:
        results: list[Ratings | RatingError | None] = [None] * len(dialogues)
        todo: list[int] = []
        for i, d in enumerate(dialogues):
            if not any(line.strip() for line in d.speaker_lines()):
                results[i] = RatingError(f"no lines by the rated speaker {d.rated_speaker!r}", item=d.id)
            else:
                todo.append(i)
        qref = self.questionnaire.ref
        digests = {i: dialogues[i].digest() for i in todo} if self.cache else {}
        if self.cache and todo:
            cached = self.cache.get_many(self.judge_id, qref, list(digests.values()))
            for i in todo:
                if digests[i] in cached:
                    results[i] = self._restrict(cached[digests[i]])
            todo = [i for i in todo if results[i] is None]
        if todo:
            fresh = self._rate_batch([dialogues[i] for i in todo])
            store = []
            for i, r in zip(todo, fresh):
                if isinstance(r, RatingError):
                    r.item = r.item or dialogues[i].id
                    results[i] = r
                else:
                    results[i] = r if self.clean_output else self._restrict(r)
                    store.append((digests.get(i) or dialogues[i].digest(), results[i]))
            if self.cache:
                self.cache.put_many(self.judge_id, qref, store)
        return results  # type: ignore[return-value]

    def _restrict(self, ratings: Ratings) -> Ratings:
        """One entry per trait of the questionnaire; unseen or invalid ratings become None."""
        out: Ratings = {}
        for tid in self.questionnaire.trait_ids:
            r = ratings.get(tid)
            out[tid] = float(r) if isinstance(r, (int, float)) and math.isfinite(r) else None
        return out
