# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A minimal etcd v3 client over the JSON gRPC gateway (etcd 3.4: /v3/kv/*), stdlib only.

Keys and values travel base64-encoded; int64 fields come back as JSON strings.
Reference: https://etcd.io/docs/v3.4/dev-guide/api_grpc_gateway/
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request


class EtcdError(Exception):
    """etcd could not be reached or refused the request."""


def _b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def _unb64(text):
    return base64.b64decode(text or "")


def prefix_end(prefix):
    """The range_end that selects every key starting with ``prefix`` (etcd's clientv3.GetPrefixRangeEnd)."""
    data = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    for i in range(len(data) - 1, -1, -1):
        if data[i] < 0xFF:
            data[i] += 1
            return bytes(data[: i + 1])
    return b"\0"


class KeyValue:
    __slots__ = ("create_revision", "key", "mod_revision", "value")

    def __init__(self, raw):
        self.key = _unb64(raw.get("key")).decode()
        self.value = _unb64(raw.get("value"))
        self.mod_revision = int(raw.get("mod_revision", 0))
        self.create_revision = int(raw.get("create_revision", 0))


class EtcdClient:
    """Talks to the first reachable endpoint of ``endpoints`` (like --etcd-servers)."""

    def __init__(self, endpoints, cafile=None, certfile=None, keyfile=None, timeout=5.0):
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._context = None
        if any(e.startswith("https://") for e in self.endpoints):
            self._context = ssl.create_default_context(cafile=cafile)
            if certfile:
                self._context.load_cert_chain(certfile, keyfile)
        self._preferred = 0

    def _call(self, path, body):
        data = json.dumps(body).encode()
        errors = []
        count = len(self.endpoints)
        for step in range(count):
            index = (self._preferred + step) % count
            url = self.endpoints[index].rstrip("/") + path
            request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as response:
                    self._preferred = index
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")
                raise EtcdError("etcd %s %s: HTTP %s %s" % (url, path, exc.code, detail)) from exc
            except (OSError, ValueError) as exc:
                errors.append("%s: %s" % (url, exc))
        raise EtcdError("no etcd endpoint answered: " + "; ".join(errors))

    # --- KV -------------------------------------------------------------------------------------
    def get(self, key):
        """Return the KeyValue at ``key`` or None."""
        result = self._call("/v3/kv/range", {"key": _b64(key)})
        kvs = result.get("kvs") or []
        return KeyValue(kvs[0]) if kvs else None

    def list(self, prefix):
        """Return (revision, [KeyValue]) for every key under ``prefix``."""
        result = self._call("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
        revision = int(result.get("header", {}).get("revision", 0))
        return revision, [KeyValue(kv) for kv in result.get("kvs") or []]

    def revision(self):
        result = self._call("/v3/kv/range", {"key": _b64("/registry/health"), "count_only": True})
        return int(result.get("header", {}).get("revision", 0))

    def put(self, key, value):
        result = self._call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
        return int(result.get("header", {}).get("revision", 0))

    def txn(self, compare, success, failure=()):
        """Raw transaction; returns (succeeded, revision, responses)."""
        body = {"compare": list(compare), "success": list(success), "failure": list(failure)}
        result = self._call("/v3/kv/txn", body)
        return (bool(result.get("succeeded")), int(result.get("header", {}).get("revision", 0)),
                result.get("responses") or [])

    # Building blocks for txn (field names from etcdserverpb, as the gateway spells them).
    @staticmethod
    def cmp_mod_revision(key, revision):
        """Compare that ``key`` was last modified at ``revision`` (0 = key absent)."""
        return {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}

    @staticmethod
    def op_put(key, value):
        return {"request_put": {"key": _b64(key), "value": _b64(value)}}

    @staticmethod
    def op_delete(key):
        return {"request_delete_range": {"key": _b64(key)}}

    def create(self, key, value):
        """Put only if absent; returns the new revision or None when the key exists."""
        ok, revision, _dummy = self.txn([self.cmp_mod_revision(key, 0)], [self.op_put(key, value)])
        return revision if ok else None

    def update(self, key, value, expected_revision):
        """Put only if unchanged since ``expected_revision``; returns the new revision or None."""
        ok, revision, _dummy = self.txn([self.cmp_mod_revision(key, expected_revision)], [self.op_put(key, value)])
        return revision if ok else None

    def delete(self, key, expected_revision=None):
        """Delete ``key`` (only if unchanged when ``expected_revision`` is given); True when deleted."""
        if expected_revision is None:
            result = self._call("/v3/kv/deleterange", {"key": _b64(key)})
            return int(result.get("deleted", 0)) > 0
        ok, _dummy, _dummy2 = self.txn([self.cmp_mod_revision(key, expected_revision)], [self.op_delete(key)])
        return ok

    def status(self):
        """Maintenance status of the current endpoint (used by /readyz)."""
        return self._call("/v3/maintenance/status", {})
