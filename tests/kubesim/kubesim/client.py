# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tiny REST client for the kubeadm/kubelet shims: kubeconfig (client cert or token) -> JSON requests."""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import time
import urllib.error
import urllib.request

import yaml


class ClientError(Exception):
    def __init__(self, code, body):
        super().__init__("HTTP %s: %s" % (code, body))
        self.code = code
        self.body = body


class Client:
    def __init__(self, server, ca_pem=None, cert_pem=None, key_pem=None, token=None, insecure=False, timeout=10,
                 retry_seconds=0):
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        # Like kubeadm's API calls (timeouts.kubernetesAPICall): connection errors and 5xx answers are
        # retried for this long, e.g. while a load balancer in front has no healthy backend yet.
        self.retry_seconds = retry_seconds
        self.context = ssl.create_default_context()
        if insecure:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        elif ca_pem:
            self.context.load_verify_locations(cadata=ca_pem.decode() if isinstance(ca_pem, bytes) else ca_pem)
        if cert_pem:
            with tempfile.TemporaryDirectory() as tmp:
                cert, key = os.path.join(tmp, "c"), os.path.join(tmp, "k")
                with open(cert, "wb") as handle:
                    handle.write(cert_pem)
                with open(key, "wb") as handle:
                    handle.write(key_pem)
                self.context.load_cert_chain(cert, key)

    @classmethod
    def from_kubeconfig(cls, path, **kwargs):
        with open(path) as handle:
            config = yaml.safe_load(handle)
        context_name = config.get("current-context")
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])

        def data(entry, key):
            if entry.get(key + "-data"):
                return base64.b64decode(entry[key + "-data"])
            if entry.get(key):
                with open(entry[key], "rb") as handle:
                    return handle.read()
            return None

        return cls(cluster["server"], data(cluster, "certificate-authority"), data(user, "client-certificate"),
                   data(user, "client-key"), user.get("token"), **kwargs)

    def request(self, method, path, body=None, content_type="application/json"):
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                return self._request(method, path, body, content_type)
            except ClientError as exc:
                if exc.code < 500 or time.monotonic() >= deadline:
                    raise
            except OSError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(0.5)

    def _request(self, method, path, body, content_type):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        request = urllib.request.Request(self.server + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ClientError(exc.code, exc.read().decode(errors="replace")) from exc
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode()

    def get(self, path):
        return self.request("GET", path)

    def apply(self, path, name, body):
        """Create, or replace when it exists (what kubeadm's apiclient.CreateOrUpdate does)."""
        try:
            return self.request("POST", path, body)
        except ClientError as exc:
            if exc.code != 409:
                raise
        current = self.get("%s/%s" % (path, name))
        body.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self.request("PUT", "%s/%s" % (path, name), body)


def kubeconfig_text(server, ca_pem, user, cert_pem=None, key_pem=None, token=None, cluster="kubernetes"):
    def b64(raw):
        return base64.b64encode(raw).decode()

    if token:
        user_entry = {"token": token}
    else:
        user_entry = {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}
    config = {"apiVersion": "v1", "kind": "Config",
              "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
              "contexts": [{"name": "%s@%s" % (user, cluster), "context": {"cluster": cluster, "user": user}}],
              "current-context": "%s@%s" % (user, cluster), "preferences": {},
              "users": [{"name": user, "user": user_entry}]}
    return yaml.safe_dump(config, sort_keys=False)
