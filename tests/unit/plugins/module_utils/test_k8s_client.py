# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/_k8s_client.py: kubeconfig, Status errors, retries, transport."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from ansible_collections.baremetal.kubernetes.plugins.module_utils import _k8s_client as k8s_client
from ansible_collections.baremetal.kubernetes.plugins.module_utils._k8s_client import (
    K8sApiError,
    K8sClient,
    KubeConfigError,
    backoff_delay,
    load_kubeconfig,
    normalize_server,
    parse_kubeconfig_text,
    parse_retry_after,
    parse_simple_yaml,
    parse_status,
    parse_time,
    selector_matches,
)

CA, CERT, KEY = b"-----CA-----\n", b"-----CERT-----\n", b"-----KEY-----\n"


def b64(data):
    return base64.b64encode(data).decode()


# As kubeadm writes admin.conf (client-go's YAML marshaller).
KUBEADM_CONF = """\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: %s
    server: https://10.0.0.100:8443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: %s
    client-key-data: %s
""" % (b64(CA), b64(CERT), b64(KEY))

# As kubectl config set-* writes it, with paths, quoting, comments and a second context.
KUBECTL_CONF = """\
---
# written by kubectl
apiVersion: v1
kind: Config
clusters:
  - name: "lab"
    cluster:
      certificate-authority: pki/ca.crt
      server: 'https://cp1.lab:6443'
  - name: other
    cluster:
      server: https://other:6443
      insecure-skip-tls-verify: true
users:
  - name: admin
    user:
      client-certificate: pki/admin.crt   # relative to this file
      client-key: /abs/admin.key
  - name: robot
    user:
      token: "s3cr3t-token"
contexts:
  - name: lab
    context:
      cluster: lab
      user: admin
  - name: robot@other
    context: {cluster: other, user: robot}
current-context: lab
"""

FLAT_CONTEXTS = KUBECTL_CONF.replace("    context: {cluster: other, user: robot}",
                                     "    context:\n      cluster: other\n      user: robot")


@pytest.mark.parametrize("text", [KUBEADM_CONF, FLAT_CONTEXTS], ids=["kubeadm", "kubectl-style"])
def test_simple_yaml_parser_agrees_with_pyyaml(text):
    assert parse_simple_yaml(text) == yaml.safe_load(text)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a: 1\nb: true\nc: null\nd: ~\ne: 'it''s'\nf: \"x\\ty\"\ng: plain text # comment\n",
         {"a": 1, "b": True, "c": None, "d": None, "e": "it's", "f": "x\ty", "g": "plain text"}),
        ("list:\n- a\n- b\n", {"list": ["a", "b"]}),
        ("list:\n  - x: 1\n    y: 2\n  - x: 3\n", {"list": [{"x": 1, "y": 2}, {"x": 3}]}),
        ("m:\n  n:\n    o: deep\n", {"m": {"n": {"o": "deep"}}}),
        ("empty:\nnext: 1\n", {"empty": None, "next": 1}),
        ("url: https://h:6443/x\n", {"url": "https://h:6443/x"}),
    ],
)
def test_simple_yaml_parser_cases(text, expected):
    assert parse_simple_yaml(text) == expected == yaml.safe_load(text)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("a: &anchor 1\n", "not supported without PyYAML"),
        ("a: {x: 1}\n", "not supported without PyYAML"),
        ("a: |\n  text\n", "not supported without PyYAML"),
        ("a: 1\n   b: 2\n", "unexpected indentation"),
        ("a: \"open\n", "unterminated"),
        ("just a scalar line\n", "expected 'key: value'"),
    ],
)
def test_simple_yaml_parser_refuses_what_it_cannot_parse(text, needle):
    with pytest.raises(KubeConfigError, match=needle):
        parse_simple_yaml(text)


def test_kubeconfig_without_pyyaml(monkeypatch):
    monkeypatch.setattr(k8s_client, "HAS_YAML", False)
    assert parse_kubeconfig_text(KUBEADM_CONF) == yaml.safe_load(KUBEADM_CONF)
    assert parse_kubeconfig_text(json.dumps({"kind": "Config"})) == {"kind": "Config"}


