# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Object storage in etcd, laid out like kube-apiserver: <prefix>/<resource>/<namespace>/<name>.

The real apiserver stores protobuf; kubesim stores JSON (documented difference). resourceVersion is
the etcd mod_revision of the key, and list resourceVersion is the etcd header revision, exactly as in
k8s.io/apiserver/pkg/storage/etcd3. Updates are compare-and-swap on mod_revision (optimistic concurrency).

An update that leaves the stored bytes unchanged is not written (no new etcd revision, the object keeps its
resourceVersion), unless the stored value is stale: read with a provider or key other than the current write
key, or plaintext under an encrypting provider. Then it is written again, encrypted with the current key
(GuaranteedUpdate in etcd3/store.go). This is what makes `kubectl replace` / k8s_storage_rewrite re-encrypt
after a key rotation and do nothing on a second run.
"""

from __future__ import annotations

import json

from .etcd import EtcdClient


class ApiError(Exception):
    """An error the apiserver answers with a Status object."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self):
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
                "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


def not_found(resource, name):
    group = {"group": resource.group} if resource.group else {}
    return ApiError(404, "NotFound", '%s "%s" not found' % (_qualified(resource), name),
                    dict(name=name, kind=resource.name, **group))


def conflict(resource, name):
    group = {"group": resource.group} if resource.group else {}
    return ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has been modified; please '
                    "apply your changes to the latest version and try again" % (_qualified(resource), name),
                    dict(name=name, kind=resource.name, **group))


def already_exists(resource, name):
    group = {"group": resource.group} if resource.group else {}
    return ApiError(409, "AlreadyExists", '%s "%s" already exists' % (_qualified(resource), name),
                    dict(name=name, kind=resource.name, **group))


def _qualified(resource):
    return "%s.%s" % (resource.name, resource.group) if resource.group else resource.name


class ObjState:
    """An object as read from etcd: the decoded object, its mod_revision, the decrypted bytes, and whether the
    value was read with a provider or key other than the current write key (etcd3 store.go objState)."""

    __slots__ = ("data", "obj", "revision", "stale")

    def __init__(self, obj, revision, data, stale):
        self.obj = obj
        self.revision = revision
        self.data = data
        self.stale = stale


class Store:
    def __init__(self, etcd: EtcdClient, transformers, prefix="/registry"):
        self.etcd = etcd
        self.transformers = transformers
        self.prefix = prefix.rstrip("/")

    def key(self, resource, namespace, name):
        if resource.namespaced:
            return "%s/%s/%s/%s" % (self.prefix, resource.etcd_name, namespace, name)
        return "%s/%s/%s" % (self.prefix, resource.etcd_name, name)

    def list_prefix(self, resource, namespace=None):
        if resource.namespaced and namespace:
            return "%s/%s/%s/" % (self.prefix, resource.etcd_name, namespace)
        return "%s/%s/" % (self.prefix, resource.etcd_name)

    @staticmethod
    def serialize(obj):
        """The plaintext bytes stored for ``obj`` (resourceVersion is never stored)."""
        return json.dumps(_without_rv(obj), sort_keys=True, separators=(",", ":")).encode()

    def encode(self, resource, key, obj):
        return self.transformers.for_resource(resource.name, resource.group).to_storage(self.serialize(obj), key)

    def decode(self, resource, kv):
        return self.read_kv(resource, kv).obj

    def read_kv(self, resource, kv):
        """The ObjState of a KeyValue: decrypted bytes, whether they are stale, and the decoded object."""
        data, stale = self.transformers.for_resource(resource.name, resource.group).read(kv.value, kv.key)
        obj = json.loads(data)
        obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
        obj["apiVersion"] = resource.api_version
        obj["kind"] = resource.kind
        return ObjState(obj, kv.mod_revision, data, stale)

    def read(self, resource, namespace, name):
        """The stored state of one object (for a later ``update(..., orig=state)``), or None."""
        kv = self.etcd.get(self.key(resource, namespace, name))
        return self.read_kv(resource, kv) if kv else None

    def get_raw(self, resource, namespace, name):
        state = self.read(resource, namespace, name)
        return (state.obj, state.revision) if state else (None, 0)

    def get(self, resource, namespace, name):
        obj, _dummy = self.get_raw(resource, namespace, name)
        if obj is None:
            raise not_found(resource, name)
        return obj

    def list(self, resource, namespace=None):
        revision, kvs = self.etcd.list(self.list_prefix(resource, namespace))
        return revision, [self.decode(resource, kv) for kv in kvs]

    def create(self, resource, obj):
        meta = obj["metadata"]
        key = self.key(resource, meta.get("namespace"), meta["name"])
        revision = self.etcd.create(key, self.encode(resource, key, obj))
        if revision is None:
            raise already_exists(resource, meta["name"])
        meta["resourceVersion"] = str(revision)
        return obj

    def update(self, resource, obj, expected_revision, orig=None):
        """Store ``obj`` if the object is still at ``expected_revision`` (409 Conflict otherwise).

        ``orig`` is the ObjState the caller read at that revision; without it the current state is read first.
        Unchanged bytes that are not stale are not written: ``obj`` comes back with the stored resourceVersion.
        """
        meta = obj["metadata"]
        key = self.key(resource, meta.get("namespace"), meta["name"])
        data = self.serialize(obj)
        if orig is None or orig.revision != expected_revision:
            kv = self.etcd.get(key)
            orig = self.read_kv(resource, kv) if kv else None
            if orig is None or orig.revision != expected_revision:
                raise conflict(resource, meta["name"])
        if not orig.stale and data == orig.data:
            meta["resourceVersion"] = str(orig.revision)
            return obj
        stored = self.transformers.for_resource(resource.name, resource.group).to_storage(data, key)
        revision = self.etcd.update(key, stored, expected_revision)
        if revision is None:
            raise conflict(resource, meta["name"])
        meta["resourceVersion"] = str(revision)
        return obj

    def delete(self, resource, obj, expected_revision=None):
        meta = obj["metadata"]
        key = self.key(resource, meta.get("namespace"), meta["name"])
        if not self.etcd.delete(key, expected_revision):
            if expected_revision is not None:
                raise conflict(resource, meta["name"])
            raise not_found(resource, meta["name"])


def _without_rv(obj):
    copy = dict(obj)
    meta = dict(copy.get("metadata", {}))
    meta.pop("resourceVersion", None)
    copy["metadata"] = meta
    return copy
