"""Questionnaires and weights as versioned data files, keyed by trait id.

Bundled files live in ``resources/questionnaires`` and ``resources/weights``;
a researcher's edits are saved under the data directory as a new version, so
a score can always name exactly which questionnaire and weights produced it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from engine import paths
from engine.errors import BadRequest

Q_FORMAT = "hal-questionnaire"
W_FORMAT = "hal-weights"


@dataclass(frozen=True)
class Trait:
    id: int
    name: str
    statement: str
    theme: str = ""


@dataclass(frozen=True)
class Questionnaire:
    """An ordered set of traits; order is for display only, ids carry meaning."""

    id: str
    version: int | None
    name: str
    traits: tuple[Trait, ...]
    themes: tuple[dict, ...] = ()
    description: str = ""
    scale: dict = field(default_factory=lambda: {"min": 1, "max": 5, "neutral": 3})
    parent: str | None = None
    # Where traits came from (trait discovery writes it: run, data, evidence, measure per trait id).
    provenance: dict = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version if self.version is not None else 'unsaved'}"

    @property
    def trait_ids(self) -> list[int]:
        return [t.id for t in self.traits]

    @property
    def neutral(self) -> float:
        return float(self.scale.get("neutral", 3))

    def trait(self, trait_id: int) -> Trait:
        for t in self.traits:
            if t.id == trait_id:
                return t
        raise KeyError(trait_id)

    # Edits return a new, unsaved questionnaire that remembers its parent.
    def _edited(self, traits: Iterable[Trait]) -> "Questionnaire":
        parent = self.ref if self.version is not None else self.parent
        return replace(self, traits=tuple(traits), version=None, parent=parent)

    def add_trait(self, name: str, statement: str, theme: str = "", trait_id: int | None = None) -> "Questionnaire":
        """New ids start above 32 so they never collide with the paper's trait ids."""
        if trait_id is None:
            trait_id = max([32, *self.trait_ids]) + 1
        if trait_id in self.trait_ids:
            raise BadRequest(f"trait id {trait_id} is already in {self.ref}")
        return self._edited([*self.traits, Trait(int(trait_id), name, statement, theme)])

    def drop_traits(self, *trait_ids: int) -> "Questionnaire":
        unknown = set(trait_ids) - set(self.trait_ids)
        if unknown:
            raise BadRequest(f"no trait {sorted(unknown)} in {self.ref}")
        return self._edited(t for t in self.traits if t.id not in trait_ids)

    def reword(self, trait_id: int, statement: str, name: str | None = None) -> "Questionnaire":
        self.trait(trait_id)  # raises KeyError for an unknown id
        return self._edited(
            replace(t, statement=statement, name=name or t.name) if t.id == trait_id else t
            for t in self.traits
        )

    def subset(self, trait_ids: Iterable[int], new_id: str | None = None) -> "Questionnaire":
        keep = set(trait_ids)
        q = self._edited(t for t in self.traits if t.id in keep)
        return replace(q, id=new_id) if new_id else q

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": Q_FORMAT, "format_version": 1, "id": self.id, "version": self.version,
            "name": self.name, "description": self.description, "parent": self.parent,
            "scale": self.scale, "themes": list(self.themes),
            "traits": [{"id": t.id, "name": t.name, "statement": t.statement, "theme": t.theme} for t in self.traits],
            **({"provenance": self.provenance} if self.provenance else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Questionnaire":
        if d.get("format") != Q_FORMAT:
            raise BadRequest(f"not a questionnaire file (format={d.get('format')!r})")
        traits = tuple(Trait(int(t["id"]), str(t["name"]), str(t["statement"]), str(t.get("theme", "")))
                       for t in d["traits"])
        ids = [t.id for t in traits]
        if len(set(ids)) != len(ids):
            raise BadRequest(f"questionnaire {d.get('id')} repeats a trait id")
        return cls(id=str(d["id"]), version=d.get("version"), name=str(d.get("name", d["id"])), traits=traits,
                   themes=tuple(d.get("themes", ())), description=str(d.get("description", "")),
                   scale=dict(d.get("scale") or {"min": 1, "max": 5, "neutral": 3}), parent=d.get("parent"),
                   provenance=dict(d.get("provenance") or {}))


@dataclass(frozen=True)
class Weights:
    """Per-trait weights and a bias; ``score = sum(w[t] * r[t]) + bias``."""

    id: str
    version: int | None
    name: str
    weights: dict[int, float]
    bias: float
    questionnaire: str = ""
    description: str = ""
    fitted_on: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    parent: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version if self.version is not None else 'unsaved'}"

    @property
    def trait_ids(self) -> list[int]:
        return sorted(self.weights)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": W_FORMAT, "format_version": 1, "id": self.id, "version": self.version,
            "name": self.name, "description": self.description, "questionnaire": self.questionnaire,
            "parent": self.parent, "bias": self.bias,
            "weights": {str(k): v for k, v in sorted(self.weights.items())},
            "fitted_on": self.fitted_on, "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Weights":
        if d.get("format") != W_FORMAT:
            raise BadRequest(f"not a weights file (format={d.get('format')!r})")
        weights = {int(k): float(v) for k, v in dict(d["weights"]).items()}
        bias = float(d["bias"])
        if not all(math.isfinite(v) for v in [*weights.values(), bias]):
            raise BadRequest(f"weights {d.get('id')} hold a non-finite number")
        return cls(id=str(d["id"]), version=d.get("version"), name=str(d.get("name", d["id"])), weights=weights,
                   bias=bias, questionnaire=str(d.get("questionnaire", "")), description=str(d.get("description", "")),
                   fitted_on=dict(d.get("fitted_on") or {}), metrics=dict(d.get("metrics") or {}),
                   parent=d.get("parent"))