def test_embedded_credentials_go_to_0600_temp_files_removed_on_close(tmp_path):
    path = tmp_path / "admin.conf"
    path.write_text(KUBEADM_CONF)
    client = K8sClient.from_kubeconfig(str(path))
    files = [client.ca_path, client.client_cert, client.client_key]
    assert client.server == "https://10.0.0.100:8443" and client.token is None
    for file_path, content in zip(files, (CA, CERT, KEY)):
        with open(file_path, "rb") as handle:
            assert handle.read() == content
        assert stat.S_IMODE(os.stat(file_path).st_mode) == 0o600
    client.close()
    assert not any(os.path.exists(p) for p in files)


def test_file_paths_are_relative_to_the_kubeconfig(tmp_path):
    path = tmp_path / "conf"
    path.write_text(KUBECTL_CONF)
    config = load_kubeconfig(str(path))
    assert config["server"] == "https://cp1.lab:6443"
    assert config["ca_file"] == str(tmp_path / "pki/ca.crt")
    assert config["cert_file"] == str(tmp_path / "pki/admin.crt")
    assert config["key_file"] == "/abs/admin.key"
    assert config["ca_data"] is None and config["token"] is None and config["insecure"] is False
    client = K8sClient(**config)
    assert client._temp_files == [] and client.ca_path == config["ca_file"]


def test_token_and_named_context(tmp_path):
    path = tmp_path / "conf"
    path.write_text(KUBECTL_CONF)
    config = load_kubeconfig(str(path), context="robot@other")
    assert config["token"] == "s3cr3t-token" and config["insecure"] is True
    client = K8sClient(**config)
    assert client.validate_certs is False
    assert client._headers()["Authorization"] == "Bearer s3cr3t-token"


def test_token_file(tmp_path):
    (tmp_path / "token").write_text("from-file\n")
    text = KUBECTL_CONF.replace('token: "s3cr3t-token"', "tokenFile: token")
    config = load_kubeconfig(str(tmp_path / "conf"), context="robot@other", text=text)
    assert config["token"] == "from-file"


def test_server_override(tmp_path):
    path = tmp_path / "admin.conf"
    path.write_text(KUBEADM_CONF)
    with K8sClient.from_kubeconfig(str(path), server="10.0.0.12") as client:
        assert client.server == "https://10.0.0.12:6443"
        other = client.with_server("10.0.0.13:6443")
        assert other.server == "https://10.0.0.13:6443" and other.client_key == client.client_key
        other.close()
        assert os.path.exists(client.client_key)  # the copy does not own the temp files


@pytest.mark.parametrize(
    "text, context, needle",
    [
        ("kind: Config\n", None, "no current-context"),
        (KUBECTL_CONF, "missing", "has no context 'missing' (contexts: lab, robot@other)"),
        (KUBECTL_CONF.replace("server: 'https://cp1.lab:6443'", "x: 1"), None, "has no server"),
        ("- a\n", None, "top level is not a mapping"),
        (KUBEADM_CONF.replace("client-certificate-data: %s\n    client-key-data: %s\n" % (b64(CERT), b64(KEY)),
                              "exec:\n      command: aws\n"), None, "exec/auth-provider plugin"),
    ],
)
def test_kubeconfig_errors(tmp_path, text, context, needle):
    with pytest.raises(KubeConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_kubeconfig(str(tmp_path / "conf"), context=context, text=text)


def test_unreadable_kubeconfig(tmp_path):
    with pytest.raises(KubeConfigError, match="cannot read kubeconfig"):
        load_kubeconfig(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    "server, expected",
    [
        ("10.0.0.1", "https://10.0.0.1:6443"),
        ("10.0.0.1:8443", "https://10.0.0.1:8443"),
        ("https://vip:8443/", "https://vip:8443"),
        ("fd00::1", "https://[fd00::1]:6443"),
        ("[fd00::1]:8443", "https://[fd00::1]:8443"),
        ("[fd00::1]", "https://[fd00::1]:6443"),
    ],
)
def test_normalize_server(server, expected):
    assert normalize_server(server) == expected


# ---------------------------------------------------------------------------------------------
# Status parsing, backoff, retries


@pytest.mark.parametrize(
    "code, body, reason, message",
    [
        (404, json.dumps({"kind": "Status", "reason": "NotFound", "message": 'pods "x" not found'}), "NotFound",
         'pods "x" not found'),
        (429, json.dumps({"kind": "Status", "reason": "TooManyRequests", "message": "Cannot evict pod",
                          "details": {"causes": [{"reason": "DisruptionBudget"}]}}), "TooManyRequests",
         "Cannot evict pod"),
        (503, "<html><body>\n503 Service Unavailable\n</body></html>", "", "<html><body> 503 Service Unavailable "
                                                                           "</body></html>"),
        (500, "", "", "HTTP 500"),
        (500, json.dumps({"kind": "Pod"}), "", '{"kind": "Pod"}'),
    ],
)
def test_parse_status(code, body, reason, message):
    got_reason, got_message, _status = parse_status(code, body.encode())
    assert (got_reason, got_message) == (reason, message)


@pytest.mark.parametrize(
    "attempt, retry_after, expected",
    [(1, None, 0.5), (2, None, 1.0), (4, None, 4.0), (5, None, 8.0), (30, None, 8.0),
     (1, 3.0, 3.0), (3, 1.0, 2.0), (1, 3600.0, 8.0)],
)
def test_backoff_delay(attempt, retry_after, expected):
    assert backoff_delay(attempt, base=0.5, cap=8.0, retry_after=retry_after) == expected


@pytest.mark.parametrize("value, expected", [("5", 5.0), (" 2 ", 2.0), ("-1", 0.0), ("Wed, 21 Oct 2015", None),
                                             (None, None)])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value) == expected


