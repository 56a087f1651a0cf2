"""The server's voice list (GET /v1/audio/voices, a bare JSON array) and the checks made at test start."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from higgs_load.voices import VoiceError, check_voices, fetch_voices, parse_voices
from tests.support.ports import free_port


def test_parse_the_bare_array_of_names():
    assert parse_voices(b'["belinda", "en_man"]') == ["belinda", "en_man"]
    assert parse_voices(b"[]") == []
    for bad in (b'{"object": "list", "data": []}', b"not json", b"[1, 2]"):
        with pytest.raises(VoiceError, match="did not return a JSON array of voice names"):
            parse_voices(bad)


def test_check_names_the_list():
    check_voices(["belinda", "en_man"], [("--voice", "en_man")])
    with pytest.raises(
        VoiceError, match="--voice 'alloy' is not one of the server's voices: belinda, en_man"
    ):
        check_voices(["belinda", "en_man"], [("--voice", "alloy")])
    with pytest.raises(VoiceError, match=r"lists no voices \(GET /v1/audio/voices returned \[\]\)"):
        check_voices([], [])


class _Handler(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, bytes]]] = {}

    def do_GET(self) -> None:
        status, body = self.answers.get(
            self.headers.get("Authorization") or "", (401, b'{"error": "Unauthorized"}')
        )
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.answers = {"Bearer k": (200, b'["belinda","broom_salesman"]')}
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_with_key_and_clear_errors(server):
    assert fetch_voices(server + "/", "k") == ["belinda", "broom_salesman"]
    with pytest.raises(VoiceError, match="answered HTTP 401"):
        fetch_voices(server, "wrong")
    with pytest.raises(VoiceError, match=r"cannot list the server's voices: GET .* failed"):
        fetch_voices(f"http://127.0.0.1:{free_port()}", timeout=2)
