"""The studio's "Run a fit" as a job: ``run(config, state)``.

Reads a labelled file, has a judge rate it (or takes the file's own ratings),
cross-validates, and saves the refit weights as a new version. It reports
progress per chunk of ratings and per fold, and stops at the next one when
cancelled. Same steps and figures as ``hal fit``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.errors import BadRequest, Cancelled
from engine.fieldtypes import check_types
from engine.scoring.fit import FitConfig, build_table, cross_validate, save_fit
from engine.scoring.importers import load_any
from engine.scoring.judges import RatingError, get_judge
from engine.scoring.traits import load_questionnaire

FIT_JUDGES = ("lexical", "distilled", "precomputed")
CHUNK = 200  # dialogues rated between two progress events
SHOWN_PROBLEMS = 20


@dataclass
class FitJobConfig:
    path: str = field(default="", metadata={"help": "Turing-layout CSV or JSONL of dialogues labelled human / AI"})
    judge: str = field(default="lexical", metadata={
        "help": "whose ratings to fit: lexical, distilled, or precomputed (the ratings stored in the file)"})
    questionnaire: str = field(default="hal32", metadata={"help": "questionnaire id, id@version or file"})
    penalty: str = field(default="l2", metadata={"help": "l2 (all traits keep a weight) or l1 (sparse, as in the paper)"})
    C: float = field(default=1.0, metadata={"help": "inverse regularisation strength"})
    folds: int = field(default=10, metadata={"help": "cross-validation folds (a game's two sides stay together)"})
    repeats: int = field(default=1, metadata={"help": "repeat the cross-validation with new seeds"})
    select: int | None = field(default=None, metadata={"help": "keep the K traits of largest |weight| and refit"})
    seed: int = field(default=0, metadata={"help": "seed of the first repeat"})
    save: bool = field(default=True, metadata={"help": "save the refit weights as a new weights version"})
    save_as: str = field(default="", metadata={"help": "weights id to save under (empty: fit-<judge>)"})

    @classmethod
    def from_dict(cls, d: dict) -> "FitJobConfig":
        if not isinstance(d, dict):
            raise BadRequest("the fit's settings must be an object")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BadRequest(f"unknown fit setting(s): {', '.join(unknown)}", detail="known: " + ", ".join(sorted(known)))
        cfg = cls(**d)
        check_types(cfg)
        cfg.check()
        return cfg

    def check(self) -> None:
        if not self.path or not Path(self.path).is_file():
            raise BadRequest(f"no data file at {self.path!r}")
        if self.judge not in FIT_JUDGES:
            raise BadRequest(f"fit with one of {', '.join(FIT_JUDGES)}, not {self.judge!r}")
        if self.select is not None and (not isinstance(self.select, int) or self.select < 1):
            raise BadRequest("select must be a positive whole number (or empty)")
        self.fit_config()  # FitConfig checks penalty, folds, repeats and C

    def fit_config(self) -> FitConfig:
        return FitConfig(penalty=self.penalty, C=float(self.C), folds=int(self.folds), repeats=int(self.repeats),
                         select=self.select, seed=int(self.seed))


def _rate(judge, dialogues, state, done_before: int, total: int):
    """Ratings in chunks, with progress and a cancel check between chunks."""
    if hasattr(judge, "fit_ratings"):  # a distilled judge uses its out-of-fold ratings
        state.progress(done_before, total, f"rating {len(dialogues)} dialogues", force=True)
        ratings, _ = judge.fit_ratings(dialogues)
        return ratings
    ratings = []
    for start in range(0, len(dialogues), CHUNK):
        if state.cancelled():
            raise Cancelled("the fit was cancelled while rating")
        ratings += judge.rate_many(dialogues[start:start + CHUNK])
        state.progress(done_before + len(ratings), total, f"rated {len(ratings)} of {len(dialogues)}")
    return ratings


def run(config: FitJobConfig, state) -> dict:
    """Rate, cross-validate, save; return the figures the Traits view shows."""
    t0 = time.perf_counter()
    fit_cfg = config.fit_config()
    q = load_questionnaire(config.questionnaire)
    state.progress(0, 1, f"reading {Path(config.path).name}", force=True)
    data = load_any(config.path)
    if not data.dialogues:
        raise BadRequest(f"{config.path}: no dialogue could be read",
                         detail="; ".join(f"{p.item}: {p.reason}" for p in data.problems[:5]))
    opts = {"source": Path(config.path).name} if config.judge == "precomputed" else {}
    judge = get_judge(config.judge, questionnaire=q, **opts)
    n_cv = fit_cfg.folds * fit_cfg.repeats + 1
    total = len(data.dialogues) + n_cv
    ratings = _rate(judge, data.dialogues, state, 0, total)
    table, problems = build_table(data.dialogues, ratings, q.trait_ids)
    problems = [*data.problems, *problems]
    if not table.trait_ids:
        raise BadRequest(f"the {config.judge} judge rated no trait of {q.ref} on this file")

    def fold_done(done: int, _total: int) -> None:
        if state.cancelled():
            raise Cancelled("the fit was cancelled during cross-validation")
        state.progress(len(data.dialogues) + done, total, f"cross-validation fold {done} of {n_cv - 1}",
                       force=True)

    report = cross_validate(table, fit_cfg, progress=fold_done)
    report.update({"judge": judge.judge_id, "questionnaire": q.ref, "source": str(config.path),
                   "config": asdict(config)})
    if config.save:
        saved = save_fit(report, q, judge=judge.judge_id, source=str(config.path), config=fit_cfg,
                         weights_id=config.save_as or None)
        report["saved_weights"] = saved.ref
    state.progress(total, total, "done", force=True)
    failed = [p for p in problems if not p.kept]
    unrated = sum(1 for r in ratings if isinstance(r, RatingError))
    report.update({"n_problems": len(problems), "n_left_out": len(failed), "n_unrated": unrated,
                   "problems": [p.as_json() for p in problems[:SHOWN_PROBLEMS]],
                   "seconds": round(time.perf_counter() - t0, 2)})
    return report
