"""A small HTTPS client for health checks and a few API reads during `up`/`status`.

The standard library is enough here and starts in milliseconds (the kubernetes client takes a second
to import); tests and the node agent use the kubernetes client.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Response:
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


class HttpsClient:
    """HTTPS to 127.0.0.1:<port>; verifies the server against `ca` when given, presents a client cert."""

    def __init__(self, port: int, ca: Path | None = None, cert: Path | None = None, key: Path | None = None):
        self.port = port
        if ca is not None:
            self._ctx = ssl.create_default_context(cafile=str(ca))
        else:
            # Controller-manager and scheduler serve self-signed certificates made at start: nothing to pin.
            self._ctx = ssl.create_default_context()
            self._ctx.check_hostname = False
            self._ctx.verify_mode = ssl.CERT_NONE
        if cert is not None and key is not None:
            self._ctx.load_cert_chain(str(cert), str(key))

    def request(self, method: str, path: str, body: Any = None, timeout: float = 5.0) -> Response:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self._ctx, timeout=timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json", "Accept": "application/json"} if payload else {}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            return Response(resp.status, resp.read().decode(errors="replace"))
        finally:
            conn.close()

    def get(self, path: str, timeout: float = 5.0) -> Response:
        return self.request("GET", path, timeout=timeout)

    def ok(self, path: str, timeout: float = 2.0) -> bool:
        """True if GET path answers 200; any connection or TLS error is simply 'not ok yet'."""
        try:
            return self.get(path, timeout=timeout).status == 200
        except (OSError, ssl.SSLError, http.client.HTTPException):
            return False
