# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for apiserver_encryption_status: the metrics text parser and the module against fake /metrics."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlsplit

import pytest

from ansible_collections.baremetal.kubernetes.plugins.module_utils import _k8s_client as k8s_client
from ansible_collections.baremetal.kubernetes.plugins.module_utils._k8s_client import K8sApiError, K8sClient
from ansible_collections.baremetal.kubernetes.plugins.modules import apiserver_encryption_status as mod
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.k8s_fake import KUBECONFIG, status
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.utils import (
    deprecated_aliases,
    run_module,
    set_module_args,
)

CONFIG_A = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n# A\n"
CONFIG_B = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n# B\n"
HASH_A = "sha256:" + hashlib.sha256(CONFIG_A.encode()).hexdigest()
HASH_B = "sha256:" + hashlib.sha256(CONFIG_B.encode()).hexdigest()
ID = "sha256:14f9d63e669337ac6bfda2e2162915ee6a6067743eddd4e5c374b572f951ff37"


def exposition(config_hash=None, success=None, failure=None, last_success=None, last_failure=None, old=False):
    """/metrics text as kube-apiserver writes it (families sorted, HELP/TYPE lines, other families around)."""
    lines = ["# HELP apiserver_audit_event_total [ALPHA] Counter of audit events generated and sent to the audit "
             "backend.", "# TYPE apiserver_audit_event_total counter", "apiserver_audit_event_total 0"]
    if last_success is not None or last_failure is not None:
        lines += ["# HELP apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds [ALPHA] "
                  "Timestamp of the last successful or failed automatic reload of encryption configuration split "
                  "by apiserver identity.",
                  "# TYPE apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds gauge"]
        for label, value in (("failure", last_failure), ("success", last_success)):
            if value is not None:
                lines.append('apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds'
                             '{apiserver_id_hash="%s",status="%s"} %s' % (ID, label, value))
    if old:
        for name, value in (("success", success), ("failures", failure)):
            if value is not None:
                lines.append("apiserver_encryption_config_controller_automatic_reload_%s_total "
                             '{apiserver_id_hash="%s"} %s' % (name, ID, value))
    elif success is not None or failure is not None:
        lines += ["# HELP apiserver_encryption_config_controller_automatic_reloads_total [ALPHA] Total number of "
                  "reload successes and failures of encryption configuration split by apiserver identity.",
                  "# TYPE apiserver_encryption_config_controller_automatic_reloads_total counter"]
        for label, value in (("failure", failure), ("success", success)):
            if value is not None:
                lines.append('apiserver_encryption_config_controller_automatic_reloads_total'
                             '{apiserver_id_hash="%s",status="%s"} %s' % (ID, label, value))
    if config_hash:
        lines += ["# HELP apiserver_encryption_config_controller_last_config_info [ALPHA] Information about the "
                  "last applied encryption configuration with hash as label, split by apiserver identity.",
                  "# TYPE apiserver_encryption_config_controller_last_config_info gauge",
                  'apiserver_encryption_config_controller_last_config_info{apiserver_id_hash="%s",hash="%s"} 1'
                  % (ID, config_hash)]
    lines.append('apiserver_request_total{code="200",verb="GET"} 1.2345e+06')
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# the parser


def test_parse_skips_help_and_type_and_reads_values():
    text = exposition(HASH_A, success=2, failure=1, last_success="1.689101941e+09", last_failure=1689100000)
    families = mod.parse_metrics(text)
    assert families[mod.LAST_CONFIG] == [({"apiserver_id_hash": ID, "hash": HASH_A}, 1.0)]
    assert sorted((labels["status"], value) for labels, value in families[mod.RELOADS]) == [
        ("failure", 1.0), ("success", 2.0)]
    assert families["apiserver_request_total"] == [({"code": "200", "verb": "GET"}, 1234500.0)]
    assert not any(name.startswith("#") for name in families)
    info = mod.summarize(families)
    assert info["hashes"] == [HASH_A] and info["apiserver_id_hash"] == ID
    assert (info["reloads_success"], info["reloads_failure"]) == (2, 1)
    assert info["last_success"] == 1689101941.0 and info["last_failure"] == 1689100000.0


