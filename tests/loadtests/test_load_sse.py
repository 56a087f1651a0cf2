"""SSE parsing with events split at every possible byte boundary."""

import pytest

from higgs_load.sse import SSEParser

STREAM = (
    b": keep-alive comment\n\n"
    b'data: {"a": 1}\n\n'
    b"event: message\nid: 7\ndata: line1\ndata: line2\n\n"
    b"data:nospace\r\n\r\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [b'{"a": 1}', b"line1\nline2", b"nospace", b"[DONE]"]


def test_whole_stream():
    assert SSEParser().feed(STREAM) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13])
def test_any_split(size):
    parser = SSEParser()
    events = []
    for i in range(0, len(STREAM), size):
        events += parser.feed(STREAM[i : i + size])
    assert events == EXPECTED
    assert not parser.pending


def test_crlf_split_between_cr_and_lf():
    parser = SSEParser()
    assert parser.feed(b"data: x\r") == []
    assert parser.feed(b"\n\r") == []
    assert parser.feed(b"\n") == [b"x"]


def test_unfinished_event_is_pending():
    parser = SSEParser()
    assert parser.feed(b'data: {"half') == []
    assert parser.pending
