# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_encryption_audit against a fake etcdctl that answers ``get <key> <range end> --limit --rev -w json``
with etcd 3.4.23's JSON (header revision, base64 keys and values, ``more``, ``count``) over a revisioned store."""

from __future__ import annotations

import base64
import json
import os

import pytest
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.kubernetes.plugins.module_utils import _etcd as etcd_utils
from ansible_collections.baremetal.kubernetes.plugins.modules import etcd_encryption_audit as audit
from ansible_collections.baremetal.kubernetes.tests.unit.plugins.modules.utils import run_module

ENDPOINTS = ["https://10.0.0.11:2379", "https://10.0.0.12:2379"]


def secretbox(key, plaintext=b'{"kind":"Secret"}'):
    """A value as kube-apiserver's secretbox transformer stores it: prefix, 24-byte nonce, sealed data."""
    return b"k8s:enc:secretbox:v1:%s:" % key.encode() + os.urandom(24) + os.urandom(16) + plaintext[::-1]


class FakeKV:
    """etcd's MVCC key space as etcdctl 3.4 shows it: every write makes a revision; old revisions stay
    readable until compacted. ``on_get`` runs after each answered get (to write between two pages)."""

    def __init__(self):
        self.history = [{}]
        self.revision = 1
        self.compacted = 0
        self.calls = []
        self.on_get = None

    def put(self, key, value):
        data = dict(self.history[-1])
        data[key] = value
        self.history.append(data)
        self.revision += 1

    def at(self, revision):
        return self.history[revision - 1]

    def run_command(self, args, environ_update=None, **kwargs):
        self.calls.append(list(args))
        assert environ_update == dict(ETCDCTL_API="3")
        words = [arg for arg in args[1:] if not arg.startswith("-") and arg != "json"]
        options = dict(arg[2:].split("=", 1) for arg in args[1:] if arg.startswith("--") and "=" in arg)
        assert words[0] == "get", "unexpected etcdctl call: %r" % (args,)
        start, end = words[1], words[2]
        revision = int(options.get("rev", self.revision))
        if revision > self.revision:
            return 1, "", "Error: etcdserver: mvcc: required revision is a future revision\n"
        if revision < self.compacted:
            return 1, "", ('{"level":"warn","msg":"retrying of unary invoker failed"}\n'
                           "Error: etcdserver: mvcc: required revision has been compacted\n")
        keys = sorted(key for key in self.at(revision) if start <= key < end)
        limit = int(options.get("limit", 0)) or len(keys)
        answer = {"header": {"cluster_id": 15118495548433857066, "member_id": 13668033151171901709,
                             "revision": self.revision, "raft_term": 2}}
        if keys:
            answer["kvs"] = [{"key": base64.b64encode(key.encode()).decode(), "create_revision": 2,
                              "mod_revision": 2, "version": 1,
                              "value": base64.b64encode(self.at(revision)[key]).decode()} for key in keys[:limit]]
            answer["count"] = len(keys)
        if len(keys) > limit:
            answer["more"] = True
        if self.on_get:
            self.on_get(self)
        return 0, json.dumps(answer, separators=(",", ":")), ""

    def gets(self):
        return [call[call.index("get"):] for call in self.calls]


@pytest.fixture
def kv(monkeypatch, tmp_path):
    store = FakeKV()
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, args, **kw: store.run_command(args, **kw))
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, *a, **kw: str(tmp_path / "etcdctl"))
    for name in ("etcdctl", "ca.crt", "client.crt", "client.key"):
        (tmp_path / name).write_text("x")
    store.args = dict(endpoints=ENDPOINTS, cacert=str(tmp_path / "ca.crt"), cert=str(tmp_path / "client.crt"),
                      key=str(tmp_path / "client.key"))
    return store


def run(kv, check_mode=False, **args):
    outcome, result = run_module(audit.main, dict(kv.args, **args), check_mode=check_mode)
    return outcome == "fail", result


