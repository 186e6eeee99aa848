#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: apiserver_encryption_status
short_description: Report the encryption configuration each kube-apiserver has loaded, and wait for the expected one
version_added: 0.1.0
description:
  - Reads C(/metrics) of each apiserver in I(apiservers) with the kubeconfig's client credentials and reports,
    per apiserver, the encryption-config controller's metrics
    (C(k8s.io/apiserver/pkg/server/options/encryptionconfig/metrics)). The reload counters exist only when the
    apiserver runs with C(--encryption-provider-config-automatic-reload=true).
  - "C(apiserver_encryption_config_controller_last_config_info{apiserver_id_hash,hash} 1) (kube-apiserver 1.34 and
    later): C(hash) is C(sha256:<hex>) of the raw bytes of the C(--encryption-provider-config) file the apiserver
    last loaded successfully. This is how the module knows that an apiserver has picked up a new file."
  - "C(apiserver_encryption_config_controller_automatic_reloads_total{status}) and
    C(..._automatic_reload_last_timestamp_seconds{status}) (C(status) = C(success) or C(failure)): how many
    automatic reloads succeeded or failed, and when the last one of each happened. These metric vectors have no
    sample until the first reload with that status, so a missing counter is reported as 0 and a missing timestamp
    as null. For apiservers older than 1.30 the deprecated
    C(..._automatic_reload_success_total) and C(..._automatic_reload_failures_total) counters are read instead."
  - "Matching: with I(expected_hash) or I(expected_config), an apiserver matches when its C(last_config_info)
    hash is that hash. An apiserver that does not expose C(last_config_info) (older than 1.34) matches only when
    I(reloaded_after) is set and its last successful reload is at or after that time and no reload failed after
    it. Without any expectation, the apiservers must agree with each other: they all match when each reports a
    hash and all hashes are equal."
  - With I(wait=true) the metrics are read again every I(wait_sleep) seconds until every apiserver matches
    or I(wait_timeout) expires. An apiserver that does not answer (e.g. while it restarts) does not match on
    that attempt.
  - Only hashes and counters are read and reported; no key material is involved.
  - The apiserver polls the file about once a minute, so allow a I(wait_timeout) of a few minutes after
    changing it.
  - Reading C(/metrics) needs C(get) on the non-resource URL C(/metrics) (the C(system:monitoring) group, or
    cluster-admin as in C(/etc/kubernetes/admin.conf)).
author:
  - baremetal.kubernetes maintainers (@baremetal-kubernetes)
