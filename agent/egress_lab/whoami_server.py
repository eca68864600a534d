"""The external hosts' HTTP endpoint: answers every GET with the client's source `IP:PORT`.

Run inside the external host's namespace by `egress-lab up`; it is what
`egress-lab whoami` asks, so the answer is the address the outside world saw.
"""

from __future__ import annotations

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WhoAmI(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        body = f"{self.client_address[0]}:{self.client_address[1]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", required=True)
    ap.add_argument("--port", type=int, default=80)
    args = ap.parse_args()
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer((args.bind, args.port), WhoAmI).serve_forever()


if __name__ == "__main__":
    main()