def populate(kv, secrets=23, key="key1"):
    """Secrets over three namespaces, plus neighbours on both sides of /registry/secrets/ in key order."""
    kv.put("/registry/configmaps/default/kube-root-ca.crt", b'{"kind":"ConfigMap","data":{}}')
    kv.put("/registry/secrets-store/x", secretbox("elsewhere"))
    names = []
    for index in range(secrets):
        name = "/registry/secrets/%s/s%02d" % (("default", "team-a", "team-b")[index % 3], index)
        kv.put(name, secretbox(key, b"top-secret-%02d" % index))
        names.append(name)
    kv.put("/registry/serviceaccounts/default/default", secretbox("other"))
    return sorted(names)


# --- resource -> etcd prefix ------------------------------------------------------------------


@pytest.mark.parametrize("resource, expected", [
    ("secrets", "/registry/secrets/"),
    ("configmaps", "/registry/configmaps/"),
    ("deployments.apps", "/registry/deployments/"),
    ("cronjobs.batch", "/registry/cronjobs/"),
    ("leases.coordination.k8s.io", "/registry/leases/"),
    ("roles.rbac.authorization.k8s.io", "/registry/roles/"),
    ("services", "/registry/services/specs/"),
    ("endpoints", "/registry/services/endpoints/"),
    ("nodes", "/registry/minions/"),
    ("replicationcontrollers", "/registry/controllers/"),
    ("ingresses.networking.k8s.io", "/registry/ingress/"),
    ("customresourcedefinitions.apiextensions.k8s.io", "/registry/apiextensions.k8s.io/customresourcedefinitions/"),
    ("apiservices.apiregistration.k8s.io", "/registry/apiregistration.k8s.io/apiservices/"),
    ("widgets.example.com", "/registry/example.com/widgets/"),
    ("gateways.gateway.networking.k8s.io", "/registry/gateway.networking.k8s.io/gateways/"),
])
def test_resource_prefix_follows_kube_apiserver(resource, expected):
    assert audit.resource_prefix(resource) == expected


@pytest.mark.parametrize("etcd_prefix, expected", [
    ("/registry", "/registry/secrets/"), ("registry/", "/registry/secrets/"), ("/k8s/prod", "/k8s/prod/secrets/"),
    ("/", "/secrets/"),
])
def test_resource_prefix_honours_the_etcd_prefix(etcd_prefix, expected):
    assert audit.resource_prefix("secrets", etcd_prefix) == expected


@pytest.mark.parametrize("resource, message", [
    ("*.*", "wildcards such as '*.*' are not supported"),
    ("*.apps", "wildcards such as '*.apps' are not supported"),
    ("Secrets", "'Secrets' is not a resource name"),
    ("secrets/status", "'secrets/status' is not a resource name"),
    ("", "'' is not a resource name"),
])
def test_resource_prefix_refuses_what_it_cannot_map(resource, message):
    with pytest.raises(etcd_utils.EtcdError, match=message.replace("*", r"\*").replace(".", r"\.")):
        audit.resource_prefix(resource)


# --- classification --------------------------------------------------------------------------


@pytest.mark.parametrize("value, writer", [
    (secretbox("key-20261128T1500Z"), "secretbox:key-20261128T1500Z"),
    (b"k8s:enc:aesgcm:v1:key1:" + os.urandom(40), "aesgcm:key1"),
    (b"k8s:enc:aescbc:v1:old:" + os.urandom(48), "aescbc:old"),
    (b"k8s:enc:kms:v1:vault:" + os.urandom(40), "kms:vault"),
    (b"k8s:enc:kms:v2:vault-kms:\n\x0f\x0a" + os.urandom(60), "kms:vault-kms"),
    (b"k8s\x00\n\x0c\n\x02v1\x12\x06Secret" + os.urandom(30), "identity"),
    (b'{"apiVersion":"v1","kind":"Secret"}', "identity"),
    (b"", "identity"),
    (b"k8s:enc:secretbox:v1", "unknown"),
    (b"k8s:enc:secretbox:v1:" + b"n" * 200 + b":", "unknown"),
])
def test_classify(value, writer):
    assert audit.classify(value[:audit.HEAD_BYTES]) == writer


def test_classify_a_key_name_with_a_colon_exactly_for_the_expected_writer():
    value = b"k8s:enc:secretbox:v1:team:a:" + os.urandom(40)
    assert audit.classify(value) == "secretbox:team"
    assert audit.classify(value, audit.parse_expected("secretbox:team:a")) == "secretbox:team:a"
    assert audit.classify(value, audit.parse_expected("secretbox:team")) == "secretbox:team"


