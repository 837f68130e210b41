"""The wire format: envelopes round-trip; bad lines are refused with a reason."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.protocol import MAX_LINE_BYTES, PROTOCOL_VERSION, Message, ProtocolError, decode


def test_round_trip_keeps_every_field():
    msg = Message(type="generate", content={"text": "héllo\nworld 😀"}, parent="abc")
    line = msg.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    back = decode(line)
    assert (back.type, back.id, back.parent, back.content, back.v) == (
        "generate", msg.id, "abc", {"text": "héllo\nworld 😀"}, PROTOCOL_VERSION)


@pytest.mark.parametrize("line,kind", [
    (b"", "empty"),
    (b"not json", "bad_json"),
    (b"[1,2]", "bad_envelope"),
    (b'{"type":"x"}', "bad_envelope"),
    (b'{"id":"1","type":""}', "bad_envelope"),
    (b'{"id":"1","type":"x","content":[1]}', "bad_envelope"),
    (b'{"id":"1","type":"x","v":99}', "bad_version"),
    (b'{"id":"1","type":"x","parent":5}', "bad_envelope"),
    (b"\xff\xfe{}", "bad_encoding"),
])
def test_bad_lines_are_refused_with_a_kind(line, kind):
    with pytest.raises(ProtocolError) as info:
        decode(line)
    assert info.value.kind == kind


def test_refused_line_keeps_the_id_when_it_can():
    with pytest.raises(ProtocolError) as info:
        decode(b'{"id":"abc","type":"x","v":7}')
    assert info.value.msg_id == "abc"


def test_oversized_line_is_refused_unparsed():
    with pytest.raises(ProtocolError) as info:
        decode(b"x" * (MAX_LINE_BYTES + 1))
    assert info.value.kind == "too_large"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_escape_as_other_exceptions(data):
    try:
        decode(data)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "id", "type", "parent", "content", "x"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=5),
                                 st.lists(st.integers(), max_size=2),
                                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))))
def test_wrong_field_types_are_refused_or_decoded_consistently(obj):
    try:
        msg = decode(json.dumps(obj))
    except ProtocolError:
        return
    assert isinstance(msg.id, str) and isinstance(msg.type, str) and isinstance(msg.content, dict)
