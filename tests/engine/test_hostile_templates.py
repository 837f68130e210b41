"""A model file's chat template is untrusted code: attempts to leave the jinja
sandbox become a clear model error (BadRequest), never code execution."""

from __future__ import annotations

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