def test_parse_expected():
    assert audit.parse_expected(" identity ") == ("identity", ())
    assert audit.parse_expected("aesgcm:k2") == ("aesgcm:k2", (b"k8s:enc:aesgcm:v1:k2:",))
    assert audit.parse_expected("kms:vault")[1] == (b"k8s:enc:kms:v1:vault:", b"k8s:enc:kms:v2:vault:")
    for bad in ("secretbox", "secretbox:", "aes:key1", "key1"):
        with pytest.raises(etcd_utils.EtcdError, match="expect_writer must be 'identity' or"):
            audit.parse_expected(bad)


# --- module_utils helpers ---------------------------------------------------------------------


def test_prefix_range_end():
    assert etcd_utils.prefix_range_end("/registry/secrets/") == "/registry/secrets0"
    assert etcd_utils.prefix_range_end("a\udcff") == "b"
    with pytest.raises(etcd_utils.EtcdError, match="no range end"):
        etcd_utils.prefix_range_end("\udcff")


def test_parse_range_reads_etcdctl_3_4_json():
    text = ('{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":7,"raft_term":2},'
            '"kvs":[{"key":"L3JlZ2lzdHJ5L3NlY3JldHMvbnMvczE=","create_revision":2,"mod_revision":2,"version":1,'
            '"value":"azhzOmVuYzpzZWNyZXRib3g6djE6a2V5MTp4eHh4"}],"more":true,"count":5}')
    page = etcd_utils.parse_range(text)
    assert page == dict(revision=7, kvs=[("/registry/secrets/ns/s1", "azhzOmVuYzpzZWNyZXRib3g6djE6a2V5MTp4eHh4")],
                        more=True, count=5)
    empty = etcd_utils.parse_range('{"header":{"cluster_id":1,"member_id":2,"revision":9,"raft_term":2}}')
    assert empty == dict(revision=9, kvs=[], more=False, count=0)
    with pytest.raises(etcd_utils.EtcdError, match="returned no revision"):
        etcd_utils.parse_range("{}")


def test_value_head_decodes_only_the_start():
    value = b"k8s:enc:secretbox:v1:key1:" + os.urandom(1000)
    encoded = base64.b64encode(value).decode()
    for size in (1, 26, 64, 65, 66, 128):
        assert etcd_utils.value_head(encoded, size) == value[:size]
    assert etcd_utils.value_head(base64.b64encode(b"{}").decode(), 64) == b"{}"
    with pytest.raises(etcd_utils.EtcdError, match="not base64"):
        etcd_utils.value_head("k8s:", 64)


# --- the module -------------------------------------------------------------------------------


def test_counts_every_secret_once_over_pages_at_one_revision(kv):
    names = populate(kv)
    kv.put("/registry/secrets/default/plain", b'{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}')
    revision = kv.revision
    writes = iter(range(100))

    def write_between_pages(store):
        # A writer keeps going while the audit reads: none of this may show up in the counts.
        index = next(writes)
        store.put("/registry/secrets/default/late-%02d" % index, secretbox("key2"))
        store.put(names[-1], secretbox("key2"))

    kv.on_get = write_between_pages
    failed, result = run(kv, page_size=5)
    assert not failed, result["msg"]
    assert result["changed"] is False
    assert result["revision"] == revision
    assert result["total"] == 24 and result["writers"] == {"secretbox:key1": 23, "identity": 1}
    assert result["resources"] == {"secrets": {"prefix": "/registry/secrets/", "count": 24,
                                               "writers": {"secretbox:key1": 23, "identity": 1}}}
    assert "offenders" not in result and "offender_count" not in result
    gets = kv.gets()
    # 24 keys: 5 on the first page, then 4 new ones on each page after it (the first key repeats the last one).
    assert result["pages"] == len(gets) == 6
    assert gets[0] == ["get", "/registry/secrets/", "/registry/secrets0", "--limit=5", "-w", "json"]
    for previous, call in zip(gets, gets[1:]):
        assert call[-1] == "--rev=%d" % revision
        assert call[2] == "/registry/secrets0" and call[1] > previous[1]
    assert all("--endpoints=%s" % ",".join(ENDPOINTS) in call for call in kv.calls)