class Scripted(K8sClient):
    """A client whose transport answers from a script and whose clock/sleep are fake."""

    def __init__(self, script, **kwargs):
        self.now = 0.0
        self.slept = []
        super().__init__("https://api:6443", token="t", sleep=self._sleep, clock=lambda: self.now, **kwargs)
        self.script = list(script)
        self.sent = []

    def _sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds

    def _transport(self, method, url, data, headers, timeout):
        self.sent.append((method, url, data, headers, timeout))
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        code, headers, body = item
        return code, headers, body if isinstance(body, bytes) else json.dumps(body).encode()


def st(code, reason="x", headers=None, **details):
    body = {"kind": "Status", "code": code, "reason": reason, "message": "%s happened" % reason}
    if details:
        body["details"] = details
    return code, headers or {}, body


OK = (200, {}, {"kind": "Node", "metadata": {"name": "w1"}})


@pytest.mark.parametrize(
    "script, retries, expected_sleeps, outcome",
    [
        pytest.param([OK], 4, [], 200, id="first-try"),
        pytest.param([st(503), st(502), OK], 4, [0.5, 1.0], 200, id="5xx-retried-with-growing-backoff"),
        pytest.param([st(429, headers={"Retry-After": "3"}), OK], 4, [3.0], 200, id="retry-after-honoured"),
        pytest.param([st(429, retryAfterSeconds=2), OK], 4, [2.0], 200, id="status-retry-after-seconds"),
        pytest.param([st(500)] * 3, 2, [0.5, 1.0], 500, id="bounded-retries-then-raise"),
        pytest.param([st(404, "NotFound")], 4, [], 404, id="404-not-retried"),
        pytest.param([st(403, "Forbidden")], 4, [], 403, id="403-not-retried"),
        pytest.param([K8sApiError("cannot reach https://api:6443: timed out"), OK], 4, [0.5], 200,
                     id="transport-error-retried"),
    ],
)
def test_retries(script, retries, expected_sleeps, outcome):
    client = Scripted(script, retries=retries)
    if outcome == 200:
        assert client.get("/api/v1/nodes/w1")["metadata"]["name"] == "w1"
    else:
        with pytest.raises(K8sApiError) as info:
            client.get("/api/v1/nodes/w1")
        assert info.value.code == outcome and info.value.path == "/api/v1/nodes/w1"
    assert client.slept == expected_sleeps
    assert not client.script


def test_deadline_stops_retrying_early():
    client = Scripted([st(503)] * 10, retries=10)
    with pytest.raises(K8sApiError) as info:
        client.get("/x", deadline=2.0)
    assert info.value.code == 503 and sum(client.slept) < 2.0 and len(client.sent) == 3


