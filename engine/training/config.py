"""Round settings as dataclasses with a help text per field, validated before work.

The same checks serve the CLI, the engine commands and the GUI, so an
out-of-range value is refused with one clear sentence before anything loads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import BadRequest


class ConfigError(BadRequest):
    kind = "bad_config"


def opt(default: Any, help: str, lo: float | None = None, hi: float | None = None,
        choices: tuple | None = None) -> Any:
    """A dataclass field carrying its help text and its allowed range."""
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _kind_of(cls, f: dataclasses.Field):
    hints = typing.get_type_hints(cls)
    return hints.get(f.name)


def validate(cfg) -> None:
    """Raise ConfigError naming the field, its value and what is allowed."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        lo, hi, choices = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("choices")
        if value is None:
            continue
        if choices is not None and value not in choices:
            raise ConfigError(f"{f.name}={value!r} is not one of {', '.join(map(str, choices))} "
                              f"({f.metadata.get('help', '')})")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, not {value}")
            if lo is not None and value < lo or hi is not None and value > hi:
                rng = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
                raise ConfigError(f"{f.name}={value} is outside {rng}: {f.metadata.get('help', '')}")
    check = getattr(cfg, "check", None)
    if check:
        check()


def _coerce(kind, value, fname: str):
    """Accept JSON's types for a field: ints for floats, lists for tuples."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is typing.Union or str(origin) == "types.UnionType":
        if value is None and type(None) in args:
            return None
        kind = next(a for a in args if a is not type(None))
        origin = typing.get_origin(kind)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{fname} must be true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{fname} must be a whole number, not {value!r}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{fname} must be a number, not {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{fname} must be a string, not {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{fname} must be a list")
        return list(value)
    return value


def from_dict(cls, data: dict | None, base=None):
    """Build a config from JSON, over ``base`` (a preset), refusing unknown keys."""
    data = dict(data or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting(s) for {cls.__name__}: {', '.join(unknown)}")
    cfg = dataclasses.replace(base) if base is not None else cls()
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        setattr(cfg, key, _coerce(hints[key], value, key))
    validate(cfg)
    return cfg


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def describe(cls) -> list[dict]:
    """Fields with type, default, help and range: what the GUI's form is built from."""
    out = []
    inst = cls()
    for f in dataclasses.fields(cls):
        out.append({"name": f.name, "type": str(_kind_of(cls, f)), "default": getattr(inst, f.name),
                    "help": f.metadata.get("help", ""), "min": f.metadata.get("lo"),
                    "max": f.metadata.get("hi"), "choices": f.metadata.get("choices")})
    return out


def load_config_file(path: str | Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return data


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraSettings:
    """LoRA fields shared by the policy rounds (the paper's values as defaults)."""

    lora_r: int = opt(16, "LoRA rank", 1, 256)
    lora_alpha: float = opt(32.0, "LoRA alpha (scale = alpha / r)", 0.0, 1024)
    lora_dropout: float = opt(0.1, "dropout on the LoRA input", 0.0, 0.9)
    lora_targets: list = opt(list(LORA_TARGETS), "module names the LoRA attaches to "
                             "(all attention and MLP projections by default)")
