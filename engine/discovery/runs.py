"""One discovery run: read the data, pick the method, keep the result.

Runs are saved as JSON under ``data_dir()/discovery`` so that proposals can be
accepted later (from the CLI or the studio) and every accepted trait can name
the run, the file (with its digest) and the evidence it came from.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from engine import paths
from engine.discovery.candidates import candidate_matrix
from engine.discovery.contrast import ContrastConfig, contrast_report
from engine.discovery.explain import ExplainConfig, run_explain
from engine.errors import BadRequest
from engine.fieldtypes import check_types
from engine.scoring.importers import load_any

METHODS = ("contrast", "explain")


@dataclass
class DiscoverConfig:
    path: str = field(default="", metadata={"help": "contrastive dialogues: Turing CSV or JSONL with groups"})
    method: str = field(default="contrast", metadata={"help": "contrast (features, no model) or explain (judge)"})
    limit: int | None = field(default=None, metadata={"help": "use only the first N games"})
    where: dict = field(default_factory=dict, metadata={"help": "meta filters {key: glob}, e.g. ai_model: "
                                                                "'*minimal|eliza' ('|' separates alternatives)"})
    contrast: ContrastConfig = field(default_factory=ContrastConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)

    def __post_init__(self):
        check_types(self)
        if self.method not in METHODS:
            raise BadRequest(f"method is contrast or explain, not {self.method!r}")
        if self.limit is not None and self.limit < 1:
            raise BadRequest("limit must be at least 1")

    @classmethod
    def from_dict(cls, d: dict) -> "DiscoverConfig":
        if d is not None and not isinstance(d, dict):
            raise BadRequest("the discovery settings must be an object")
        d = dict(d or {})
        try:
            contrast = ContrastConfig(**(d.pop("contrast", None) or {}))
            check_types(contrast, "contrast.")
            explain = ExplainConfig(**(d.pop("explain", None) or {}))
            return cls(contrast=contrast, explain=explain, **d)
        except TypeError as exc:
            raise BadRequest(f"bad discovery settings: {exc}") from None


def runs_dir() -> Path:
    path = paths.data_dir() / "discovery"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _select(dialogues, config: DiscoverConfig) -> list:
    for key, pattern in config.where.items():
        globs = str(pattern).split("|")  # "*minimal|eliza": any of them
        dialogues = [d for d in dialogues if d.meta.get(key) is not None
                     and any(fnmatch.fnmatch(str(d.meta.get(key)), g) for g in globs)]
    if config.limit and config.method == "contrast":
        keep, games = [], []
        for d in dialogues:
            g = d.group or d.id
            if g not in games:
                if len(games) >= config.limit:
                    continue
                games.append(g)
            keep.append(d)
        dialogues = keep
    return dialogues


def feature_quantiles(dialogues) -> dict:
    """10th/50th/90th percentiles of every candidate on this data: anchors for measured traits."""
    names, X = candidate_matrix(dialogues)
    human = np.array([d.label == "human" for d in dialogues])
    ai = np.array([d.label == "ai" for d in dialogues])
    out = {}
    for j, name in enumerate(names):
        ok = ~np.isnan(X[:, j])
        col = X[ok, j]
        if len(col):
            q = np.percentile(col, [10, 50, 90])
            out[name] = {"p10": round(float(q[0]), 5), "p50": round(float(q[1]), 5), "p90": round(float(q[2]), 5),
                         "min": round(float(col.min()), 5), "max": round(float(col.max()), 5)}
            for side, mask in (("human_mean", human & ok), ("ai_mean", ai & ok)):
                if mask.any():
                    out[name][side] = round(float(X[mask, j].mean()), 5)
    return out


def run(config: DiscoverConfig, state, judge=None, save: bool = True) -> dict:
    """The job: progress through ``state``; returns the run (also saved, with its ``run_id``)."""
    path = Path(config.path)
    if not config.path or not path.is_file():
        raise BadRequest(f"no such data file: {config.path!r}")
    started = time.time()
    state.progress(0, 1, f"reading {path.name}", force=True)
    data = load_any(path)
    dialogues = _select(data.dialogues, config)
    if not dialogues:
        raise BadRequest("no dialogues left to use" + (f" after the filter {config.where}" if config.where else ""))
    problems = [p.as_json() for p in data.problems]
    if config.method == "contrast":
        state.progress(0, 1, f"measuring {len(dialogues)} sides", force=True)
        report = contrast_report(dialogues, config.contrast)
        report["method"] = "contrast"
        report["problems"] = problems
        used = dialogues
    else:
        report = run_explain(dialogues, config.explain, state, judge=judge, limit=config.limit)
        report["problems"] = problems + report["problems"]
        games = {it["game"] for it in report["items"]}
        used = [d for d in dialogues if d.group in games]
    config_dict = asdict(config)
    config_dict.pop("explain" if config.method == "contrast" else "contrast")
    report.update({
        "run_id": f"{config.method}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}",
        "n_dialogues": len(used), "config": config_dict,
        "source": {"path": str(path.resolve()), "sha256": _digest(path), "layout": data.layout,
                   "n_read": len(data.dialogues), "n_problems": len(data.problems)},
        "feature_quantiles": feature_quantiles(used), "seconds": round(time.time() - started, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    if save:
        target = runs_dir() / f"{report['run_id']}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, ensure_ascii=False), encoding="utf-8")
        tmp.replace(target)
        report["saved_to"] = str(target)
    state.progress(1, 1, "done", force=True)
    return report


def load_run(run_id_or_path: str) -> dict:
    path = Path(run_id_or_path)
    if not path.is_file():
        from engine.ids import check_id

        path = runs_dir() / f"{check_id(run_id_or_path, 'discovery run id')}.json"
    if not path.is_file():
        known = [p.stem for p in sorted(runs_dir().glob("*.json"))[-5:]]
        raise BadRequest(f"no discovery run {run_id_or_path!r}", "recent: " + ", ".join(known))
    return json.loads(path.read_text(encoding="utf-8"))


def list_runs(limit: int = 50) -> list[dict]:
    """Newest first, a one-line summary each."""
    out = []
    for path in sorted(runs_dir().glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[:limit]:
        try:
            r = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        out.append({"run_id": r.get("run_id", path.stem), "method": r.get("method"), "created": r.get("created"),
                    "source": Path(r.get("source", {}).get("path", "")).name, "n_dialogues": r.get("n_dialogues"),
                    "judge": (r.get("judge") or {}).get("judge"), "accuracy": r.get("judge_verdict_accuracy"),
                    "n_clusters": len(r.get("clusters") or []), "n_candidates": len(r.get("candidates") or [])})
    return out