def test_retry_on_can_exclude_429_for_callers_that_handle_it():
    client = Scripted([st(429, "TooManyRequests")])
    with pytest.raises(K8sApiError) as info:
        client.raw("POST", "/api/v1/namespaces/d/pods/p/eviction", body={}, retry_on=(500, 502, 503, 504))
    assert info.value.code == 429 and client.slept == []


def test_error_carries_status_causes_and_str():
    client = Scripted([st(429, "TooManyRequests", causes=[{"reason": "DisruptionBudget", "message": "m"}])],
                      retries=0)
    with pytest.raises(K8sApiError) as info:
        client.get("/p")
    assert info.value.causes == [{"reason": "DisruptionBudget", "message": "m"}]
    assert str(info.value) == "GET /p: HTTP 429 TooManyRequests: TooManyRequests happened"


def test_request_timeout_shrinks_to_the_deadline():
    client = Scripted([OK], timeout=10)
    client.get("/p", deadline=3.0)
    assert client.sent[0][4] == 3.0


def test_requests_encode_query_body_and_headers():
    client = Scripted([OK, OK])
    client.patch("/api/v1/nodes/w1", {"spec": {"unschedulable": True}})
    method, _url, data, headers, _timeout = client.sent[0]
    assert method == "PATCH" and headers["Content-Type"] == "application/merge-patch+json"
    assert json.loads(data) == {"spec": {"unschedulable": True}} and headers["Authorization"] == "Bearer t"
    client.get("/api/v1/pods", query={"fieldSelector": "spec.nodeName=w1", "labelSelector": None})
    assert client.sent[1][1] == "https://api:6443/api/v1/pods?fieldSelector=spec.nodeName%3Dw1"


def test_list_all_follows_continue_tokens():
    client = Scripted([(200, {}, {"items": [1, 2], "metadata": {"continue": "abc"}}),
                       (200, {}, {"items": [3], "metadata": {}})])
    assert client.list_all("/api/v1/pods", limit=2) == [1, 2, 3]
    assert "continue=abc" in client.sent[1][1] and "limit=2" in client.sent[1][1]


def test_non_json_answer_is_an_error():
    client = Scripted([(200, {}, b"<html>proxy</html>")])
    with pytest.raises(K8sApiError, match="not JSON"):
        client.get("/p")


# ---------------------------------------------------------------------------------------------
# the real transport, against a loopback HTTP server


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/readyz"):
            body = b"[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n"
            self.send_response(500)
            self.send_header("Content-Type", "text/plain")
        elif self.path == "/api/v1/nodes/w1":
            body = json.dumps({"kind": "Node", "auth": self.headers.get("Authorization")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            body = json.dumps({"kind": "Status", "reason": "NotFound", "message": "nope"}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def loopback():
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_real_transport(loopback):
    client = K8sClient(loopback, token="tok", retries=0, timeout=5)
    assert client.get("/api/v1/nodes/w1") == {"kind": "Node", "auth": "Bearer tok"}
    with pytest.raises(K8sApiError) as info:
        client.get("/api/v1/nodes/nope")
    assert (info.value.code, info.value.reason, info.value.message) == (404, "NotFound", "nope")
    code, text = client.probe("/readyz?verbose")
    assert code == 500 and "[-]etcd failed: reason withheld" in text


def test_real_transport_connection_refused():
    client = K8sClient("http://127.0.0.1:1", retries=0, timeout=2)
    with pytest.raises(K8sApiError) as info:
        client.get("/x")
    assert info.value.code is None and "cannot reach http://127.0.0.1:1" in info.value.message


# ---------------------------------------------------------------------------------------------
# helpers


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-11-28T02:55:58Z", 1795834558),
        ("2026-11-28T02:55:58.250000Z", 1795834558.25),
        ("2026-11-28T03:55:58+01:00", 1795834558),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_parse_time(value, expected):
    assert parse_time(value) == expected


@pytest.mark.parametrize(
    "selector, labels, expected",
    [
        ({}, {"a": "1"}, True),
        (None, {"a": "1"}, False),
        ({"matchLabels": {"app": "db"}}, {"app": "db", "x": "y"}, True),
        ({"matchLabels": {"app": "db"}}, {"app": "web"}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}, {"tier": "b"}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {"tier": "a"}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"tier": ""}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": ""}, False),
    ],
)
def test_selector_matches(selector, labels, expected):
    assert selector_matches(selector, labels) is expected