def test_label_order_whitespace_and_escapes():
    text = ('apiserver_encryption_config_controller_last_config_info {hash="sha256:ab\\\\c\\"d\\ne" , '
            'apiserver_id_hash="x"} 1 1700000000000\n'
            'apiserver_encryption_config_controller_automatic_reloads_total{status="success",'
            'apiserver_id_hash="x",} 3\n'
            'no_labels 4\n'
            'weird{a="}{,=\\""} +Inf\n')
    families = mod.parse_metrics(text)
    assert families[mod.LAST_CONFIG] == [({"hash": 'sha256:ab\\c"d\ne', "apiserver_id_hash": "x"}, 1.0)]
    assert families[mod.RELOADS] == [({"status": "success", "apiserver_id_hash": "x"}, 3.0)]
    assert families["no_labels"] == [({}, 4.0)]
    assert families["weird"] == [({"a": '}{,="'}, float("inf"))]


def test_missing_families_mean_zero_and_none():
    info = mod.summarize(mod.parse_metrics(exposition()))
    assert info == dict(hashes=[], has_info=False, apiserver_id_hash=None, reloads_success=0, reloads_failure=0,
                        last_success=None, last_failure=None)
    only_hash = mod.summarize(mod.parse_metrics(exposition(HASH_B)))
    assert only_hash["hashes"] == [HASH_B] and only_hash["reloads_success"] == 0 and only_hash["last_success"] is None


def test_deprecated_counters_are_read_when_the_new_family_is_absent():
    info = mod.summarize(mod.parse_metrics(exposition(success=4, failure=2, old=True)))
    assert (info["reloads_success"], info["reloads_failure"]) == (4, 2)
    # Both present (1.30-1.33): the new family wins, no double counting.
    both = exposition(success=4, failure=2) + exposition(success=4, failure=2, old=True)
    info = mod.summarize(mod.parse_metrics(both))
    assert (info["reloads_success"], info["reloads_failure"]) == (4, 2)


@pytest.mark.parametrize("text", [
    'metric{a="x" 1\n', 'metric{a=x} 1\n', "metric{a=\"x\"}\n", "metric notanumber\n", '{a="x"} 1\n',
    'metric{a="unterminated} 1\n',
])
def test_malformed_lines_raise(text):
    with pytest.raises(mod.MetricsParseError):
        mod.parse_metrics(text)


def test_wanted_skips_other_families_unparsed():
    text = 'garbage{{{ 1\n' + exposition(HASH_A)
    families = mod.parse_metrics(text, wanted={mod.LAST_CONFIG})
    assert list(families) == [mod.LAST_CONFIG]


@pytest.mark.parametrize("value, expected", [
    (HASH_A, HASH_A), (HASH_A[7:], HASH_A), (HASH_A.upper().replace("SHA256", "sha256"), HASH_A),
])
def test_normalize_hash(value, expected):
    assert mod.normalize_hash(value) == expected


