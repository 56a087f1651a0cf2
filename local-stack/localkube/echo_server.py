"""A trivial HTTP server that proves the pod -> local process mechanism (image ``localhost/http-echo``).

``GET /healthz`` answers 200 once ready; every other path answers a JSON echo of the request plus
``$POD_NAME``/``$HOSTNAME``. ``--startup-delay`` waits before listening (so a readinessProbe fails
until then); ``--fail-health-after`` makes /healthz answer 500 after that many seconds (liveness
tests). The port comes from ``--port``, else ``$PORT``, else 8080.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="echo_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (the pod IP)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--startup-delay", type=float, default=0.0, help="seconds before listening")
    parser.add_argument("--fail-health-after", type=float, default=None, help="/healthz fails after S s")
    parser.add_argument("--text", default="echo", help="text included in every answer")
    return parser.parse_args(argv)


def make_handler(opts: argparse.Namespace, started: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                failing = (
                    opts.fail_health_after is not None and time.time() - started > opts.fail_health_after
                )
                self._send(500 if failing else 200, {"ok": not failing})
                return
            self._send(
                200,
                {
                    "text": opts.text,
                    "path": self.path,
                    "pod": os.environ.get("POD_NAME") or os.environ.get("HOSTNAME", ""),
                    "listen": f"{opts.host}:{opts.port}",
                    "headers": dict(self.headers),
                },
            )

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if opts.startup_delay > 0:
        print(f"echo_server: starting in {opts.startup_delay}s", file=sys.stderr, flush=True)
        time.sleep(opts.startup_delay)
    server = ThreadingHTTPServer((opts.host, opts.port), make_handler(opts, time.time()))
    print(f"echo_server: listening on http://{opts.host}:{opts.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
