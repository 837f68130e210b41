"""A model file's chat template is untrusted code: attempts to leave the jinja
sandbox become a clear model error (BadRequest), never code execution."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

pytest.importorskip("jinja2")
llamacpp = pytest.importorskip("engine.models.llamacpp")

from engine.errors import BadRequest, EngineError  # noqa: E402

MESSAGES = [{"role": "user", "content": "hi"}]
MARKER = "/tmp/hal-hostile-template-ran"

HOSTILE = {
    "mro subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "tuple base": "{{ ().__class__.__base__.__subclasses__() }}",
    "cycler os": "{{ cycler.__init__.__globals__.os.system('touch " + MARKER + "') }}",
    "lipsum os": "{{ lipsum.__globals__['os'].popen('touch " + MARKER + "').read() }}",
    "mutate messages": "{% set _ = messages.append({'role': 'system', 'content': 'pwned'}) %}{{ messages }}",
    "format string": "{{ '{0.__class__.__init__.__globals__}'.format(messages) }}",
    "huge range": "{% for i in range(10**9) %}x{% endfor %}",
    "runaway macro": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
}


def render(source: str) -> str:
    model = SimpleNamespace(_template=llamacpp._compile_template(source), bos_text="<s>", eos_text="</s>")
    return llamacpp.LlamaCppModel.render(model, MESSAGES)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_template_that_breaks_out_of_the_sandbox_is_a_clear_model_error(name, tmp_path):
    import os

    if os.path.exists(MARKER):
        os.remove(MARKER)
    with pytest.raises(EngineError) as info:
        render(HOSTILE[name])
    assert isinstance(info.value, BadRequest)
    assert "chat template" in info.value.message
    assert not os.path.exists(MARKER), "the template ran a command"
    assert MESSAGES == [{"role": "user", "content": "hi"}]


def test_reading_a_private_attribute_renders_nothing():
    """The sandbox answers an unsafe lookup that is only printed with an empty value."""
    assert render("{{ raise_exception.__globals__ }}{{ messages.__class__ }}") == ""


def test_an_ordinary_template_still_renders():
    out = render("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")
    assert out == "<user>hi<assistant>"


# -- templates that run too long or build too much ----------------------------------------
import resource  # noqa: E402
import time  # noqa: E402

from engine.models import template_limits  # noqa: E402

DOUBLING = "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s OP ns.s %}{% endfor %}{{ ns.s }}"
COSTLY = {
    "concat doubling": DOUBLING.replace("OP", "~"),
    "plus doubling": DOUBLING.replace("OP", "+"),
    "string times a billion": "{{ 'x' * 10**10 }}",
    "list times a billion": "{{ ([1] * 10**10)|length }}",
    "centre a billion wide": "{{ 'x'|center(10**9) }}",
    "ljust method": "{{ 'x'.ljust(2000000000) }}",
    "format width": "{{ '{:>999999999}'.format(1) }}",
    "percent width": "{{ '%0999999999d' % 1 }}",
    "replace method": "{% set s = 'x' * 100000 %}{{ s.replace('x', s) }}",
    "replace filter": "{% set s = 'x' * 100000 %}{{ s|replace('x', s) }}",
    "indent by a string": "{% set s = 'x' * 100000 %}{{ (s ~ '\\n' ~ s ~ '\\n' ~ s)|indent(s * 100) }}",
    "join with a big separator": "{{ range(1000)|join('y' * 100000) }}",
    "printing a list of big lists": "{% set l = ['x' * 1000] * 10000 %}{{ [l] * 1000 }}",
    "output piece by piece": "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "busy loop printing": "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}",
    "many distinct strings": "{% set ns = namespace(l=[], s='y' * 1000000) %}{% for i in range(100000) %}"
                             "{% set ns.l = ns.l + [ns.s ~ i] %}{% endfor %}{{ ns.l|length }}",
    "macro in a loop": "{% macro f() %}{% for i in range(100000) %}{% endfor %}{{ f() }}{% endmacro %}{{ f() }}",
}


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("name", sorted(COSTLY))
def test_a_template_that_runs_long_or_builds_huge_values_is_stopped(name, monkeypatch):
    monkeypatch.setattr(template_limits, "RENDER_SECONDS", 1.0)
    before, t0 = _maxrss_mb(), time.monotonic()
    with pytest.raises(template_limits.TemplateLimit) as info:
        render(COSTLY[name])
    took = time.monotonic() - t0
    assert isinstance(info.value, BadRequest)
    assert info.value.message.startswith("The chat template was stopped: ")
    assert any(w in info.value.message for w in ("characters", "size", "wide", "ran for over 1 s", "memory"))
    assert took < 4.0, f"stopped only after {took:.1f} s"
    assert _maxrss_mb() - before < 1500, "the template grew the process by gigabytes before it was stopped"


def test_the_limits_are_generous_for_real_conversations():
    """A 4 MB message through a template using most jinja features renders the
    same as in the plain sandbox, in well under the time limit."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    source = ("{%- set ns = namespace(n=0) -%}{{ bos_token }}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
              "{{ '<|' ~ m['role'] ~ '|>' + m['content'].strip().replace('  ', ' ') }}{% if not loop.last %}"
              "{{ eos_token }}{% endif %}{% endfor %}{{ ns.n }}{{ messages|map(attribute='role')|join(',') }}"
              "{{ '%s-%d' % ('a', 3) }}{{ '{}|{}'.format(1, 'b') }}{{ ('ab' * 3)|upper|center(10) }}")
    messages = [{"role": "user", "content": "hi  there"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "y" * 4_000_000}]
    plain = ImmutableSandboxedEnvironment().from_string(source).render(
        messages=messages, bos_token="<s>", eos_token="</s>")
    model = SimpleNamespace(_template=llamacpp._compile_template(source), bos_text="<s>", eos_text="</s>")
    t0 = time.monotonic()
    assert llamacpp.LlamaCppModel.render(model, messages) == plain
    assert time.monotonic() - t0 < 1.0
    assert template_limits.RENDER_SECONDS <= 10 and template_limits.MAX_CHARS >= 8 * 2**20


def test_a_hugging_face_template_gets_the_same_limits(monkeypatch):
    """transformers renders in its own sandbox; the deadline and memory watch still apply."""
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    monkeypatch.setattr(template_limits, "RENDER_SECONDS", 1.0)
    tok = PreTrainedTokenizerFast(tokenizer_object=tokenizers.Tokenizer(tokenizers.models.WordLevel(
        {"[UNK]": 0, "hi": 1}, unk_token="[UNK]")))
    tok.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    assert template_limits.chat_prompt(tok, MESSAGES) == "<user>hi"
    # the doubling is stopped by the memory watch (about 0.6 s alone) or, in a slower
    # process, by the deadline first; either way within seconds and without gigabytes
    for source, why in ((COSTLY["nested loops"], "ran for over"), (COSTLY["concat doubling"], "memory|ran for over")):
        tok.chat_template = source
        before, t0 = _maxrss_mb(), time.monotonic()
        with pytest.raises(template_limits.TemplateLimit, match=why):
            template_limits.chat_prompt(tok, MESSAGES)
        assert time.monotonic() - t0 < 4.0
        assert _maxrss_mb() - before < 1500
    assert not isinstance(sys.gettrace(), template_limits._Watch)  # the watch is gone afterwards
