"""Demo notes page: renders notes fetched from the API it depends on."""

import json
import os
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = os.environ.get("API_URL", "http://127.0.0.1:18102")
SERVED = {"count": 0}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        SERVED["count"] += 1
        if self.path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
        elif self.path == "/metrics":
            body = f"# TYPE demo_notes_pages_total counter\ndemo_notes_pages_total {SERVED['count']}\n"
            self._send(200, body.encode(), "text/plain; version=0.0.4")
        else:
            try:
                with urllib.request.urlopen(API, timeout=2) as response:
                    notes = json.load(response)["notes"]
            except OSError as exc:
                self._send(502, f"api unreachable: {exc}\n".encode(), "text/plain")
                return
            items = "".join(f"<li>{n}</li>" for n in notes)
            self._send(200, f"<h1>Notes</h1><ul>{items}</ul>".encode(), "text/html")

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    port = int(os.environ.get("NOTES_PORT", "18103"))
    print(f"notes listening on 127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