# --- where files live -------------------------------------------------------

def _bundled(kind: str) -> Path:
    return paths.resources_dir() / kind


def _user(kind: str) -> Path:
    path = paths.data_dir() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def _candidates(kind: str) -> list[tuple[dict, Path]]:
    """Every readable file of one kind, bundled first, then the user's."""
    found = []
    for folder in (_bundled(kind), paths.data_dir() / kind):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            try:
                found.append((json.loads(path.read_text(encoding="utf-8")), path))
            except (OSError, ValueError):
                continue  # a broken file must not hide the others
    return found


def _resolve(kind: str, ref: str) -> dict:
    """``id`` (newest version), ``id@version``, or a path to a JSON file."""
    if ref.endswith(".json") or "/" in ref or "\\" in ref:
        path = Path(ref)
        if not path.is_file():
            raise BadRequest(f"no such {kind[:-1]} file: {ref}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(f"{ref} is not a readable JSON {kind[:-1]} file: {exc}") from None
        if kind == "weights" and isinstance(data, dict) and data.get("format") != W_FORMAT:
            return _weights_from_fit_output(data, ref)
        return data
    want_id, _, want_version = ref.partition("@")
    matches = [d for d, _ in _candidates(kind) if str(d.get("id")) == want_id]
    if want_version:
        matches = [d for d in matches if str(d.get("version")) == want_version]
    if not matches:
        known = sorted({f"{d.get('id')}@{d.get('version')}" for d, _ in _candidates(kind)})
        raise BadRequest(f"unknown {kind[:-1]} {ref!r}", detail="known: " + ", ".join(known))
    return max(matches, key=lambda d: int(d.get("version") or 0))


def _weights_from_fit_output(data: dict, ref: str) -> dict:
    """``hal fit --json`` output saved to a file: the weights it saved (``saved_path``
    or ``saved_weights``), or its own weights and bias when it saved none."""
    saved = data.get("saved_path")
    if isinstance(saved, str) and Path(saved).is_file():
        return json.loads(Path(saved).read_text(encoding="utf-8"))
    if isinstance(data.get("saved_weights"), str):
        return _resolve("weights", data["saved_weights"])
    if isinstance(data.get("weights"), dict) and "bias" in data:
        return {"format": W_FORMAT, "format_version": 1, "id": Path(ref).stem, "version": None,
                "name": f"Fit from {Path(ref).name}", "weights": data["weights"], "bias": data["bias"],
                "questionnaire": data.get("questionnaire", ""),
                "fitted_on": {"judge": data.get("judge", ""), "source": ref}}
    raise BadRequest(f"{ref} is neither a weights file nor the output of hal fit --json")


def _next_version(kind: str, item_id: str) -> int:
    versions = [int(d.get("version") or 0) for d, _ in _candidates(kind) if str(d.get("id")) == item_id]
    return max(versions, default=0) + 1


def _save(kind: str, item, new_id: str | None):
    from engine.ids import check_id

    item_id = check_id(new_id or item.id, kind[:-1] + " id")
    parent = item.ref if item.version is not None else item.parent
    saved = replace(item, id=item_id, version=_next_version(kind, item_id), parent=parent)
    path = _user(kind) / f"{saved.id}@{saved.version}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(saved.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return saved


def load_questionnaire(ref: str = "hal32") -> Questionnaire:
    return Questionnaire.from_dict(_resolve("questionnaires", ref))


def load_weights(ref: str = "hal16_published") -> Weights:
    return Weights.from_dict(_resolve("weights", ref))


def save_questionnaire(q: Questionnaire, new_id: str | None = None) -> Questionnaire:
    """Write ``q`` as the next version of its id (or of ``new_id``) and return it."""
    return _save("questionnaires", q, new_id)


def saved_path(item) -> Path:
    """Where a saved weights (or questionnaire) version lives in the data folder."""
    kind = "weights" if isinstance(item, Weights) else "questionnaires"
    return paths.data_dir() / kind / f"{item.id}@{item.version}.json"


def save_weights(w: Weights, new_id: str | None = None) -> Weights:
    return _save("weights", w, new_id)


def list_questionnaires() -> list[str]:
    return sorted({f"{d.get('id')}@{d.get('version')}" for d, _ in _candidates("questionnaires")})


def _weights_in(folder: Path) -> list[Weights]:
    out = []
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            try:
                out.append(Weights.from_dict(json.loads(path.read_text(encoding="utf-8"))))
            except Exception:  # a damaged file must not hide the others
                continue
    return out


def bundled_weights() -> list[Weights]:
    """The weights shipped in resources/weights."""
    return _weights_in(_bundled("weights"))


def user_weights() -> list[Weights]:
    """The weights saved in the data folder (fits, edits)."""
    return _weights_in(paths.data_dir() / "weights")


def list_weights() -> list[str]:
    return sorted({f"{d.get('id')}@{d.get('version')}" for d, _ in _candidates("weights")})
