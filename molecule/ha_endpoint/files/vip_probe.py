# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test client for the ha_endpoint scenario; runs inside the client container.

Every request opens a new TCP + TLS connection to https://VIP:PORT, as a kubelet reconnecting
would. Every loop is bounded in count and time. Output is one JSON document on stdout.

  python3 vip-probe --host VIP seq --count 9        sequential GET /readyz, the backend of each
  python3 vip-probe --host VIP poll --duration 12   GET /readyz every --interval s, with timestamps
  python3 vip-probe --host VIP watch --seconds 90 --stop-file F   one long-lived GET /watch
"""

import argparse
import json
import os
import socket
import ssl
import sys
import time

CONTEXT = ssl.create_default_context()
CONTEXT.check_hostname = False
CONTEXT.verify_mode = ssl.CERT_NONE


def request(host, port, path, timeout):
    """One GET over a fresh connection: (ok, backend or error)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            raw.settimeout(timeout)
            with CONTEXT.wrap_socket(raw) as tls:
                tls.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path, host)).encode())
                data = b""
                while True:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
        head, _separator, body = data.decode(errors="replace").partition("\r\n\r\n")
        status = head.split(" ", 2)[1] if " " in head else "?"
        if status != "200":
            return False, "status %s" % status
        return True, body.split()[-1] if body.split() else "?"
    except (OSError, ssl.SSLError, IndexError) as exc:
        return False, type(exc).__name__


def cmd_seq(args):
    results = []
    for _request in range(min(args.count, 1000)):
        ok, what = request(args.host, args.port, "/readyz", args.timeout)
        results.append({"ok": ok, "backend": what})
    return {"results": results}


def cmd_poll(args):
    results = []
    deadline = time.time() + min(args.duration, 120)
    while time.time() < deadline and len(results) < 5000:
        start = time.time()
        ok, what = request(args.host, args.port, "/readyz", args.timeout)
        results.append({"start": start, "end": time.time(), "ok": ok, "backend": what})
        time.sleep(max(0.0, args.interval - (time.time() - start)))
    return {"results": results}


def cmd_watch(args):
    ticks = []
    error = None
    opened = time.time()
    deadline = opened + min(args.seconds, 300)
    try:
        with socket.create_connection((args.host, args.port), timeout=5) as raw:
            raw.settimeout(5)
            with CONTEXT.wrap_socket(raw) as tls:
                tls.sendall(("GET /watch?seconds=%d HTTP/1.0\r\nHost: %s\r\n\r\n"
                             % (args.seconds, args.host)).encode())
                print("opened", flush=True, file=sys.stderr)
                buffer = b""
                while time.time() < deadline:
                    if args.stop_file and os.path.exists(args.stop_file):
                        break
                    chunk = tls.recv(4096)
                    if not chunk:
                        error = "closed by the server after %d ticks" % len(ticks)
                        break
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.startswith(b"tick "):
                            ticks.append({"time": time.time(), "line": line.decode()})
    except (OSError, ssl.SSLError) as exc:
        error = "%s: %s" % (type(exc).__name__, exc)
    return {"opened": opened, "closed": time.time(), "error": error, "ticks": ticks}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--timeout", type=float, default=0.3)
    sub = parser.add_subparsers(dest="command", required=True)
    seq = sub.add_parser("seq")
    seq.add_argument("--count", type=int, default=9)
    poll = sub.add_parser("poll")
    poll.add_argument("--duration", type=float, default=12)
    poll.add_argument("--interval", type=float, default=0.05)
    watch = sub.add_parser("watch")
    watch.add_argument("--seconds", type=int, default=90)
    watch.add_argument("--stop-file")
    args = parser.parse_args()
    result = {"seq": cmd_seq, "poll": cmd_poll, "watch": cmd_watch}[args.command](args)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
