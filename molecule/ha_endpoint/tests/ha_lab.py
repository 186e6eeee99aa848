"""Drive and observe the ha_endpoint scenario's nodes from the host (verify and tests/bench).

Everything here talks only to the scenario's own containers: `podman exec/pause`, and `nsenter`
into a node's network namespace to read its addresses (which also works while the node is
frozen). Every wait is bounded in time; every request loop runs in the client container
(files/vip_probe.py) and is bounded there too.
"""

import json
import statistics
import subprocess
import threading
import time

from node_shell import haproxy_servers, haproxy_states, node_exec, sh, wait_for

NODES = {"ha-cp1": "10.123.40.11", "ha-cp2": "10.123.40.12", "ha-cp3": "10.123.40.13"}
CLIENT = "ha-client"
VIP = "10.123.40.100"
PORT = 8443
# The scenario's HAProxy backend checks (molecule.yml) and keepalived's defaults.
CHECK_INTERVAL_S = 1.0
CHECK_FALL = 2
CHECK_RISE = 2
ADVERT_INT_S = 1.0
NOPREEMPT = True


# sh, node_exec and wait_for are shared with the other scenarios (molecule/node_shell.py).


# -- where the VIP is -----------------------------------------------------------------------
_PIDS = {}


def _pid(node):
    if node not in _PIDS:
        _PIDS[node] = sh("podman", "inspect", "-f", "{{.State.Pid}}", node).stdout.strip()
    return _PIDS[node]


def addresses(node):
    """Every IPv4 address on the node's interfaces, read from its network namespace."""
    out = sh("nsenter", "-t", _pid(node), "-n", "ip", "-o", "-4", "address", "show", timeout=10).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3]


def vip_holders():
    return [node for node in NODES if VIP in addresses(node)]


def single_holder(timeout=15):
    """Wait until exactly one node holds the VIP; return it."""
    def alone():
        holders = vip_holders()
        return holders if len(holders) == 1 else None

    holders, waited = wait_for(alone, timeout)
    assert holders, "no single VIP holder after %.0f s: %s" % (waited, vip_holders())
    return holders[0]


class HolderSampler(threading.Thread):
    """Samples every node's addresses every 0.1 s (bounded) while a failure is under way."""

    def __init__(self, seconds):
        super().__init__(daemon=True)
        self.seconds = seconds
        self.samples = []

    def run(self):
        deadline = time.time() + self.seconds
        while time.time() < deadline:
            self.samples.append((time.time(), vip_holders()))
            time.sleep(0.1)


# -- the client --------------------------------------------------------------------------------
PROBE = ("podman", "exec", CLIENT, "python3", "/usr/local/bin/vip-probe", "--host", VIP, "--port", str(PORT))


def probe(*args, timeout=120):
    out = sh(*PROBE, *args, timeout=timeout)
    return json.loads(out.stdout)


def start_probe(*args):
    return subprocess.Popen([*PROBE, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_probe(process, timeout):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, "vip-probe failed: %s" % err
    return json.loads(out)


# -- HAProxy's view ----------------------------------------------------------------------------
def backend_states(node):
    """server name -> status (UP, DOWN, ...) of the kube_apiservers backend, from the admin socket."""
    return haproxy_states(node)


def backend_sessions(node):
    """server name -> current sessions (scur) of the kube_apiservers backend."""
    return {name: sessions for name, (_state, sessions) in haproxy_servers(node).items()}


def haproxy_pids(node):
    """(master pid, sorted worker pids)."""
    master = node_exec(node, "systemctl show -p MainPID --value haproxy").stdout.strip()
    workers = node_exec(node, "pgrep -P %s -x haproxy || true" % master).stdout.split()
    return master, sorted(workers)


# -- the healthy state every scenario step starts from ----------------------------------------
def healthy(timeout=30):
    """Unpause every node, make sure every service runs, every backend is UP and one node holds the VIP."""
    for node in NODES:
        if sh("podman", "inspect", "-f", "{{.State.Status}}", node).stdout.strip() == "paused":
            sh("podman", "unpause", node)
        node_exec(node, "rm -f /run/fake-apiserver/not-ready; systemctl start fake-apiserver haproxy keepalived")

    def all_up():
        return all(set(backend_states(node).values()) == {"UP"} and len(backend_states(node)) == len(NODES)
                   for node in NODES)

    ok, waited = wait_for(all_up, timeout, interval=0.5)
    assert ok, "backends not all UP after %.0f s: %s" % (waited, {n: backend_states(n) for n in NODES})
    return single_holder(timeout)


# -- VIP failover ------------------------------------------------------------------------------
def analyse(results, t0):
    """From a poll run: seconds from t0 until requests succeed again, and until the last failure ended."""
    after = [r for r in results if r["end"] >= t0]
    failures = [r for r in after if not r["ok"]]
    if not failures:
        return {"recovery_s": 0.0, "stable_s": 0.0, "failed_requests": 0, "requests": len(after)}
    first_failure = failures[0]["start"]
    recovered = next((r for r in after if r["ok"] and r["start"] >= first_failure), None)
    return {
        "recovery_s": (recovered["end"] - t0) if recovered else None,
        "stable_s": failures[-1]["end"] - t0,
        "failed_requests": len(failures),
        "requests": len(after),
        "ok_at_end": all(r["ok"] for r in after[-10:]),
    }


def failover(kind, window=14.0):
    """Fail the VIP holder hard ('pause': freeze the whole node; 'sigkill': SIGKILL keepalived) and measure.

    Returns the analysis plus the old and new holders and the address samples taken meanwhile.
    The caller restores the node (restore_after_failover).
    """
    assert kind in ("pause", "sigkill")
    holder = single_holder()
    poller = start_probe("--timeout", "0.3", "poll", "--duration", str(window), "--interval", "0.05")
    sampler = HolderSampler(window - 1.0)
    time.sleep(1.5)
    sampler.start()
    t0 = time.time()
    if kind == "pause":
        sh("podman", "pause", holder)
    else:
        node_exec(holder, "systemctl kill --signal=SIGKILL keepalived")
    result = analyse(finish_probe(poller, timeout=window + 30)["results"], t0)
    sampler.join(timeout=window + 5)
    others = [n for n in vip_holders() if n != holder]
    result.update({"kind": kind, "old_holder": holder, "new_holder": others[0] if len(others) == 1 else others,
                   "samples": sampler.samples, "t0": t0})
    return result


def restore_after_failover(result, window=6.0):
    """Bring the failed node back and sample every node's addresses every 0.1 s from that instant.

    Returns (holder at the end, seconds after the restore until exactly one node held the VIP for
    good, the samples as (seconds since restore, holders)).
    """
    old = result["old_holder"]
    if result["kind"] == "pause":
        sh("podman", "unpause", old)
    else:
        ok, waited = wait_for(lambda: node_exec(old, "systemctl is-active keepalived", check=False).stdout.strip()
                              == "active", 15, interval=0.2)
        assert ok, "%s: keepalived did not come back within %.0f s after SIGKILL" % (old, waited)
    restored = time.time()
    samples = []
    while time.time() < restored + window:
        samples.append((time.time() - restored, vip_holders()))
        time.sleep(0.1)
    unsettled = [at for at, holders in samples if len(holders) != 1]
    settled_after = unsettled[-1] if unsettled else 0.0
    return samples[-1][1], settled_after, samples


def summary(values):
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}
