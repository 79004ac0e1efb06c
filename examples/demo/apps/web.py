"""Demo front page: serves the files in site/ and counts what it served at /metrics."""

import os
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

SERVED = {"count": 0}


class Handler(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/metrics":
            body = (
                "# HELP demo_web_requests_total Pages and files served.\n"
                "# TYPE demo_web_requests_total counter\n"
                f"demo_web_requests_total {SERVED['count']}\n"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        SERVED["count"] += 1
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        print(format % args, flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("WEB_PORT", "18101"))
    site = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "site")
    print(f"web listening on 127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), partial(Handler, directory=site)).serve_forever()
