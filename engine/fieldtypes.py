"""Type checks for settings dataclasses built from JSON arguments.

A command's settings arrive from the wire; a value of the wrong type must be
refused with a sentence naming the field, not surface later as a TypeError
deep inside a job (which reads as an engine bug).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing

from engine.errors import BadRequest

_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
          dict: "an object", list: "a list", type(None): "empty (null)"}


def _fits(kind, value) -> bool:
    origin = typing.get_origin(kind)
    if origin is typing.Union or origin is types.UnionType:
        return any(_fits(arg, value) for arg in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return math.isfinite(value) if isinstance(value, float) else abs(value) < 2**1000
    if kind is str:
        return isinstance(value, str)
    if kind is dict or origin is dict:
        return isinstance(value, dict)
    if kind is list or origin is list:
        return isinstance(value, list)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return isinstance(value, kind)
    return True  # a type this check does not know: left to the setting's own checks


def _describe(kind) -> str:
    origin = typing.get_origin(kind)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_describe(arg) for arg in typing.get_args(kind))
    return _NAMES.get(origin or kind, getattr(kind, "__name__", str(kind)))


def check_types(obj, prefix: str = "") -> None:
    """Raise BadRequest for the first field of ``obj`` whose value has the wrong type."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        kind = hints.get(f.name)
        if kind is not None and not _fits(kind, value):
            raise BadRequest(f"{prefix}{f.name} must be {_describe(kind)}, not {type(value).__name__} "
                             f"{_short(value)}")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
