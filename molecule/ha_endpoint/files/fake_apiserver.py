# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TEST DOUBLE for kube-apiserver: only what the load balancer sees. Never used outside tests.

A tiny HTTPS server (Python standard library only) for the ha_endpoint scenario:

- ``GET /readyz`` answers 200 ``ok <node>`` (500 while the file --not-ready-file exists), so
  HAProxy's health check and the tests can tell which backend answered;
- ``GET /watch?seconds=N`` streams one line every 0.2 s for N seconds (at most 300), like a
  long-lived watch, to prove that a HAProxy reload does not cut open connections.

The real kube-apiserver behind the same HAProxy and keepalived is molecule/cluster's; docs/testing.md, "What
stays simulated", says why this scenario keeps a backend whose readiness the test sets.
"""

import argparse
import http.server
import os
import ssl
import time
import urllib.parse


def make_handler(name, not_ready_file):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "fake-apiserver"
        protocol_version = "HTTP/1.0"

        def log_message(self, format, *args):  # keep the journal quiet
            return

        def _reply(self, status, body):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Backend", name)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/readyz":
                if os.path.exists(not_ready_file):
                    self._reply(500, "not ready %s\n" % name)
                else:
                    self._reply(200, "ok %s\n" % name)
            elif url.path == "/watch":
                query = urllib.parse.parse_qs(url.query)
                seconds = min(float(query.get("seconds", ["10"])[0]), 300.0)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("X-Backend", name)
                self.end_headers()
                deadline = time.monotonic() + seconds
                tick = 0
                while time.monotonic() < deadline:
                    self.wfile.write(("tick %d %s\n" % (tick, name)).encode())
                    self.wfile.flush()
                    tick += 1
                    time.sleep(0.2)
            else:
                self._reply(404, "not found\n")

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=6443)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--not-ready-file", default="/run/fake-apiserver/not-ready")
    args = parser.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server = http.server.ThreadingHTTPServer((args.address, args.port), make_handler(args.name, args.not_ready_file))
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