def test_config_hash_is_sha256_of_utf8_bytes():
    assert mod.config_hash(CONFIG_A) == HASH_A
    assert mod.config_hash("ä") == "sha256:" + hashlib.sha256("ä".encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# the module


class FakeMetrics:
    """Per server: a list of /metrics answers (text, an (code, reason, message) error, or "down"); the last repeats."""

    def __init__(self):
        self.answers = {}
        self.requests = []

    def transport(self, client, method, url, data, headers, timeout):
        parts = urlsplit(url)
        server = "%s://%s" % (parts.scheme, parts.netloc)
        self.requests.append((server, parts.path, headers.get("Accept")))
        assert parts.path == "/metrics"
        script = self.answers[server]
        answer = script[0] if len(script) == 1 else script.pop(0)
        if answer == "down":
            raise K8sApiError("cannot reach %s: [Errno 111] Connection refused" % server)
        if isinstance(answer, tuple):
            return status(*answer)
        return 200, {"Content-Type": "text/plain; version=0.0.4"}, answer.encode()


@pytest.fixture
def metrics(monkeypatch, tmp_path):
    fake = FakeMetrics()

    def transport(client, method, url, data, headers, timeout):
        return fake.transport(client, method, url, data, headers, timeout)

    monkeypatch.setattr(K8sClient, "_transport", transport)
    monkeypatch.setattr(k8s_client, "backoff_delay", lambda *args, **kwargs: 0)
    monkeypatch.setattr(mod.StatusReader, "sleep", staticmethod(lambda seconds: None))
    kubeconfig = tmp_path / "admin.conf"
    kubeconfig.write_text(KUBECONFIG)
    fake.kubeconfig = str(kubeconfig)
    return fake


CP = ["https://10.0.0.11:6443", "https://10.0.0.12:6443", "https://10.0.0.13:6443"]


def run(fake, check_mode=False, **args):
    return run_module(mod.main, dict(args, kubeconfig=fake.kubeconfig), check_mode=check_mode)


def test_default_is_the_kubeconfig_server(metrics):
    metrics.answers["https://vip.example:8443"] = [exposition(HASH_A)]
    outcome, result = run(metrics, expected_config=CONFIG_A)
    assert outcome == "exit", result.get("msg")
    assert result["changed"] is False and result["all_match"] is True and result["expected_hash"] == HASH_A
    (entry,) = result["apiservers"]
    assert entry == dict(server="https://vip.example:8443", hash=HASH_A, matches=True, reloads_success=0,
                         reloads_failure=0, last_success=None, last_failure=None, apiserver_id_hash=ID,
                         reason="reports the expected hash")
    assert metrics.requests[0][2].startswith("text/plain")


def test_every_apiserver_matches(metrics):
    for server in CP:
        metrics.answers[server] = [exposition(HASH_B, success=1, last_success=1700000000)]
    outcome, result = run(metrics, apiservers=["10.0.0.11", "10.0.0.12:6443", CP[2]], expected_hash=HASH_B)
    assert outcome == "exit" and result["all_match"] is True
    assert [e["server"] for e in result["apiservers"]] == CP
    assert all(e["reloads_success"] == 1 and e["last_success"] == 1700000000.0 for e in result["apiservers"])


def test_mismatch_fails_naming_every_apiserver_with_its_hash(metrics):
    metrics.answers[CP[0]] = [exposition(HASH_B, success=1, last_success=1700000000)]
    metrics.answers[CP[1]] = [exposition(HASH_A)]
    metrics.answers[CP[2]] = ["down"]
    outcome, result = run(metrics, apiservers=CP, expected_hash=HASH_B)
    assert outcome == "fail"
    assert result["all_match"] is False
    assert "2 of 3 apiserver(s) do not run the expected encryption configuration %s" % HASH_B in result["msg"]
    assert "%s: hash %s: reports a different configuration than expected" % (CP[1], HASH_A) in result["msg"]
    assert "%s: hash (none): unreachable" % CP[2] in result["msg"]
    assert CP[0] + ":" not in result["msg"]
    assert [e["matches"] for e in result["apiservers"]] == [True, False, False]


def test_report_only_does_not_fail(metrics):
    metrics.answers[CP[0]] = [exposition(HASH_A)]
    outcome, result = run(metrics, apiservers=CP[:1], expected_hash=HASH_B, fail_on_mismatch=False)
    assert outcome == "exit" and result["all_match"] is False


def test_wait_polls_until_all_match(metrics):
    metrics.answers[CP[0]] = [exposition(HASH_A), exposition(HASH_B, success=1, last_success=1700000000)]
    metrics.answers[CP[1]] = ["down", exposition(HASH_A), exposition(HASH_A),
                              exposition(HASH_B, success=1, last_success=1700000001)]
    outcome, result = run(metrics, apiservers=CP[:2], expected_hash=HASH_B, wait=True, wait_timeout=60,
                          wait_sleep=1)
    assert outcome == "exit", result.get("msg")
    assert result["all_match"] is True and result["attempts"] == 4 and "deprecations" not in result


@pytest.mark.parametrize("sleep_option", ["wait_sleep", "poll_interval"])
def test_wait_times_out_naming_the_replica_on_the_old_hash(metrics, monkeypatch, sleep_option):
    now = [0.0]
    monkeypatch.setattr(mod.StatusReader, "clock", staticmethod(lambda: now[0]))
    monkeypatch.setattr(mod.StatusReader, "sleep", staticmethod(lambda seconds: now.__setitem__(0, now[0] + seconds)))
    metrics.answers[CP[0]] = [exposition(HASH_B, success=1, last_success=1700000000)]
    metrics.answers[CP[1]] = [exposition(HASH_A)]
    outcome, result = run(metrics, apiservers=CP[:2], expected_hash=HASH_B, wait=True, wait_timeout=12,
                          **{sleep_option: 5})
    assert outcome == "fail"
    assert result["attempts"] == 4  # at 0, 5, 10 and 12 s
    assert "after waiting 12 s (4 attempts)" in result["msg"]
    assert "%s: hash %s: reports a different configuration" % (CP[1], HASH_A) in result["msg"]
    # poll_interval is the option's former name: still accepted, with a deprecation warning.
    expected = {"poll_interval": ("1.0.0", "baremetal.kubernetes")} if sleep_option == "poll_interval" else {}
    assert deprecated_aliases(result) == expected


def test_failed_reload_is_explained(metrics):
    metrics.answers[CP[0]] = [exposition(HASH_A, success=1, failure=3, last_success=1700000000,
                                         last_failure=1700000100)]
    outcome, result = run(metrics, apiservers=CP[:1], expected_hash=HASH_B)
    assert outcome == "fail"
    assert "its last automatic reload FAILED at 2023-11-14T22:15:00Z (3 failure(s))" in result["msg"]
    assert result["apiservers"][0]["reloads_failure"] == 3


@pytest.mark.parametrize("answer, matches, needle", [
    (exposition(success=2, last_success=1700000500), True, "reloaded successfully at"),
    (exposition(success=2, last_success=1699999000), False, "no successful automatic reload since"),
    (exposition(), False, "(last: never)"),
    (exposition(success=2, failure=1, last_success=1700000500, last_failure=1700000600), False,
     "a reload failed at"),
    (exposition(success=2, old=True, last_success=1700000500), True, "reloaded successfully"),
])
def test_reloaded_after_for_apiservers_without_last_config_info(metrics, answer, matches, needle):
    metrics.answers[CP[0]] = [answer]
    _outcome, result = run(metrics, apiservers=CP[:1], expected_hash=HASH_B, reloaded_after=1700000000,
                           fail_on_mismatch=False)
    entry = result["apiservers"][0]
    assert entry["matches"] is matches and needle in entry["reason"], entry


def test_hash_reported_wins_over_reloaded_after(metrics):
    metrics.answers[CP[0]] = [exposition(HASH_A, success=2, last_success=1700000500)]
    outcome, result = run(metrics, apiservers=CP[:1], expected_hash=HASH_B, reloaded_after=1700000000,
                          fail_on_mismatch=False)
    assert outcome == "exit" and result["apiservers"][0]["matches"] is False


def test_without_info_and_without_reloaded_after_it_says_what_to_do(metrics):
    metrics.answers[CP[0]] = [exposition(success=1, last_success=1700000500)]
    outcome, result = run(metrics, apiservers=CP[:1], expected_hash=HASH_B)
    assert outcome == "fail" and "set reloaded_after" in result["msg"]


def test_without_expectation_the_apiservers_must_agree(metrics):
    for server in CP:
        metrics.answers[server] = [exposition(HASH_A)]
    outcome, result = run(metrics, apiservers=CP)
    assert outcome == "exit" and result["all_match"] is True and result["expected_hash"] is None
    metrics.answers[CP[2]] = [exposition(HASH_B)]
    outcome, result = run(metrics, apiservers=CP)
    assert outcome == "fail" and "do not run the same encryption configuration" in result["msg"]
    assert "%s: hash %s" % (CP[2], HASH_B) in result["msg"] and "%s: hash %s" % (CP[0], HASH_A) in result["msg"]


def test_forbidden_metrics_explains_the_permission(metrics):
    metrics.answers[CP[0]] = [(403, "Forbidden", 'forbidden: User "x" cannot get path "/metrics"')]
    outcome, result = run(metrics, apiservers=CP[:1], expected_hash=HASH_B)
    assert outcome == "fail" and "system:monitoring" in result["apiservers"][0]["reason"]


def test_expected_config_is_no_log(metrics, capsys):
    """The file content holds the encryption keys: the real exit_json output masks it."""
    metrics.answers[CP[0]] = [exposition(HASH_A)]
    with set_module_args(dict(kubeconfig=metrics.kubeconfig, apiservers=CP[:1], expected_config=CONFIG_A)), \
            pytest.raises(SystemExit) as raised:
        mod.main()
    assert raised.value.code == 0
    output = json.loads(capsys.readouterr().out)
    assert output["all_match"] is True
    assert output["invocation"]["module_args"]["expected_config"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert "EncryptionConfiguration" not in json.dumps(output)


def test_runs_in_check_mode(metrics):
    metrics.answers[CP[0]] = [exposition(HASH_A)]
    outcome, result = run(metrics, check_mode=True, apiservers=CP[:1], expected_config=CONFIG_A)
    assert outcome == "exit" and result["all_match"] is True and result["changed"] is False


@pytest.mark.parametrize("args, needle", [
    (dict(expected_hash="md5:abc"), "expected_hash must be 'sha256:' followed by 64 hex digits"),
    (dict(expected_hash=HASH_A, expected_config=CONFIG_A), "mutually exclusive"),
    (dict(wait_timeout=0), "wait_timeout must be at least 1"),
    (dict(wait_sleep=0), "wait_sleep must be at least 1"),
])
def test_bad_options(metrics, args, needle):
    outcome, result = run(metrics, **args)
    assert outcome == "fail" and needle in result["msg"], result["msg"]