def test_a_page_size_that_divides_the_keys_evenly_ends_cleanly(kv):
    populate(kv, secrets=9)
    failed, result = run(kv, page_size=3)
    assert not failed and result["total"] == 9
    assert result["pages"] == 4  # 3 + 2 + 2 + 2


def collect_warnings(monkeypatch):
    # module.warn() goes to the controller's Display once another test has loaded controller code: collect directly.
    warned = []
    monkeypatch.setattr(AnsibleModule, "warn", lambda self, msg: warned.append(msg))
    return warned


def test_per_resource_writers_kms_v2_plaintext_and_prefix_mapping(kv, monkeypatch):
    warned = collect_warnings(monkeypatch)
    populate(kv, secrets=4)
    kv.put("/registry/secrets/kube-system/kms", b"k8s:enc:kms:v2:vault:\n\x20" + os.urandom(50))
    kv.put("/registry/configmaps/default/settings", b"k8s:enc:aesgcm:v1:cm-key:" + os.urandom(40))
    kv.put("/registry/deployments/default/web", b"k8s\x00\n\x0f\n\x07apps/v1" + os.urandom(20))
    kv.put("/registry/services/specs/default/kubernetes", b"k8s\x00" + os.urandom(20))
    kv.put("/registry/services/endpoints/default/kubernetes", b"k8s:enc:secretbox:v1:key1:" + os.urandom(40))
    failed, result = run(kv, resources=["secrets", "configmaps", "deployments.apps", "services"], page_size=2)
    assert not failed, result["msg"]
    assert result["resources"] == {
        "secrets": {"prefix": "/registry/secrets/", "count": 5, "writers": {"secretbox:key1": 4, "kms:vault": 1}},
        "configmaps": {"prefix": "/registry/configmaps/", "count": 2,
                       "writers": {"identity": 1, "aesgcm:cm-key": 1}},
        "deployments.apps": {"prefix": "/registry/deployments/", "count": 1, "writers": {"identity": 1}},
        "services": {"prefix": "/registry/services/specs/", "count": 1, "writers": {"identity": 1}},
    }
    assert result["writers"] == {"secretbox:key1": 4, "kms:vault": 1, "identity": 3, "aesgcm:cm-key": 1}
    assert result["total"] == 9
    assert warned == []


def test_a_resource_with_no_object_is_warned_about(kv, monkeypatch):
    warned = collect_warnings(monkeypatch)
    populate(kv, secrets=2)
    failed, result = run(kv, resources=["secrets", "secret"])
    assert not failed
    assert result["resources"]["secret"] == {"prefix": "/registry/secret/", "count": 0, "writers": {}}
    assert warned == ["no object under /registry/secret/ (resource secret) at revision %d: check the "
                      "resource name and the prefix option" % kv.revision]


def test_aliases_of_one_prefix_are_counted_once(kv):
    kv.put("/registry/ingress/default/web", b"k8s\x00" + os.urandom(10))
    failed, result = run(kv, resources=["ingresses.networking.k8s.io", "ingresses.extensions"])
    assert not failed and result["total"] == 1 and len(kv.gets()) == 1
    assert result["resources"]["ingresses.extensions"]["count"] == 1


def test_expect_writer_passes_when_every_object_carries_it(kv):
    populate(kv)
    failed, result = run(kv, expect_writer="secretbox:key1", page_size=4)
    assert not failed, result["msg"]
    assert result["offenders"] == [] and result["offender_count"] == 0


def test_expect_writer_fails_naming_keys_and_writers_but_never_values(kv):
    names = populate(kv, secrets=30, key="key1")
    for name in names[:5]:
        kv.put(name, secretbox("key2"))
    kv.put("/registry/secrets/default/zz-plain", b'{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}')
    failed, result = run(kv, expect_writer="secretbox:key2", page_size=7)
    assert failed
    stale = sorted([*names[5:], "/registry/secrets/default/zz-plain"])
    assert result["offender_count"] == 26
    assert result["offenders"] == [dict(key=key, writer="identity" if key.endswith("zz-plain") else
                                        "secretbox:key1") for key in stale[:20]]
    assert result["msg"].startswith(
        "26 of 31 objects in etcd are not stored by secretbox:key2 (writers at revision %d: identity=1, "
        "secretbox:key1=25, secretbox:key2=5): %s (secretbox:key1), " % (kv.revision, stale[0]))
    assert result["msg"].endswith(" and 6 more")
    assert "aHVudGVyMg" not in json.dumps(result) and "top-secret" not in json.dumps(result)
    assert result["changed"] is False and result["writers"]["secretbox:key2"] == 5


