"""Watch a cluster while a playbook runs, from a scenario's verify (molecule/cluster).

ca_context and probe make one HTTPS request the way a client of the API does; changed_by_host reads a
run's output.

Poller sends one request every `interval` seconds in a background thread, for at most `seconds`, and keeps
every result; MarkedRun runs ansible-playbook in the background (its own session, so a test can kill it as
a CI job is killed) and marks every task it starts on the pollers, so that a failed request is reported
with what the run was doing then. Every loop and wait is bounded.
"""

import base64
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import yaml


def ca_context(kubeconfig):
    """A TLS client context that trusts the cluster CA of an admin kubeconfig file."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    return ssl.create_default_context(cadata=ca)


def probe(address, port, context, timeout=0.5, path="/readyz"):
    """One anonymous HTTPS GET on a new connection (/readyz by default, like HAProxy's check):
    (True, status line) on 200, else (False, status line or error)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw:
            raw.settimeout(timeout)
            with context.wrap_socket(raw, server_hostname=address) as tls:
                tls.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                            % (path.encode(), address.encode()))
                status = tls.recv(64).split(b"\r\n")[0].decode(errors="replace")
                return status.startswith("HTTP/1.1 200"), status or "connection closed without an answer"
    except (OSError, ssl.SSLError) as error:
        return False, "%s: %s" % (type(error).__name__, error)


def changed_by_host(output):
    """{host: [task and handler names that reported changed]} from the default callback's output."""
    result, task = {}, None
    for line in output.splitlines():
        header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*)\] \**$", line)
        if header:
            task = header.group(1)
            continue
        done = re.match(r"^changed: \[([^\]]+?)(?: -> [^\]]+)?\]", line)
        if done and task:
            result.setdefault(done.group(1), []).append(task)
    return result


class Poller(threading.Thread):
    """results: (start, ok, detail, seconds taken) of every `request()` (which returns (ok, detail));
    phases: (start, name), marked by the test or a MarkedRun."""

    def __init__(self, request, seconds, interval=0.2):
        super().__init__(daemon=True)
        self.request, self.seconds, self.interval = request, seconds, interval
        self.results, self.stopped = [], threading.Event()
        self.phases = [(time.time(), "start")]

    def mark(self, phase):
        self.phases.append((time.time(), phase))

    def phase_at(self, moment):
        return [name for start, name in self.phases if start <= moment][-1]

    def describe(self, result):
        start, _ok, detail, took = result
        return "+%.1f s (%s): %s after %.2f s" % (start - self.phases[0][0], self.phase_at(start), detail, took)

    @property
    def failed(self):
        return [result for result in self.results if not result[1]]

    def slowest(self):
        return self.describe(max(self.results, key=lambda result: result[3])) if self.results else "none"

    def stop(self):
        self.stopped.set()
        self.join(timeout=30)

    def run(self):
        deadline = time.time() + self.seconds
        while time.time() < deadline and not self.stopped.is_set():
            start = time.time()
            ok, detail = self.request()
            self.results.append((start, ok, detail, time.time() - start))
            time.sleep(max(0.0, self.interval - (time.time() - start)))


class MarkedRun:
    """`argv` (an ansible-playbook command) in the background with `env`; every `TASK [` line it prints is
    marked on each of `pollers`."""

    def __init__(self, pollers, label, argv, env):
        self.pollers, self.label, self.out, self.err = list(pollers), label, [], []
        self.mark(label + " started")
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=env, start_new_session=True)
        self.readers = [threading.Thread(target=self.read_stdout, daemon=True),
                        threading.Thread(target=lambda: self.err.extend(self.process.stderr), daemon=True)]
        for reader in self.readers:
            reader.start()

    def mark(self, phase):
        for poller in self.pollers:
            poller.mark(phase)

    def read_stdout(self):
        for line in self.process.stdout:
            self.out.append(line)
            if line.startswith("TASK ["):
                self.mark("%s: %s" % (self.label, line.strip(" *\n")))

    def finish(self, timeout):
        """Wait at most `timeout` seconds, then kill the run's whole session."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=60)
        for reader in self.readers:
            reader.join(timeout=10)
        self.mark(self.label + " ended")
        return self

    @property
    def returncode(self):
        return self.process.returncode

    @property
    def stdout(self):
        return "".join(self.out)

    @property
    def stderr(self):
        return "".join(self.err)
