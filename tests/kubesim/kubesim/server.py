# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The simulated kube-apiserver process: TLS, authentication, routing, health, discovery.

Authentication follows https://kubernetes.io/docs/reference/access-authn-authz/authentication/:
X.509 client certs signed by --client-ca-file (CN = user, O = groups), bootstrap tokens
(https://kubernetes.io/docs/reference/access-authn-authz/bootstrap-tokens/, Secret
kube-system/bootstrap-token-<id>), anonymous requests only to /livez, /readyz, /healthz and /version
(the system:public-info-viewer role), plus GET kube-public/configmaps/cluster-info (kubeadm's
bootstrap-signer RBAC rule for token discovery). Authorization is "any authenticated user may do anything".
Health endpoints: https://kubernetes.io/docs/reference/using-api/health-checks/
/metrics (authenticated users only; anonymous gets 401): the encryption-config controller metrics, see metrics.py.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import DEFAULT_VERSION, proto
from . import resources as res
from .api import Api, load_body, parse_query
from .controllers import Controllers
from .etcd import EtcdClient, EtcdError
from .flags import parse_flags
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import EncryptionConfigMetrics
from .store import ApiError, Store
from .transformers import TransformerError, Transformers

LOG = logging.getLogger("kubesim.apiserver")

HEALTH_CHECKS = ["ping", "log", "etcd", "poststarthook/start-apiserver-admission-initializer",
                 "poststarthook/generic-apiserver-start-informers", "poststarthook/bootstrap-controller"]
READY_EXTRA = ["etcd-readiness", "informer-sync", "shutdown"]
JSON_MEDIA_TYPES = ("application/json", "application/yaml", "application/json-patch+json",
                    "application/merge-patch+json", "application/strategic-merge-patch+json",
                    "application/apply-patch+yaml")
PROTOBUF = "application/vnd.kubernetes.protobuf"
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")


def version_info(version):
    major, minor, _dummy = version.lstrip("v").split(".", 2)
    return {"major": major, "minor": minor, "emulationMajor": major, "emulationMinor": minor,
            "minCompatibilityMajor": major, "minCompatibilityMinor": str(max(0, int(minor) - 1)),
            "gitVersion": "v%s" % version.lstrip("v"), "gitCommit": "kubesim", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}


