"""Names a researcher can read: the base model by its display name and an adapter by
an editable name ("DPO round 3 · default"), never a GGUF's internal ``general.name``
or a hex id.

Light on purpose (the studio and ``hal results`` use it): only the store is read.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePath

BUNDLED_DISPLAY = "SmolLM2-135M-Instruct"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# what the bundled model calls itself: the GGUF's general.name (llama.cpp), the file name
# (transformers on the dequantized GGUF)
_BUNDLED_SELF_NAMES = {"smollm2 135m 8k lc100k mix1 ep2", BUNDLED_FILE.lower(), "smollm2-135m-instruct.q4_1"}
KIND_TITLES = {"dpo": "DPO", "online": "Online RL", "reward-weights": "Reward weights",
               "reward-model": "Reward model"}
_LEGACY_DEFAULT = re.compile(r"^round [0-9a-f]{8}$")  # what adapters were named before
MAX_NAME = 80


class BadSpec(ValueError):
    """A stored model_spec that is not a JSON object naming a source."""


def decode_spec(model_spec) -> dict:
    if model_spec in (None, ""):
        return {}
    if isinstance(model_spec, dict):
        return model_spec
    if not isinstance(model_spec, str):
        raise BadSpec(f"model_spec is a {type(model_spec).__name__}, not JSON text")
    try:
        spec = json.loads(model_spec)
    except (ValueError, RecursionError):
        raise BadSpec("model_spec is not valid JSON") from None
    if not isinstance(spec, dict):
        raise BadSpec(f"model_spec holds a JSON {type(spec).__name__}, not an object")
    return spec


def is_bundled(spec: dict, model_path: str = "") -> bool:
    source = str(spec.get("source") or "")
    return source == "bundled" or PurePath(source).name == BUNDLED_FILE \
        or PurePath(str(model_path or "")).name == BUNDLED_FILE


def base_name(model_name, spec: dict, model_path: str = "") -> str:
    """The base model as the researcher knows it."""
    name = model_name.strip() if isinstance(model_name, str) else ""
    if is_bundled(spec, model_path) and (not name or name.lower() in _BUNDLED_SELF_NAMES):
        return BUNDLED_DISPLAY
    if not name:
        source = spec.get("source")
        if source is not None and not isinstance(source, str):
            raise BadSpec("model_spec's source is not text and the reply has no model name")
        name = PurePath(str(source or "")).name
    return name


class AdapterNames:
    """Adapter display names from the store's ``adapters`` table, found by id, PEFT
    folder or GGUF LoRA path (what a reply row records as its adapter)."""

    def __init__(self, store=None):
        self.by_key: dict[str, str] = {}
        if store is None:
            return
        try:
            rows = [dict(r) for r in store.db.query(
                "SELECT a.id, a.name, a.peft_path, a.gguf_path, a.round_id, r.kind, r.created_at AS rc "
                "FROM adapters a LEFT JOIN rounds r ON r.id = a.round_id")]
            order = {}
            for r in store.db.query("SELECT id, kind FROM rounds ORDER BY created_at, rowid"):
                order.setdefault(r["kind"], []).append(r["id"])
        except Exception:  # an older or damaged store: fall back to folder names
            return
        for row in rows:
            name = display_name(row, order)
            for key in (row["id"], row["peft_path"], row["gguf_path"]):
                if key:
                    self.by_key[str(key).rstrip("/\\")] = name

    def name(self, adapter: str) -> str:
        adapter = adapter.strip()
        key = adapter.rstrip("/\\")
        if key in self.by_key:
            return self.by_key[key]
        p = PurePath(key)
        for candidate in (p.name, p.parent.name if p.suffix == ".gguf" else None):
            if candidate and candidate in self.by_key:
                return self.by_key[candidate]
        return p.name or adapter


def display_name(row: dict, order: dict[str, list[str]] | None = None) -> str:
    """An adapter's name: the one it was given, else "<kind> round <n>" from its round."""
    name = (row.get("name") or "").strip()
    if name and not _LEGACY_DEFAULT.match(name):
        return name
    kind = row.get("kind")
    if kind and order and row.get("round_id") in order.get(kind, []):
        return f"{KIND_TITLES.get(kind, kind)} round {order[kind].index(row['round_id']) + 1}"
    return f"adapter {str(row.get('id') or '')[:8]}"


def default_adapter_name(store, round_id: str, preset: str | None) -> str:
    """The name a new adapter gets: "DPO round 3 · default" (kind, the round's number
    among rounds of its kind, its preset or "custom")."""
    row = store.db.execute("SELECT kind, created_at FROM rounds WHERE id=?", [round_id]).fetchone()
    if row is None:
        return f"round {round_id[:8]}"
    kind, created = row
    n = store.db.execute("SELECT COUNT(*) FROM rounds WHERE kind=? AND (created_at < ? OR "
                         "(created_at = ? AND rowid <= (SELECT rowid FROM rounds WHERE id=?)))",
                         [kind, created, created, round_id]).fetchone()[0]
    return f"{KIND_TITLES.get(kind, kind)} round {n} · {preset or 'custom'}"


def check_name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("an adapter's name must be some text")
    name = " ".join(name.split())
    if len(name) > MAX_NAME:
        raise ValueError(f"an adapter's name is at most {MAX_NAME} characters")
    if any(ord(c) < 32 for c in name):
        raise ValueError("an adapter's name cannot hold control characters")
    return name


def find_adapter(store, key: str) -> dict:
    """An adapter row by id (or a unique id prefix), PEFT folder, GGUF path or name."""
    key = str(key).strip().rstrip("/\\")
    rows = [dict(r) for r in store.db.query("SELECT * FROM adapters")]
    for match in (lambda r: key in (r["id"], (r["peft_path"] or "").rstrip("/\\"), r["gguf_path"]),
                  lambda r: len(key) >= 4 and r["id"].startswith(key),
                  lambda r: (r["name"] or "") == key):
        hits = [r for r in rows if match(r)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise ValueError(f"{key!r} matches {len(hits)} adapters; give the full id")
    raise ValueError(f"no adapter {key!r} in the store (hal adapters list shows them)")


def rename_adapter(store, key: str, name: str) -> dict:
    """Give an adapter a new name (unique among adapters); returns the updated row."""
    name = check_name(name)
    row = find_adapter(store, key)
    taken = store.db.execute("SELECT id FROM adapters WHERE name=? AND id<>?", [name, row["id"]]).fetchone()
    if taken:
        raise ValueError(f"another adapter ({taken[0][:8]}) is already named {name!r}; names must be "
                         "unique, or their votes would be counted together")
    store._update("adapters", row["id"], {"name": name})
    return {**row, "name": name}


def list_adapters(store) -> list[dict]:
    """Every adapter with the name shown for it, newest first."""
    names = AdapterNames(store)
    out = []
    for r in store.db.query("SELECT id, name, base_model, peft_path, gguf_path, round_id, created_at "
                            "FROM adapters ORDER BY created_at DESC"):
        r = dict(r)
        r["display_name"] = names.by_key.get(r["id"], r["name"] or r["id"])
        out.append(r)
    return out
