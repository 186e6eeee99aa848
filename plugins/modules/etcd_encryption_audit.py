#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_encryption_audit
short_description: Count which encryption key stored each object in etcd, read straight from etcd
version_added: 0.1.0
description:
  - Reads the raw values of every object of I(resources) from etcd and reports which B(writer) stored each one,
    without decrypting anything. This is the proof step of an encryption key rotation (after
    M(baremetal.kubernetes.k8s_storage_rewrite)) and of turning encryption on for an existing cluster, that
    B(no) object still carries the old key, before the old key is removed.
  - "kube-apiserver prefixes every encrypted value with C(k8s:enc:<provider>:v1:<key name>:) (C(secretbox),
    C(aesgcm), C(aescbc), and KMS v1 C(k8s:enc:kms:v1:<name>:)) or C(k8s:enc:kms:v2:<name>:) (KMS v2, where
    I(name) is the provider's name in the EncryptionConfiguration). The writer of such a value is
    C(<provider>:<name>), e.g. C(secretbox:key-20261128T1500Z) or C(kms:vault). A value without that prefix was
    stored by the C(identity) provider, in plaintext (protobuf C(k8s\\x00...) or JSON); its writer is
    C(identity). An encrypted value whose prefix cannot be parsed is counted as C(unknown)."
  - With I(expect_writer) the module fails when any object was stored by another writer, naming up to 20 of
    them by etcd key with the writer each carries. Only keys and writers are reported, never values.
  - "Reading: C(etcdctl get <prefix> <range end> --limit <page_size> -w json) page after page; every page after
    the first is pinned with C(--rev) to the revision of the first one, so all resources are counted in one
    consistent view of the store, and continues from the last key of the previous page (that key, returned
    again, is skipped). Only the first 128 bytes of each value are decoded and kept. etcdctl still prints whole
    values, so one page holds up to I(page_size) values in memory; when objects are large the following pages
    are made smaller to keep a page around 32 MiB."
  - "Resource to etcd key: C(<prefix>/<resource>/) for the built-in API groups (C(secrets),
    C(deployments.apps) -> C(/registry/deployments/)), with kube-apiserver's historical exceptions
    (C(services) -> C(services/specs), C(endpoints) -> C(services/endpoints), C(nodes) -> C(minions),
    C(replicationcontrollers) -> C(controllers), C(ingresses.networking.k8s.io) -> C(ingress));
    C(<prefix>/<group>/<resource>/) for C(apiextensions.k8s.io), C(apiregistration.k8s.io) and custom
    resources (any other group with a dot, e.g. C(widgets.example.com) -> C(/registry/example.com/widgets/)).
    A resource with no object at all is reported with a warning: usually a misspelt name."
  - When etcd compacts the pinned revision while the audit reads (a read slower than the apiserver's compaction
    interval, five minutes by default), the module fails and asks for a re-run.
  - Read-only; behaves the same in check mode.
author:
  - baremetal.kubernetes maintainers (@baremetal-kubernetes)
requirements:
  - etcdctl (v3 API; etcd 3.4 or later) on the host that runs the module
options:
  resources:
    description:
      - "The resources to audit, named as in the C(resources) lists of an C(EncryptionConfiguration):
        C(resource) for the core group (C(secrets), C(configmaps)), C(resource.group) otherwise
        (C(deployments.apps), C(widgets.example.com)). Wildcards (C(*.*), C(*.apps)) are not accepted."
    type: list
    elements: str
    default: [secrets]
  prefix:
    description:
      - The apiserver's C(--etcd-prefix), under which every resource is stored.
    type: str
    default: /registry
  expect_writer:
    description:
      - "The writer every object must have been stored by: C(<provider>:<key name>) with provider C(secretbox),
        C(aesgcm), C(aescbc) or C(kms) (e.g. C(secretbox:key-20261128T1500Z); C(kms:<name>) accepts KMS v1 and
        v2 values of that provider name), or C(identity) for plaintext."
      - The task fails when any object of I(resources) was stored by another writer.
    type: str
  page_size:
    description:
      - Keys per etcdctl request (C(--limit)); at least 2. Lower it when objects are large (Helm release
        Secrets reach 1 MiB each).
    type: int
    default: 500
extends_documentation_fragment:
  - baremetal.kubernetes.read_only
  - baremetal.kubernetes.etcd_client