class ApiServer:
    """One simulated kube-apiserver replica."""

    def __init__(self, argv, version=DEFAULT_VERSION, controllers=True, reload_interval=1.0,
                 replacement_delay=1.0, node_monitor_grace_period=40.0):
        self.flags, self.ignored = parse_flags(argv)
        for name, value in sorted(self.ignored.items()):
            LOG.info("ignoring flag --%s=%s (not modelled by kubesim)", name, value)
        self.version = version.lstrip("v")
        self.etcd = EtcdClient(self.flags["etcd-servers"].split(","), self.flags["etcd-cafile"] or None,
                               self.flags["etcd-certfile"] or None, self.flags["etcd-keyfile"] or None)
        # /metrics: the encryption-config controller's families (kubesim/metrics.py).
        self.metrics = EncryptionConfigMetrics()
        self.transformers = Transformers(self.flags["encryption-provider-config"] or None,
                                         self.flags["encryption-provider-config-automatic-reload"] == "true",
                                         metrics=self.metrics)
        self.store = Store(self.etcd, self.transformers, self.flags["etcd-prefix"])
        self.api = Api(self.store, version_info(self.version))
        self.reload_interval = reload_interval
        # kube-controller-manager signs kubelet client certificates with the cluster CA (kubeadm:
        # --cluster-signing-key-file=/etc/kubernetes/pki/ca.key, next to the apiserver's --client-ca-file).
        signing = None
        if self.flags["client-ca-file"]:
            signing = (self.flags["client-ca-file"],
                       os.path.join(os.path.dirname(self.flags["client-ca-file"]), "ca.key"))
        self.controllers = Controllers(self.api, replacement_delay=replacement_delay,
                                       node_monitor_grace_period=node_monitor_grace_period,
                                       signing_files=signing) if controllers else None
        self.httpd = None
        self._stop = threading.Event()
        self._threads = []

    # --- lifecycle -------------------------------------------------------------------------------
    def ssl_context(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.flags["tls-cert-file"], self.flags["tls-private-key-file"])
        if self.flags["client-ca-file"]:
            context.load_verify_locations(self.flags["client-ca-file"])
            context.verify_mode = ssl.CERT_OPTIONAL
        context.set_alpn_protocols(["http/1.1"])
        return context

    def start(self):
        if not self.flags["tls-cert-file"]:
            raise ValueError("kubesim serves TLS only: give --tls-cert-file/--tls-private-key-file")
        address = self.flags["bind-address"]
        port = int(self.flags["secure-port"])
        handler = type("BoundHandler", (Handler,), {"apiserver": self})
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family,
                                                               "daemon_threads": True,
                                                               "allow_reuse_address": True})
        self.httpd = server_class((address, port), handler)
        self.httpd.socket = self.ssl_context().wrap_socket(self.httpd.socket, server_side=True,
                                                           do_handshake_on_connect=False)
        for attempt in range(30):
            try:
                self.api.ensure_system_namespaces()
                break
            except (EtcdError, ApiError) as exc:
                LOG.warning("waiting for etcd (%d/30): %s", attempt + 1, exc)
                time.sleep(1)
        self._spawn(self.httpd.serve_forever, "kubesim-http")
        if self.transformers.reload:
            self._spawn(self._reload_loop, "kubesim-encryption-reload")
        if self.controllers:
            self.controllers.start()
        LOG.info("kubesim apiserver v%s serving on https://%s:%d", self.version, address, self.port)
        return self

    @property
    def port(self):
        return self.httpd.server_address[1] if self.httpd else int(self.flags["secure-port"])

    def _spawn(self, target, name):
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _reload_loop(self):
        while not self._stop.wait(self.reload_interval):
            if self.transformers.maybe_reload():
                LOG.info("reloaded encryption provider config %s (%s)", self.transformers.path,
                         self.transformers.config_hash)

    def stop(self):
        self._stop.set()
        if self.controllers:
            self.controllers.stop()
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()

    # --- authentication --------------------------------------------------------------------------
    def authenticate(self, peercert, authorization):
        if peercert:
            subject = dict(item[0] for item in peercert.get("subject", ()))
            groups = [value for rdn in peercert.get("subject", ()) for key, value in rdn
                      if key == "organizationName"]
            return {"username": subject.get("commonName", ""), "groups": [*groups, "system:authenticated"]}
        if authorization.startswith("Bearer "):
            return self._bootstrap_token(authorization[len("Bearer "):].strip())
        return None

    def _bootstrap_token(self, token):
        match = TOKEN_RE.match(token)
        if not match or self.flags["enable-bootstrap-token-auth"] != "true":
            return None
        token_id, secret = match.groups()
        obj, _dummy = self.store.get_raw(res.BY_KIND[("", "Secret")], "kube-system", "bootstrap-token-" + token_id)
        if not obj or obj.get("type") != "bootstrap.kubernetes.io/token":
            return None
        data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        if data.get("token-secret") != secret or data.get("usage-bootstrap-authentication") != "true":
            return None
        expiration = data.get("expiration")
        if expiration:
            when = datetime.datetime.strptime(expiration.replace("Z", "+00:00"), "%Y-%m-%dT%H:%M:%S%z")
            if when < datetime.datetime.now(datetime.timezone.utc):
                return None
        extra = [g for g in data.get("auth-extra-groups", "").split(",") if g]
        return {"username": "system:bootstrap:" + token_id,
                "groups": ["system:bootstrappers", *extra, "system:authenticated"]}

    # --- health ----------------------------------------------------------------------------------
    def etcd_ok(self):
        try:
            self.etcd.status()
            return True, ""
        except EtcdError as exc:
            return False, str(exc)

    def health(self, kind, query, excluded=()):
        """/livez, /readyz, /healthz. ``excluded``: every ``exclude=`` value (repeatable, like the real
        apiserver). An excluded check is not run: excluding the etcd checks means no etcd round trip."""
        checks = [*HEALTH_CHECKS, *(READY_EXTRA if kind == "readyz" else [])]
        excluded = set(excluded)
        if any(c.startswith("etcd") and c not in excluded for c in checks):
            ok, _dummy = self.etcd_ok()
        else:
            ok = True
        lines, failed = [], False
        for check in checks:
            if check in excluded:
                lines.append("[+]%s excluded: ok" % check)
                continue
            good = ok or not check.startswith("etcd")
            failed = failed or not good
            lines.append("[+]%s ok" % check if good else "[-]%s failed: reason withheld" % check)
        lines.append("%s check %s" % (kind, "failed" if failed else "passed"))
        verbose = "verbose" in query
        if failed:
            return 500, "\n".join(lines) + "\n"
        return 200, ("\n".join(lines) + "\n") if verbose else "ok"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    apiserver: ApiServer = None
    server_version = "kubesim"

    def setup(self):
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            LOG.debug("TLS handshake failed: %s", exc)
            self.request.close()
            raise
        super().setup()

    def log_message(self, fmt, *args):
        LOG.debug("%s - %s", self.address_string(), fmt % args)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ssl.SSLError, ConnectionError, TimeoutError):
            self.close_connection = True

    # --- plumbing --------------------------------------------------------------------------------
    def _send(self, code, body, content_type="application/json"):
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        else:
            data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, exc):
        self._send(exc.code, exc.status())

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method):
        path, _dummy, raw_query = self.path.partition("?")
        query = parse_query(raw_query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            media = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
            if body and media == PROTOBUF:
                if os.environ.get("KUBESIM_DUMP_PROTOBUF"):
                    with open(os.environ["KUBESIM_DUMP_PROTOBUF"], "ab") as handle:
                        handle.write(b"%s %s %d\n" % (method.encode(), path.encode(), len(body)) + body + b"\n")
                try:
                    body = json.dumps(proto.decode(body)).encode()
                except proto.ProtoError as exc:
                    raise ApiError(415, "UnsupportedMediaType", str(exc)) from exc
            elif body and media not in JSON_MEDIA_TYPES:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                               "accepted media types include: %s" % ", ".join((*JSON_MEDIA_TYPES, PROTOBUF)))
            self._route(method, path.rstrip("/") or "/", query, body)
        except ApiError as exc:
            self._error(exc)
        except EtcdError as exc:
            LOG.warning("etcd: %s", exc)
            self._error(ApiError(500, "InternalError", "etcdserver: request timed out: %s" % exc))
        except TransformerError as exc:
            self._error(ApiError(500, "InternalError", "unable to transform key: %s" % exc))

    def _route(self, method, path, query, body):
        server = self.apiserver
        if path in ("/livez", "/readyz", "/healthz") or re.match(r"^/(livez|readyz|healthz)/", path):
            kind = path.split("/")[1]
            sub = path.split("/", 2)[2] if path.count("/") > 1 else ""
            if sub:
                ok, _dummy = server.etcd_ok()
                good = ok or not sub.startswith("etcd")
                return self._send(200 if good else 500, "ok" if good else "internal server error",
                                  "text/plain; charset=utf-8")
            # Every exclude= value counts (``query`` keeps only the last of a repeated parameter).
            excluded = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("exclude", [])
            code, text = server.health(kind, query, excluded)
            return self._send(code, text, "text/plain; charset=utf-8")
        user = server.authenticate(self.request.getpeercert(), self.headers.get("Authorization", ""))
        self.user = user
        if user is None:
            if path == "/version":
                return self._send(200, server.api.version_info)
            if method == "GET" and path == "/api/v1/namespaces/kube-public/configmaps/cluster-info":
                # kubeadm's RBAC lets system:anonymous read cluster-info for token discovery.
                return self._send(200, server.api.get(res.BY_KIND[("", "ConfigMap")], "kube-public", "cluster-info"))
            raise ApiError(401, "Unauthorized", "Unauthorized")
        if path == "/version":
            return self._send(200, server.api.version_info)
        if path == "/metrics":
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                               "resource")
            return self._send(200, server.metrics.render(), METRICS_CONTENT_TYPE)
        if path == "/api":
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "%s:%d" % (
                    server.flags["advertise-address"] or "127.0.0.1", server.port)}]})
        if path == "/apis":
            return self._send(200, res.api_group_list())
        if path == "/openapi/v3":
            return self._send(200, res.openapi_v3_root())
        if path.startswith("/openapi/v3/"):
            doc = res.openapi_v3_group_version(path[len("/openapi/v3/"):])
            if doc:
                return self._send(200, doc)
        if path == "/openapi/v2":
            return self._send(200, proto.openapi_v2_document(server.version),
                              "application/octet-stream")
        if path.startswith("/openapi/"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 2:
            group = parts[1]
            if len(parts) == 2:
                doc = res.api_group(group)
                if not doc:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                return self._send(200, doc)
            version, rest = parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            doc = res.resource_list(group, version)
            if not doc:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return self._send(200, doc)
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        resource = res.BY_PATH.get((group, version, rest[0]))
        if resource is None or (namespace is not None and not resource.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if len(rest) > 3 or (subresource and subresource not in resource.subresources):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return self._resource(method, resource, namespace, name, subresource, query, body)

    def _resource(self, method, resource, namespace, name, subresource, query, body):
        api = self.apiserver.api
        dry_run = query.get("dryRun") == "All"
        if name is None:
            if method == "GET":
                if query.get("watch") in ("1", "true"):
                    return self._watch(resource, namespace, query)
                revision, items = api.list(resource, namespace, query)
                if "as=Table" in self.headers.get("Accept", ""):
                    include = query.get("includeObject", "PartialObjectMetadata")
                    return self._send(200, res.to_table(resource, items, revision, include))
                return self._send(200, {"kind": resource.kind + "List", "apiVersion": resource.api_version,
                                        "metadata": {"resourceVersion": str(revision)}, "items": items})
            if method == "POST":
                obj = api.create(resource, namespace, load_body(body), dry_run, user=self.user)
                return self._send(201, obj)
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                           "resource")
        if subresource == "eviction":
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
            return self._send(201, api.evict(namespace, name, load_body(body), dry_run))
        if subresource == "scale":
            return self._send(200, api.scale(resource, namespace, name, method, self.headers.get("Content-Type"),
                                             load_body(body)))
        if method == "GET":
            obj = api.get(resource, namespace, name)
            if "as=Table" in self.headers.get("Accept", ""):
                return self._send(200, res.to_table(resource, [obj], obj["metadata"]["resourceVersion"],
                                                    query.get("includeObject", "PartialObjectMetadata")))
            return self._send(200, obj)
        if method == "PUT":
            return self._send(200, api.update(resource, namespace, name, load_body(body), subresource, dry_run))
        if method == "PATCH":
            return self._send(200, api.patch(resource, namespace, name, self.headers.get("Content-Type"),
                                             load_body(body), subresource, dry_run))
        if method == "DELETE":
            options = load_body(body) or {}
            if "gracePeriodSeconds" in query:
                options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            obj = api.delete(resource, namespace, name, options, dry_run)
            return self._send(200, obj)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _watch(self, resource, namespace, query):
        """Watch by polling etcd (the real apiserver uses an etcd watch; the event stream is the same)."""
        api = self.apiserver.api
        timeout = min(int(query.get("timeoutSeconds") or 300), 600)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        revision, items = api.list(resource, namespace, query)
        seen = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in items}
        since = int(query.get("resourceVersion") or 0)
        if not since or query.get("sendInitialEvents") == "true":
            for obj in items:
                self._chunk({"type": "ADDED", "object": obj})
        if query.get("sendInitialEvents") == "true":
            # WatchList (KEP-3157): a bookmark annotated k8s.io/initial-events-end closes the initial state;
            # client-go (kubectl delete/wait) waits for it.
            self._chunk({"type": "BOOKMARK", "object": {
                "kind": resource.kind, "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": str(revision), "annotations": {"k8s.io/initial-events-end": "true"}}}})
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and not self.apiserver._stop.is_set():
                time.sleep(0.3)
                _dummy, items = api.list(resource, namespace, query)
                current = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in items}
                for key, obj in current.items():
                    old = seen.get(key)
                    if old is None:
                        self._chunk({"type": "ADDED", "object": obj})
                    elif old["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
                        self._chunk({"type": "MODIFIED", "object": obj})
                for key, obj in seen.items():
                    if key not in current:
                        self._chunk({"type": "DELETED", "object": obj})
                seen = current
            self.wfile.write(b"0\r\n\r\n")
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        self.close_connection = True

    def _chunk(self, event):
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def run(argv, version=None):
    """Run until SIGTERM/SIGINT."""
    import signal

    server = ApiServer(argv, version=version or os.environ.get("KUBESIM_VERSION", DEFAULT_VERSION)).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    while not stop.wait(1):
        pass
    server.stop()
