"""Demo API: answers JSON, proves it got its secret (without showing it), counts requests."""

import hashlib
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = os.environ.get("API_TOKEN", "")
REQUESTS = {"count": 0}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        REQUESTS["count"] += 1
        if self.path == "/metrics":
            body = (
                "# HELP demo_api_requests_total Requests served.\n"
                "# TYPE demo_api_requests_total counter\n"
                f"demo_api_requests_total {REQUESTS['count']}\n"
            ).encode()
            self._send(200, body, "text/plain; version=0.0.4")
        elif self.path == "/healthz":
            self._send(200 if TOKEN else 503, b"ok\n" if TOKEN else b"no token\n", "text/plain")
        else:
            digest = hashlib.sha256(TOKEN.encode()).hexdigest()[:12]
            data = {"service": os.environ.get("API_NAME", "api"), "token_sha256": digest,
                    "notes": ["plan before apply", "secrets never in git"]}
            self._send(200, json.dumps(data).encode(), "application/json")

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(format % args, flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("API_PORT", "18102"))
    print(f"api listening on 127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