options:
  apiservers:
    description:
      - The apiservers to read, each as C(https://host:port), C(host:port) or C(host) (port 6443). Read each
        apiserver directly, not through a load balancer, which would answer for a random one.
      - Default is the kubeconfig's server (or I(api_server)) only.
    type: list
    elements: str
  expected_hash:
    description:
      - The hash every apiserver must report, C(sha256:<64 hex digits>) (a bare hex digest is accepted), e.g.
        C("sha256:" + stat.checksum) of the file with C(checksum_algorithm=sha256).
    type: str
  expected_config:
    description:
      - The configuration file's content; its hash is C(sha256:) + the hex SHA-256 of its UTF-8 bytes.
      - The content holds the encryption keys, so the option is C(no_log) and never returned; prefer
        I(expected_hash), which needs no key material at all.
      - The bytes must be exactly those of the file; C(lookup('file')) strips the trailing newline unless
        given C(rstrip=false). Reading the file with C(slurp) and C(b64decode) is exact.
    type: str
  reloaded_after:
    description:
      - Epoch seconds. For apiservers without C(last_config_info) (older than 1.34), accept a successful
        automatic reload at or after this time, with no failed reload after it. Set it to the time just before
        the file was written.
    type: float
  # Described by the wait doc fragment; this module's defaults and former names:
  wait:
    default: false
  wait_timeout:
    default: 300
  wait_sleep:
    default: 5
    aliases: [poll_interval]
  fail_on_mismatch:
    description:
      - Fail when an apiserver does not match (after waiting). With C(false) the report is only returned
        (C(all_match=false)).
    type: bool
    default: true
extends_documentation_fragment:
  - baremetal.kubernetes.read_only
  - baremetal.kubernetes.kubeconfig
  - baremetal.kubernetes.wait
seealso:
  - module: baremetal.kubernetes.k8s_storage_rewrite
  - name: Encrypting confidential data at rest
    description: Automatic reload of the encryption configuration and the metric that shows it.
    link: https://kubernetes.io/docs/tasks/administer-cluster/encrypt-data/
"""

EXAMPLES = r"""
- name: Hash the file as it is on disk
  ansible.builtin.stat:
    path: /etc/kubernetes/encryption/config.yaml
    checksum_algorithm: sha256
  register: encryption_file

- name: Wait until every apiserver has loaded it
  baremetal.kubernetes.apiserver_encryption_status:
    apiservers: "{{ groups['kube_control_plane'] | map('extract', hostvars, 'ansible_host') | list }}"
    expected_hash: "sha256:{{ encryption_file.stat.checksum }}"
    wait: true
    wait_timeout: 300

- name: Do all apiservers run the same configuration? (report only)
  baremetal.kubernetes.apiserver_encryption_status:
    apiservers: ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
    fail_on_mismatch: false
  register: encryption_status
"""

RETURN = r"""
apiservers:
  description: One entry per apiserver, in the order of I(apiservers).
  returned: always
  type: list
  elements: dict
  contains:
    server:
      description: The apiserver URL.
      type: str
    hash:
      description: The C(last_config_info) hash, or null when the apiserver does not report one (or did not answer).
      type: str
    matches:
      description: Whether this apiserver matches (see the description).
      type: bool
    reloads_success:
      description: Successful automatic reloads (0 when the counter has no sample yet).
      type: int
    reloads_failure:
      description: Failed automatic reloads (0 when the counter has no sample yet).
      type: int
    last_success:
      description: Epoch seconds of the last successful automatic reload, or null.
      type: float
    last_failure:
      description: Epoch seconds of the last failed automatic reload, or null.
      type: float
    apiserver_id_hash:
      description: The apiserver identity hash label, or null.
      type: str
    reason:
      description:
        - "Why it matches or not, e.g. C(unreachable: ...), C(reports a different configuration than expected)."
      type: str
  sample:
    - server: https://10.0.0.11:6443
      hash: "sha256:3f1c..."
      matches: true
      reloads_success: 2
      reloads_failure: 0
      last_success: 1795859512.0
      last_failure: null
      apiserver_id_hash: "sha256:14f9..."
      reason: reports the expected hash
all_match:
  description: Whether every apiserver matches.
  returned: always
  type: bool
  sample: true
expected_hash:
  description: The hash compared with (from I(expected_hash) or I(expected_config)), or null.
  returned: always
  type: str
  sample: "sha256:3f1c..."
attempts:
  description: How many times the metrics were read.
  returned: always
  type: int
  sample: 3
duration:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 10.4
"""

import hashlib
import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.kubernetes.plugins.module_utils._errors import ModuleError, fail_from_error
from ansible_collections.baremetal.kubernetes.plugins.module_utils._k8s_client import (
    CLIENT_ERRORS,
    KUBECONFIG_ARGUMENT_SPEC,
    K8sApiError,
    K8sClient,
    normalize_server,
)
from ansible_collections.baremetal.kubernetes.plugins.module_utils._wait import (
    Deadline,
    check_wait_options,
    poll,
    wait_argument_spec,
)

PREFIX = "apiserver_encryption_config_controller_"
LAST_CONFIG = PREFIX + "last_config_info"
RELOADS = PREFIX + "automatic_reloads_total"
LAST_TIMESTAMP = PREFIX + "automatic_reload_last_timestamp_seconds"
# Deprecated in 1.30 (replaced by automatic_reloads_total{status}); read when the new family is absent.
OLD_SUCCESS = PREFIX + "automatic_reload_success_total"
OLD_FAILURE = PREFIX + "automatic_reload_failures_total"
METRICS_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"


class StatusError(ModuleError):
    """A wrong option value found while running; its message says which."""


class MetricsParseError(ValueError):
    pass


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def _parse_labels(text, pos, lineno):
    """Parse '{a="x",b="y"}' starting at text[pos] == '{'. Returns (labels, position after '}')."""
    labels = {}
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == "}":
            return labels, pos + 1
        match = _LABEL_NAME.match(text, pos)
        if not match:
            raise MetricsParseError("line %d: expected a label name at column %d" % (lineno, pos + 1))
        name = match.group(0)
        pos = match.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if text[pos:pos + 2] != '="':
            raise MetricsParseError("line %d: expected =\" after label %s" % (lineno, name))
        pos += 2
        value = []
        while True:
            if pos >= len(text):
                raise MetricsParseError("line %d: unterminated value of label %s" % (lineno, name))
            char = text[pos]
            if char == "\\":
                escaped = text[pos + 1:pos + 2]
                value.append(_ESCAPES.get(escaped, "\\" + escaped))
                pos += 2
                continue
            if char == '"':
                pos += 1
                break
            value.append(char)
            pos += 1
        labels[name] = "".join(value)
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        if pos < len(text) and text[pos] == "}":
            return labels, pos + 1
        raise MetricsParseError("line %d: expected , or } after label %s" % (lineno, name))


def parse_metrics(text, wanted=None):
    """Parse the Prometheus text exposition format (0.0.4; OpenMetrics samples too).

    Returns {family name: [(labels dict, float value)]}; ``# HELP``/``# TYPE``/comment lines are skipped;
    label order does not matter and escaped label values (backslash, quote, newline) are unescaped. With
    ``wanted`` (a set of names) other samples are skipped without being parsed in full.
    """
    families = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _NAME.match(line)
        if not match:
            raise MetricsParseError("line %d: no metric name in %r" % (lineno, line[:80]))
        name = match.group(0)
        if wanted is not None and name not in wanted:
            continue
        pos = match.end()
        while pos < len(line) and line[pos] in " \t":
            pos += 1
        labels = {}
        if pos < len(line) and line[pos] == "{":
            labels, pos = _parse_labels(line, pos, lineno)
        fields = line[pos:].split()
        if not fields:
            raise MetricsParseError("line %d: sample %s has no value" % (lineno, name))
        try:
            value = float(fields[0])  # Go writes +Inf, -Inf, NaN, 1.689101941e+09: float() reads them all
        except ValueError:
            raise MetricsParseError("line %d: sample %s has a bad value %r" % (lineno, name, fields[0])) from None
        families.setdefault(name, []).append((labels, value))
    return families


def normalize_hash(value):
    text = str(value).strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:"):]
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise StatusError("expected_hash must be 'sha256:' followed by 64 hex digits, got %r" % value)
    return "sha256:" + text


def config_hash(content):
    return "sha256:" + hashlib.sha256(content.encode("utf-8")).hexdigest()


def summarize(families):
    """The per-apiserver numbers from parsed metrics."""
    hashes = sorted({labels.get("hash") for labels, value in families.get(LAST_CONFIG, [])
                     if value == 1 and labels.get("hash")})
    ids = sorted({labels.get("apiserver_id_hash") for name in (LAST_CONFIG, RELOADS, LAST_TIMESTAMP)
                  for labels, _value in families.get(name, []) if labels.get("apiserver_id_hash")})
    counts = {"success": 0, "failure": 0}
    if RELOADS in families:
        for labels, value in families[RELOADS]:
            if labels.get("status") in counts:
                counts[labels["status"]] += int(value)
    else:
        counts["success"] = int(sum(value for _labels, value in families.get(OLD_SUCCESS, [])))
        counts["failure"] = int(sum(value for _labels, value in families.get(OLD_FAILURE, [])))
    stamps = {"success": None, "failure": None}
    for labels, value in families.get(LAST_TIMESTAMP, []):
        status = labels.get("status")
        if status in stamps and (stamps[status] is None or value > stamps[status]):
            stamps[status] = value
    return dict(hashes=hashes, has_info=LAST_CONFIG in families, apiserver_id_hash=ids[0] if ids else None,
                reloads_success=counts["success"], reloads_failure=counts["failure"],
                last_success=stamps["success"], last_failure=stamps["failure"])


def fmt_time(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class StatusReader:
    # Replaced in unit tests.
    sleep = staticmethod(time.sleep)
    clock = staticmethod(time.monotonic)

    def __init__(self, module, client, servers, expected):
        self.module = module
        self.client = client
        self.params = module.params
        self.servers = servers
        self.expected = expected
        self.deadline = Deadline(self.params["wait_timeout"], self.clock)
        self.clients = {server: client.with_server(server) for server in servers}

    def read(self, server, deadline=None):
        entry = dict(server=server, hash=None, matches=False, reloads_success=0, reloads_failure=0,
                     last_success=None, last_failure=None, apiserver_id_hash=None, reason="")
        client = self.clients[server]
        if deadline is not None:  # in the client's clock
            deadline = client.clock() + max(0.0, deadline - self.clock())
        try:
            _status, _headers, body = client.raw("GET", "/metrics", accept=METRICS_ACCEPT,
                                                 retries=0 if self.params["wait"] else 1, deadline=deadline)
        except K8sApiError as exc:
            if exc.code in (401, 403):
                entry["reason"] = ("cannot read /metrics (HTTP %s): the kubeconfig's user needs get on the "
                                   "non-resource URL /metrics (system:monitoring)" % exc.code)
            elif exc.code is None:
                entry["reason"] = "unreachable: %s" % exc.message
            else:
                entry["reason"] = "GET /metrics failed: HTTP %s %s" % (exc.code, exc.message)
            entry["_error"] = True
            return entry, None
        try:
            families = parse_metrics(body.decode("utf-8", "replace"),
                                     wanted={LAST_CONFIG, RELOADS, LAST_TIMESTAMP, OLD_SUCCESS, OLD_FAILURE})
        except MetricsParseError as exc:
            entry["reason"] = "cannot parse /metrics: %s" % exc
            entry["_error"] = True
            return entry, None
        info = summarize(families)
        entry.update({k: v for k, v in info.items() if k not in ("hashes", "has_info")})
        entry["hash"] = info["hashes"][0] if len(info["hashes"]) == 1 else None
        if len(info["hashes"]) > 1:
            entry["reason"] = "reports several last_config_info hashes: %s" % ", ".join(info["hashes"])
            entry["_error"] = True
        return entry, info

    def judge(self, entries):
        """Set matches/reason on each entry; return all_match."""
        expected = self.expected
        reloaded_after = self.params.get("reloaded_after")
        if expected is None and reloaded_after is None:
            hashes = {e["hash"] for e in entries}
            agree = len(hashes) == 1 and None not in hashes
            for entry in entries:
                if entry.pop("_error", False):
                    continue
                entry["matches"] = agree
                if agree:
                    entry["reason"] = "all apiservers report %s" % entry["hash"]
                elif entry["hash"] is None:
                    entry["reason"] = ("reports no last_config_info hash (no --encryption-provider-config, or "
                                       "kube-apiserver older than 1.34)")
                else:
                    entry["reason"] = "the apiservers report different hashes"
            return all(e["matches"] for e in entries)
        for entry in entries:
            if entry.pop("_error", False):
                continue
            if entry["hash"] is not None and expected is not None:
                entry["matches"] = entry["hash"] == expected
                entry["reason"] = ("reports the expected hash" if entry["matches"]
                                   else "reports a different configuration than expected")
            elif reloaded_after is not None:
                success, failure = entry["last_success"], entry["last_failure"]
                if success is None or success < reloaded_after:
                    entry["reason"] = "no successful automatic reload since %s (last: %s)" % (
                        fmt_time(reloaded_after), fmt_time(success) if success is not None else "never")
                elif failure is not None and failure > success:
                    entry["reason"] = "a reload failed at %s, after the last success at %s" % (
                        fmt_time(failure), fmt_time(success))
                else:
                    entry["matches"] = True
                    entry["reason"] = "reloaded successfully at %s (>= reloaded_after)" % fmt_time(success)
            else:
                entry["reason"] = ("reports no last_config_info hash (kube-apiserver older than 1.34, or no "
                                   "--encryption-provider-config); set reloaded_after to judge it by its reload "
                                   "timestamp")
            if not entry["matches"] and entry["last_failure"] is not None and (
                    entry["last_success"] is None or entry["last_failure"] > entry["last_success"]):
                entry["reason"] += ("; its last automatic reload FAILED at %s (%d failure(s)): the file on that "
                                    "node does not load, the apiserver keeps its previous configuration"
                                    % (fmt_time(entry["last_failure"]), entry["reloads_failure"]))
        return all(e["matches"] for e in entries)

    def attempt(self):
        # Without wait, a request is not cut short by wait_timeout.
        deadline = self.deadline.at if self.params["wait"] else None
        entries = [self.read(server, deadline)[0] for server in self.servers]
        return entries, self.judge(entries)

    def run(self):
        params = self.params
        polled = poll(self.attempt, lambda outcome: outcome[1], params["wait"], self.deadline, params["wait_sleep"],
                      self.sleep)
        entries, all_match = polled.result
        return dict(changed=False, apiservers=entries, all_match=all_match, expected_hash=self.expected,
                    attempts=polled.attempts, duration=round(polled.waited, 3))

    def close(self):
        for client in self.clients.values():
            client.close()


def mismatch_message(result, params):
    bad = [e for e in result["apiservers"] if not e["matches"]]
    waited = ""
    if params["wait"]:
        waited = " after waiting %d s (%d attempts)" % (params["wait_timeout"], result["attempts"])
    what = ("the expected encryption configuration %s" % result["expected_hash"] if result["expected_hash"]
            else "a configuration reloaded after %s" % fmt_time(params["reloaded_after"])
            if params.get("reloaded_after") is not None else "the same encryption configuration")
    lines = ["%s: hash %s: %s" % (e["server"], e["hash"] or "(none)", e["reason"]) for e in bad]
    return "%d of %d apiserver(s) do not run %s%s: %s" % (len(bad), len(result["apiservers"]), what, waited,
                                                          " | ".join(lines))


def main():
    argument_spec = dict(
        apiservers=dict(type="list", elements="str"),
        expected_hash=dict(type="str"),
        expected_config=dict(type="str", no_log=True),  # the file holds the encryption keys
        reloaded_after=dict(type="float"),
        fail_on_mismatch=dict(type="bool", default=True),
    )
    argument_spec.update(KUBECONFIG_ARGUMENT_SPEC)
    argument_spec.update(wait_argument_spec(timeout=300, sleep=5, old_names=dict(wait_sleep="poll_interval")))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[("expected_hash", "expected_config")])
    params = module.params
    check_wait_options(module, min_timeout=1)

    client = None
    reader = None
    try:
        expected = None
        if params.get("expected_hash"):
            expected = normalize_hash(params["expected_hash"])
        elif params.get("expected_config") is not None:
            expected = config_hash(params["expected_config"])
        client = K8sClient.from_module(module)
        servers = []
        for server in params.get("apiservers") or [client.server]:
            url = normalize_server(server)
            if url not in servers:
                servers.append(url)
        reader = StatusReader(module, client, servers, expected)
        result = reader.run()
    except Exception as exc:  # every failure ends here, in the one fail_json of the module
        fail_from_error(module, exc, "apiserver_encryption_status", expected=CLIENT_ERRORS)
    finally:
        if reader:
            reader.close()
        if client:
            client.close()
    if not result["all_match"] and params["fail_on_mismatch"]:
        module.fail_json(msg=mismatch_message(result, params), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