def test_expect_identity_names_the_encrypted_ones(kv):
    kv.put("/registry/configmaps/a/one", b'{"kind":"ConfigMap"}')
    kv.put("/registry/configmaps/a/two", secretbox("key1"))
    failed, result = run(kv, resources=["configmaps"], expect_writer="identity")
    assert failed and result["offenders"] == [dict(key="/registry/configmaps/a/two", writer="secretbox:key1")]
    assert result["msg"].endswith(": /registry/configmaps/a/two (secretbox:key1)")


def test_expect_kms_accepts_v1_and_v2_values_of_the_provider(kv):
    kv.put("/registry/secrets/a/v1", b"k8s:enc:kms:v1:vault:" + os.urandom(30))
    kv.put("/registry/secrets/a/v2", b"k8s:enc:kms:v2:vault:" + os.urandom(30))
    failed, result = run(kv, expect_writer="kms:vault")
    assert not failed and result["writers"] == {"kms:vault": 2}


def test_check_mode_reads_the_same_and_changes_nothing(kv):
    populate(kv, secrets=6)
    before = kv.revision
    failed, result = run(kv, check_mode=True, expect_writer="secretbox:key1", page_size=2)
    assert not failed and result["changed"] is False
    assert result["total"] == 6 and result["writers"] == {"secretbox:key1": 6}
    assert kv.revision == before and all(call[0] == "get" for call in kv.gets())


def test_compaction_during_the_read_asks_for_a_rerun(kv):
    populate(kv, secrets=10)

    def compact(store):
        store.put("/registry/events/x", b"{}")
        store.compacted = store.revision

    kv.on_get = compact
    failed, result = run(kv, page_size=3)
    assert failed
    assert result["msg"] == ("etcd compacted revision %d while the audit was reading it (the read took longer than "
                             "the apiserver's compaction interval): run the audit again" % (kv.revision - 1))
    assert "required revision has been compacted" in result["stderr"]


def test_an_etcdctl_error_is_reported_with_its_last_line(kv, monkeypatch):
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, args, **kw: (
        1, "", '{"level":"warn"}\nError: context deadline exceeded\n'))
    failed, result = run(kv)
    assert failed and result["msg"] == ("etcdctl get /registry/secrets/ failed against %s: Error: context deadline "
                                        "exceeded" % ",".join(ENDPOINTS))


def test_large_values_make_the_following_pages_smaller(kv, monkeypatch):
    monkeypatch.setattr(audit, "PAGE_BYTES", 4000)
    for index in range(10):
        kv.put("/registry/secrets/helm/release-%d" % index, secretbox("key1", os.urandom(900)))
    failed, result = run(kv, page_size=8)
    assert not failed and result["total"] == 10
    limits = [call[3] for call in kv.gets()]
    assert limits[0] == "--limit=8" and all(limit in ("--limit=2", "--limit=3") for limit in limits[1:])


@pytest.mark.parametrize("args, message", [
    (dict(page_size=1), "page_size must be at least 2, got 1"),
    (dict(expect_writer="secretbox"), "expect_writer must be 'identity' or '<provider>:<key name>'"),
    (dict(resources=["*.*"]), "resources: wildcards such as '*.*' are not supported"),
    (dict(resources=[]), "resources is empty"),
])
def test_bad_options_are_refused_before_etcd_is_read(kv, args, message):
    failed, result = run(kv, **args)
    assert failed and result["msg"].startswith(message)
    assert kv.calls == []


def test_missing_client_key_is_refused(kv, tmp_path):
    failed, result = run(kv, key=str(tmp_path / "nope.key"))
    assert failed and result["msg"] == "key %s does not exist or is not a file" % (tmp_path / "nope.key")
    assert kv.calls == []