notes:
  - The client certificate needs read access to the keys under I(prefix). The collection's etcd does not turn on
    etcd's own authentication, so any client certificate signed by the etcd CA may read, the role's
    healthcheck client certificate (the default) included. The audit sees ciphertext only.
seealso:
  - module: baremetal.kubernetes.k8s_storage_rewrite
  - module: baremetal.kubernetes.apiserver_encryption_status
  - module: baremetal.kubernetes.etcd_health
  - name: Encrypting confidential data at rest
    description: Upstream's key rotation procedure and how to check the stored prefix with etcdctl.
    link: https://kubernetes.io/docs/tasks/administer-cluster/encrypt-data/
"""

EXAMPLES = r"""
- name: No Secret may still carry the old key (after the re-write, before the old key is removed)
  baremetal.kubernetes.etcd_encryption_audit:
    endpoints: [https://127.0.0.1:2379]
    expect_writer: "secretbox:{{ new_key_name }}"
  become: true

- name: Which keys store Secrets and ConfigMaps right now?
  baremetal.kubernetes.etcd_encryption_audit:
    endpoints: "{{ groups['etcd'] | map('extract', hostvars) | map(attribute='etcd_client_url') | list }}"
    resources: [secrets, configmaps]
  register: audit

- name: Show the writers
  ansible.builtin.debug:
    msg: "{{ audit.writers }}"
"""

RETURN = r"""
writers:
  description: Objects per writer over all I(resources).
  returned: always
  type: dict
  sample: {"secretbox:key-20261128T1500Z": 812, "secretbox:key-20260101T0000Z": 3, identity: 1}
total:
  description: Objects counted over all I(resources).
  returned: always
  type: int
  sample: 816
revision:
  description: The etcd revision every page was read at.
  returned: always
  type: int
  sample: 183412
resources:
  description: One entry per resource as given in I(resources).
  returned: always
  type: dict
  sample:
    secrets:
      prefix: /registry/secrets/
      count: 815
      writers: {"secretbox:key-20261128T1500Z": 812, "secretbox:key-20260101T0000Z": 3}
  contains:
    prefix:
      description: The etcd key prefix read.
      type: str
    count:
      description: Objects under that prefix.
      type: int
    writers:
      description: Objects per writer under that prefix.
      type: dict
offenders:
  description:
    - The first 20 objects (in key order) not stored by I(expect_writer), each with the writer it carries.
  returned: when I(expect_writer) is set
  type: list
  elements: dict
  contains:
    key:
      description: The etcd key, C(<prefix>/<resource>/<namespace>/<name>).
      type: str
    writer:
      description: The writer that stored it.
      type: str
  sample:
    - key: /registry/secrets/default/db-password
      writer: secretbox:key-20260101T0000Z
offender_count:
  description: How many objects were not stored by I(expect_writer) (all of them, not only the 20 listed).
  returned: when I(expect_writer) is set
  type: int
  sample: 3
pages:
  description: etcdctl requests made.
  returned: always
  type: int
  sample: 2
duration:
  description: Seconds the audit took.
  returned: always
  type: float
  sample: 0.8
"""

import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.baremetal.kubernetes.plugins.module_utils._errors import fail_from_error
from ansible_collections.baremetal.kubernetes.plugins.module_utils._etcd import (
    ETCD_CLIENT_ARGUMENT_SPEC,
    EtcdCtl,
    EtcdError,
    parse_range,
    prefix_range_end,
    value_head,
)

IDENTITY = "identity"
UNKNOWN = "unknown"
PROVIDERS = ("aescbc", "aesgcm", "secretbox", "kms")
ENCRYPTED = b"k8s:enc:"
_ENCRYPTED_PREFIX = re.compile(rb"k8s:enc:([a-z0-9]+):v[0-9]+:([^:]+):")
HEAD_BYTES = 128
MAX_OFFENDERS = 20
PAGE_BYTES = 32 * 1024 * 1024

# Where kube-apiserver keeps a resource (k8s.io/kubernetes/pkg/kubeapiserver/default_storage_factory_builder.go,
# SpecialDefaultResourcePrefixes), keyed by (group, resource).
SPECIAL_PREFIXES = {
    ("", "replicationcontrollers"): "controllers",
    ("", "endpoints"): "services/endpoints",
    ("", "nodes"): "minions",
    ("", "services"): "services/specs",
    ("extensions", "ingresses"): "ingress",
    ("networking.k8s.io", "ingresses"): "ingress",
    ("extensions", "podsecuritypolicies"): "podsecuritypolicy",
    ("policy", "podsecuritypolicies"): "podsecuritypolicy",
}
# Built-in groups whose name has a dot. Groups without a dot (apps, batch, autoscaling, policy, extensions)
# are all built in: a CustomResourceDefinition's group must contain one.
BUILTIN_DOTTED_GROUPS = frozenset((
    "admissionregistration.k8s.io", "certificates.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
    "events.k8s.io", "flowcontrol.apiserver.k8s.io", "internal.apiserver.k8s.io", "networking.k8s.io",
    "node.k8s.io", "rbac.authorization.k8s.io", "resource.k8s.io", "scheduling.k8s.io", "storage.k8s.io",
    "storagemigration.k8s.io",
))
# Served by the apiextensions and aggregator servers, which store under <group>/<resource> like custom resources.
GROUP_PREFIXED = frozenset(("apiextensions.k8s.io", "apiregistration.k8s.io"))
_RESOURCE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def resource_prefix(resource, etcd_prefix="/registry"):
    """The etcd key prefix (with a trailing slash) of ``resource`` as written in an EncryptionConfiguration."""
    if "*" in resource:
        raise EtcdError("resources: wildcards such as %r are not supported; list the resources by name" % resource)
    if not _RESOURCE.fullmatch(resource):
        raise EtcdError("resources: %r is not a resource name like secrets or deployments.apps" % resource)
    name, _dot, group = resource.partition(".")
    if (group, name) in SPECIAL_PREFIXES:
        path = SPECIAL_PREFIXES[(group, name)]
    elif group and (group in GROUP_PREFIXED or ("." in group and group not in BUILTIN_DOTTED_GROUPS)):
        path = "%s/%s" % (group, name)
    else:
        path = name
    root = "/" + etcd_prefix.strip("/")
    return "%s/%s/" % (root.rstrip("/"), path)


def parse_expected(writer):
    """``expect_writer`` -> (the writer as reported, the value prefixes that writer stores with)."""
    writer = writer.strip()
    if writer == IDENTITY:
        return writer, ()
    provider, _colon, name = writer.partition(":")
    if provider not in PROVIDERS or not name:
        raise EtcdError("expect_writer must be 'identity' or '<provider>:<key name>' with provider one of %s, "
                        "got %r" % (", ".join(PROVIDERS), writer))
    versions = ("v1", "v2") if provider == "kms" else ("v1",)
    return writer, tuple(b"k8s:enc:%s:%s:%s:" % (provider.encode(), version.encode(), name.encode())
                         for version in versions)


def classify(head, expected=None):
    """The writer of a stored value from its first bytes. ``expected`` is parse_expected()'s result: a key
    name that contains a colon is recognised exactly for the expected writer."""
    if not head.startswith(ENCRYPTED):
        return IDENTITY
    if expected and any(head.startswith(prefix) for prefix in expected[1]):
        return expected[0]
    match = _ENCRYPTED_PREFIX.match(head)
    if not match:
        return UNKNOWN
    return "%s:%s" % (match.group(1).decode("ascii"), match.group(2).decode("utf-8", "replace"))


def printable(key):
    return key.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class Auditor:
    def __init__(self, ctl, endpoints, page_size, expected=None):
        self.ctl = ctl
        self.endpoints = endpoints
        self.page_size = page_size
        self.expected = expected
        self.head = max([HEAD_BYTES] + [len(prefix) for prefix in (expected or ("", ()))[1]])
        self.revision = None
        self.pages = 0
        self.offenders = []
        self.offender_count = 0

    def get(self, start, end, limit):
        args = ["get", start, end, "--limit=%d" % limit, "-w", "json"]
        if self.revision is not None:
            args.append("--rev=%d" % self.revision)
        try:
            _rc, out, _err = self.ctl.run(self.endpoints, args)
        except EtcdError as exc:
            if "required revision has been compacted" in exc.result.get("stderr", ""):
                raise EtcdError("etcd compacted revision %d while the audit was reading it (the read took longer "
                                "than the apiserver's compaction interval): run the audit again"
                                % self.revision, **exc.result) from exc
            raise
        self.pages += 1
        page = parse_range(out)
        if self.revision is None:
            self.revision = page["revision"]
        return page, len(out)

    def scan(self, prefix):
        """Yield (key, first bytes of the value) for every key under ``prefix``, in key order."""
        end = prefix_range_end(prefix)
        start, last, limit = prefix, None, self.page_size
        while True:
            page, size = self.get(start, end, limit)
            kvs = page["kvs"]
            if last is not None and kvs and kvs[0][0] == last:
                kvs = kvs[1:]
            for key, value in kvs:
                yield key, value_head(value, self.head)
            if not page["more"]:
                return
            if not kvs:
                raise EtcdError("etcdctl get %s returned no new key while reporting more: giving up" % start)
            start = last = kvs[-1][0]
            per_value = size / max(1, len(page["kvs"]))
            limit = int(max(2, min(self.page_size, PAGE_BYTES // max(1.0, per_value))))

    def audit(self, prefix):
        writers = {}
        count = 0
        for key, head in self.scan(prefix):
            writer = classify(head, self.expected)
            writers[writer] = writers.get(writer, 0) + 1
            count += 1
            if self.expected and writer != self.expected[0]:
                self.offender_count += 1
                if len(self.offenders) < MAX_OFFENDERS:
                    self.offenders.append(dict(key=printable(key), writer=writer))
        return dict(prefix=prefix, count=count, writers=writers)


def run(module, ctl):
    params = module.params
    if params["page_size"] < 2:
        raise EtcdError("page_size must be at least 2, got %d" % params["page_size"])
    if not params["resources"]:
        raise EtcdError("resources is empty: name at least one resource, e.g. secrets")
    expected = parse_expected(params["expect_writer"]) if params.get("expect_writer") is not None else None
    prefixes = {}
    for resource in params["resources"]:
        prefixes.setdefault(resource, resource_prefix(resource, params["prefix"]))
    started = time.monotonic()
    auditor = Auditor(ctl, params["endpoints"], params["page_size"], expected)
    by_prefix = {}
    for resource, prefix in prefixes.items():
        if prefix not in by_prefix:  # ingresses.extensions and ingresses.networking.k8s.io share one prefix
            by_prefix[prefix] = auditor.audit(prefix)
            if not by_prefix[prefix]["count"]:
                module.warn("no object under %s (resource %s) at revision %s: check the resource name and the "
                            "prefix option" % (prefix, resource, auditor.revision))
    writers = {}
    for entry in by_prefix.values():
        for writer, count in entry["writers"].items():
            writers[writer] = writers.get(writer, 0) + count
    result = dict(
        changed=False,
        writers=writers,
        total=sum(entry["count"] for entry in by_prefix.values()),
        revision=auditor.revision,
        resources={resource: dict(by_prefix[prefix]) for resource, prefix in prefixes.items()},
        pages=auditor.pages,
        duration=round(time.monotonic() - started, 3),
    )
    if expected:
        result.update(offenders=auditor.offenders, offender_count=auditor.offender_count)
    return result


def offender_message(result, expected):
    listed = ", ".join("%s (%s)" % (entry["key"], entry["writer"]) for entry in result["offenders"])
    more = result["offender_count"] - len(result["offenders"])
    found = ", ".join("%s=%d" % item for item in sorted(result["writers"].items()))
    return "%d of %d objects in etcd are not stored by %s (writers at revision %d: %s): %s%s" % (
        result["offender_count"], result["total"], expected, result["revision"], found, listed,
        " and %d more" % more if more else "")


def main():
    argument_spec = dict(ETCD_CLIENT_ARGUMENT_SPEC)
    argument_spec.update(
        resources=dict(type="list", elements="str", default=["secrets"]),
        prefix=dict(type="str", default="/registry"),
        expect_writer=dict(type="str"),
        page_size=dict(type="int", default=500),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = run(module, EtcdCtl(module))
    except Exception as exc:  # every failure ends here, in the one fail_json of the module
        fail_from_error(module, exc, "etcd_encryption_audit")
    if result.get("offender_count"):
        module.fail_json(msg=offender_message(result, module.params["expect_writer"].strip()), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
