"""Limits on rendering a model's chat template: time, size and memory.

A chat template is code from a model file. The jinja sandbox stops it from
reaching Python's internals, but not from looping for hours or doubling a
string until the engine runs out of memory. Here every render gets a deadline
(checked on each line the template's compiled code runs), a cap on the
characters any one value or the whole output may have (checked before a
string, list or number is built, so a gigabyte is never allocated), and a cap
on how far the process may grow while a slow render runs. Breaking one is a
BadRequest saying which limit and that the template was stopped.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import threading
import time

from jinja2.compiler import CodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import BadRequest

RENDER_SECONDS = 5.0  # a real template renders in milliseconds
MAX_CHARS = 16 * 2**20  # any one string, list or the output; messages are at most 8 MB
MAX_INT_BITS = 1 << 16  # numbers beyond this are only useful for building huge things
MAX_GROWTH_BYTES = 512 * 2**20  # resident memory a slow render may add
_MEMORY_EVERY_S = 0.005
# a field width or precision of 10^7 or more: "%0999999999d", "{:>999999999}"
_BIG_WIDTH = re.compile(r"%[-+ #0*]*(\d{8,}|\d*\.\d{8,})|\{[^{}]*:[^{}]*\d{8,}[^{}]*\}")
_state = threading.local()


class TemplateLimit(BadRequest):
    """A chat template was stopped for taking too long or building too much."""


def _stop(what: str) -> TemplateLimit:
    return TemplateLimit(f"The chat template was stopped: {what}. The model file's template is "
                         "unusable; choose another model or fix its chat template.")


def _too_long(n: int, what: str) -> None:
    if n > MAX_CHARS:
        raise _stop(f"it built {what} of {n:,} characters or items (the limit is {MAX_CHARS:,})")


def _text_size(value) -> int:
    """About len(str(value)), counted only until it passes MAX_CHARS (a list
    holding one big list many times prints as all of them)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple)) and value:  # fast paths in C for flat lists
        kinds = set(map(type, value))
        if kinds <= {str}:
            return sum(map(len, value)) + 4 * len(value)
        if kinds <= {int}:
            return (max(max(value), -min(value)).bit_length() // 3 + 3) * len(value)
    total, stack = 0, [iter((value,))]
    while stack and total <= MAX_CHARS:
        try:
            v = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        if isinstance(v, (str, bytes)):
            total += len(v) + 2
        elif isinstance(v, dict):
            total += 2 + 4 * len(v)
            stack.append(iter(v.items()))
        elif isinstance(v, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(v)
            stack.append(iter(v))
        elif isinstance(v, int):
            total += v.bit_length() // 3 + 1
        else:
            total += 1
    return total


def _check_text(value, what: str) -> None:
    _too_long(_text_size(value), what)


def _sized(value, what: str = "a value") -> None:
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        _too_long(len(value), what)
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _stop(f"it built a number of {value.bit_length():,} bits")


def _int_args(args, kwargs) -> None:
    """A huge count or width passed to a method or filter (``center(10**9)``)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_CHARS:
            raise _stop(f"it asked for a size of {value:,}")


def _wide_format(text) -> None:
    if isinstance(text, str) and _BIG_WIDTH.search(text):
        raise _stop("its format string asks for a field millions of characters wide")


def _arg(args, kwargs, index: int, name: str, default=None):
    return args[index] if len(args) > index else kwargs.get(name, default)


def _check_growth(name: str, subject, args, kwargs) -> None:
    """Before a string method or filter that can multiply its input runs: the
    size of what it would build. ``subject`` is the string (or, for a filter,
    its first argument); ``args`` what follows it."""
    if name == "replace" and isinstance(subject, str):
        old, new = _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new")
        if isinstance(old, str) and isinstance(new, str):
            hits = subject.count(old) if old else len(subject) + 1
            count = _arg(args, kwargs, 2, "count")
            if isinstance(count, int) and count >= 0:
                hits = min(hits, count)
            _too_long(len(subject) + hits * max(0, len(new) - len(old)), "a string")
    elif name == "join":
        sep, items = (subject, _arg(args, kwargs, 0, "iterable")) if isinstance(subject, str) else (
            _arg(args, kwargs, 0, "d", ""), subject)
        if isinstance(items, (list, tuple)):
            _too_long(_text_size(items) + _text_size(sep) * max(0, len(items) - 1), "a string")
    elif name == "indent" and isinstance(subject, str):
        width = _arg(args, kwargs, 0, "width", 4)
        per_line = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        _too_long(len(subject) + (subject.count("\n") + 1) * per_line, "a string")
    elif name == "wordwrap" and isinstance(subject, str):
        width, wrap = _arg(args, kwargs, 0, "width", 79), _arg(args, kwargs, 2, "wrapstring")
        if isinstance(width, int) and isinstance(wrap, str):
            _too_long(len(subject) + (len(subject) // max(1, width) + 1) * len(wrap), "a string")
    elif name == "translate" and isinstance(subject, str) and isinstance(_arg(args, kwargs, 0, "table"), dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        _too_long(len(subject) * max(1, longest), "a string")
    elif name == "expandtabs" and isinstance(subject, str):
        size = _arg(args, kwargs, 0, "tabsize", 8)
        if isinstance(size, int):
            _too_long(len(subject) + subject.count("\t") * size, "a string")
    elif name in ("format", "format_map"):
        _wide_format(subject)
        _too_long(_text_size(subject) + _text_size([*args, *kwargs.values()]), "a string")
    elif name in ("string", "tojson", "pprint", "sum", "list"):
        _check_text(subject, "a string")


def _check_binop(op: str, left, right) -> None:
    seqs = (str, bytes, list, tuple)
    if op == "+" and isinstance(left, seqs) and isinstance(right, seqs):
        _too_long(len(left) + len(right), "a string or list")
    elif op == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, seqs) and isinstance(n, int):
                _too_long(len(seq) * max(0, n), "a string or list")
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise _stop("it multiplied numbers past the size limit")
    elif op == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        if right * max(1, abs(left).bit_length()) > MAX_INT_BITS:
            raise _stop(f"it raised a number to the power {right:,}")
    elif op == "%" and isinstance(left, str):
        _wide_format(left)
        _too_long(len(left) + _text_size(right), "a string")


class _Generator(CodeGenerator):
    """Compiles ``a ~ b`` to a join that checks the joined length first."""

    def visit_Concat(self, node, frame) -> None:  # noqa: N802 (jinja's visitor API)
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _bounded_filter(name: str, fn):
    @functools.wraps(fn)  # keeps jinja_pass_arg (context/environment filters)
    def wrapper(*args, **kwargs):
        _int_args(args, kwargs)
        skip = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0  # the context/environment
        if len(args) > skip:
            _check_growth(name, args[skip], args[skip + 1:], kwargs)
        out = fn(*args, **kwargs)
        _sized(out, "a filtered value")
        return out

    return wrapper


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with size checks on output, ``~``, ``+``, ``*``, ``**``, ``%``,
    method calls and filters."""

    code_generator_class = _Generator
    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, finalize=self._finalize, **kwargs)
        self.filters = {name: _bounded_filter(name, fn) for name, fn in self.filters.items()}

    def add_filter(self, name: str, fn) -> None:
        self.filters[name] = _bounded_filter(name, fn)

    @staticmethod
    def _finalize(value):
        """Every ``{{ ... }}`` passes here before it is printed."""
        _check_text(value, "an output")
        return value

    def checked_concat(self, parts) -> str:
        _too_long(sum(_text_size(p) for p in parts), "a string")
        return "".join(str(p) for p in parts)

    def call_binop(self, context, op, left, right):
        _check_binop(op, left, right)
        return super().call_binop(context, op, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (jinja's signature)
        _int_args(args, kwargs)
        target = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            _check_growth(getattr(target, "__name__", ""), owner, args, kwargs)
        out = super().call(__context, __obj, *args, **kwargs)
        _sized(out, "a value")
        return out


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class _Watch:
    """A trace function: the deadline on every line, memory growth every few ms."""

    def __init__(self, seconds: float):
        self.start = time.monotonic()
        self.deadline = self.start + seconds
        self.seconds = seconds
        self.next_memory = self.start + _MEMORY_EVERY_S
        self.rss0 = None

    def __call__(self, frame, event, arg):
        now = time.monotonic()
        if now > self.deadline:
            raise _stop(f"it ran for over {self.seconds:g} s")
        if now > self.next_memory:  # only a slow render pays for reading its memory
            self.next_memory = now + _MEMORY_EVERY_S
            rss = _rss_bytes()
            if self.rss0 is None:
                self.rss0 = rss
            elif rss is not None and rss - self.rss0 > MAX_GROWTH_BYTES:
                raise _stop(f"it grew the engine's memory by over {MAX_GROWTH_BYTES // 2**20} MB")
        return self


def run_limited(fn, *args, seconds: float | None = None, **kwargs):
    """Call ``fn`` (a render) under the deadline and memory watch; check the
    size of what it returns. Any template's render can go through here, also
    one in transformers' own sandbox (``apply_chat_template``)."""
    if getattr(_state, "active", False):  # already watched further up
        return fn(*args, **kwargs)
    watch = _Watch(RENDER_SECONDS if seconds is None else seconds)
    previous = sys.gettrace()
    _state.active = True
    sys.settrace(watch)
    try:
        out = fn(*args, **kwargs)
    except MemoryError:
        raise _stop("it ran out of memory") from None
    except RecursionError:
        raise _stop("it recursed too deeply") from None
    finally:
        sys.settrace(previous)
        _state.active = False
    _sized(out, "an output")
    return out


def render(template, seconds: float | None = None, **variables) -> str:
    """Render a template compiled by LimitedSandbox, streaming its output so
    the total is checked as it grows."""

    def stream() -> str:
        parts, total = [], 0
        for chunk in template.generate(**variables):
            total += len(chunk)
            _too_long(total, "an output")
            parts.append(chunk)
        return "".join(parts)

    return run_limited(stream, seconds=seconds)


def chat_prompt(tokenizer, messages: list[dict]) -> str:
    """A Hugging Face tokenizer's chat template rendered (with the generation
    prompt) under the same deadline, memory and output limits."""
    return run_limited(tokenizer.apply_chat_template, messages, add_generation_prompt=True, tokenize=False)
