"""Demo TCP echo server."""

import os
import socketserver


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


if __name__ == "__main__":
    port = int(os.environ.get("ECHO_PORT", "18104"))
    print(f"echo listening on 127.0.0.1:{port}", flush=True)
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer(("127.0.0.1", port), Echo).serve_forever()
