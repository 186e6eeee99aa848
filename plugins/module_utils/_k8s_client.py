# -*- coding: utf-8 -*-
# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the baremetal.kubernetes collection, hence the leading underscore of the file name: not a public
# API, it may change in any release. Other collections and standalone plugins or modules must not import it.
"""A small Kubernetes REST client for modules that run on cluster nodes.

It needs nothing beyond the Python standard library and ``ansible.module_utils``: no ``kubernetes``
client, no ``requests``, and not even PyYAML (a kubeconfig is YAML; when PyYAML is missing a strict
parser for the block-YAML subset that kubeconfig writers emit is used, and anything outside that
subset is refused with a clear error instead of being guessed at).

* ``load_kubeconfig()`` resolves the current (or a named) context into server, CA, client
  certificate/key (embedded ``*-data`` or file paths, relative to the kubeconfig) and token.
* ``K8sClient`` speaks HTTPS through ``ansible.module_utils.urls.Request``. Embedded certificate data
  is written to 0600 temporary files that ``close()`` removes. Error responses become ``K8sApiError``
  carrying the ``Status`` code/reason/message; 429 and 5xx (and connection failures) are retried a
  bounded number of times with exponential backoff that honours ``Retry-After``, inside an optional
  overall deadline. ``server=`` overrides the kubeconfig's server, e.g. to probe one apiserver directly.
* The HTTP exchange itself is the single method ``K8sClient._transport``; unit tests replace it.
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import json
import os
import re
import socket
import ssl
import tempfile
import time
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode

from ansible.module_utils.urls import Request

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - depends on the target
    HAS_YAML = False

RETRY_STATUSES = (429, 500, 502, 503, 504)
DEFAULT_KUBECONFIG = "/etc/kubernetes/admin.conf"

KUBECONFIG_ARGUMENT_SPEC = dict(
    kubeconfig=dict(type="path", default=DEFAULT_KUBECONFIG),
    context=dict(type="str"),
    api_server=dict(type="str"),
    validate_certs=dict(type="bool", default=True),
    request_timeout=dict(type="int", default=10),
)


class KubeConfigError(Exception):
    """The kubeconfig cannot be read or does not describe a usable cluster/user."""


class K8sApiError(Exception):
    """A failed API call: the HTTP code and, when the server sent one, its ``Status``.

    ``code`` is None for transport failures (connection refused, TLS, timeout).
    """

    def __init__(self, message, code=None, reason=None, status=None, method=None, path=None, retry_after=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.status = status or {}
        self.method = method
        self.path = path
        self.retry_after = retry_after

    @property
    def causes(self):
        """``details.causes`` of the Status (e.g. the DisruptionBudget cause of an eviction 429)."""
        return (self.status.get("details") or {}).get("causes") or []

    def __str__(self):
        where = "%s %s: " % (self.method, self.path) if self.method else ""
        code = "HTTP %s %s: " % (self.code, self.reason or "") if self.code else ""
        return "%s%s%s" % (where, code, self.message)


# The failures of talking to the cluster: a module reports them with their traceback (fail_from_error's expected).
CLIENT_ERRORS = (KubeConfigError, K8sApiError)


def parse_status(code, body, fallback_reason=None):
    """Turn an error response into (reason, message, status_dict).

    The apiserver answers errors with a ``Status`` object; proxies and load balancers answer with
    text or HTML. Both give a usable message.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    status = {}
    try:
        parsed = json.loads(text) if text.strip() else {}
        if isinstance(parsed, dict) and parsed.get("kind") == "Status":
            status = parsed
    except ValueError:
        pass
    if status:
        reason = status.get("reason") or fallback_reason or ""
        message = status.get("message") or reason or "HTTP %s" % code
    else:
        reason = fallback_reason or ""
        snippet = " ".join(text.split())[:300]
        message = snippet or reason or "HTTP %s" % code
    return reason, message, status


def parse_retry_after(value):
    """Seconds from a Retry-After header (delta-seconds form only), or None."""
    if value is None:
        return None
    try:
        seconds = float(str(value).strip())
    except ValueError:
        return None
    return max(0.0, seconds)


def backoff_delay(attempt, base=0.5, cap=8.0, retry_after=None):
    """Delay before retry number ``attempt`` (1-based): base * 2**(attempt-1), capped.

    A server's Retry-After is honoured as a lower bound, but never beyond ``cap`` so a bad header
    cannot stall a module.
    """
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    if retry_after is not None:
        delay = max(delay, min(cap, retry_after))
    return delay


# ---------------------------------------------------------------------------------------------
# kubeconfig


_SCALAR_SPECIAL = {"null": None, "~": None, "": None, "true": True, "false": False}


def _yaml_scalar(text, lineno):
    text = text.strip()
    if text.startswith('"'):
        if len(text) < 2 or not text.endswith('"'):
            raise KubeConfigError("line %d: unterminated double-quoted string" % lineno)
        try:
            return json.loads(text)
        except ValueError:
            raise KubeConfigError("line %d: unsupported escape in a double-quoted string" % lineno) from None
    if text.startswith("'"):
        if len(text) < 2 or not text.endswith("'"):
            raise KubeConfigError("line %d: unterminated single-quoted string" % lineno)
        return text[1:-1].replace("''", "'")
    if text in ("{}", "[]"):
        return {} if text == "{}" else []
    if text[:1] in ("{", "[", "&", "*", "|", ">", "!", "%", "@", "`"):
        raise KubeConfigError("line %d: YAML feature not supported without PyYAML: %r" % (lineno, text[:20]))
    if " #" in text:
        text = text.split(" #", 1)[0].rstrip()
    if text.lower() in _SCALAR_SPECIAL:
        return _SCALAR_SPECIAL[text.lower()]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _split_key(text, lineno):
    """'key: value' -> (key, value text); the key may be quoted."""
    if text[:1] in ('"', "'"):
        quote_char = text[0]
        end = text.find(quote_char, 1)
        if end < 0 or text[end + 1:end + 2] != ":":
            raise KubeConfigError("line %d: cannot parse key in %r" % (lineno, text[:40]))
        return text[1:end], text[end + 2:]
    match = re.match(r"^([^:#]+?):(?:\s+|$)(.*)$", text)
    if not match:
        raise KubeConfigError("line %d: expected 'key: value', got %r" % (lineno, text[:40]))
    return match.group(1), match.group(2)


def parse_simple_yaml(text):
    """Parse the block-YAML subset kubeconfig writers produce (client-go, kubeadm, kubectl).

    Supported: nested mappings, sequences (of mappings or scalars), plain/quoted scalars, ``{}``,
    ``[]``, comments and a leading ``---``. Anything else (anchors, flow collections with content,
    multi-line scalars) raises KubeConfigError: the caller should then install PyYAML.
    """
    lines = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#") or stripped in ("---", "..."):
            continue
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise KubeConfigError("line %d: tab in indentation" % lineno)
        lines.append((len(raw) - len(raw.lstrip(" ")), stripped, lineno))

    pos = [0]

    def parse_block(indent):
        if pos[0] >= len(lines):
            return None
        if lines[pos[0]][1].startswith("- ") or lines[pos[0]][1] == "-":
            return parse_seq(indent)
        return parse_map(indent)

    def parse_value(rest, lineno, parent_indent):
        if rest.strip() == "" or rest.strip().startswith("#"):
            if pos[0] < len(lines):
                child_indent = lines[pos[0]][0]
                child_is_seq = lines[pos[0]][1].startswith("- ") or lines[pos[0]][1] == "-"
                if child_indent > parent_indent or (child_indent == parent_indent and child_is_seq):
                    return parse_block(child_indent)
            return None
        return _yaml_scalar(rest, lineno)

    def parse_map(indent):
        result = {}
        while pos[0] < len(lines):
            ind, content, lineno = lines[pos[0]]
            if ind < indent:
                break
            if ind > indent:
                raise KubeConfigError("line %d: unexpected indentation" % lineno)
            if content.startswith("- "):
                break
            key, rest = _split_key(content, lineno)
            pos[0] += 1
            result[key] = parse_value(rest, lineno, indent)
        return result

    def parse_seq(indent):
        result = []
        while pos[0] < len(lines):
            ind, content, lineno = lines[pos[0]]
            if ind < indent or not (content.startswith("- ") or content == "-"):
                if ind > indent:
                    raise KubeConfigError("line %d: unexpected indentation" % lineno)
                break
            if ind > indent:
                raise KubeConfigError("line %d: unexpected indentation" % lineno)
            item = content[1:].lstrip()
            item_indent = ind + (len(content) - len(item))
            if not item:
                pos[0] += 1
                result.append(parse_value("", lineno, ind))
            elif re.match(r"^(\"[^\"]*\"|'[^']*'|[^:#\"'{\[]+?):(\s|$)", item):
                # "- key: value" starts a mapping whose keys are aligned with `key`.
                lines[pos[0]] = (item_indent, item, lineno)
                result.append(parse_map(item_indent))
            else:
                pos[0] += 1
                result.append(_yaml_scalar(item, lineno))
        return result

    if not lines:
        return {}
    value = parse_block(lines[0][0])
    if pos[0] != len(lines):
        raise KubeConfigError("line %d: unexpected content" % lines[pos[0]][2])
    return value


def parse_kubeconfig_text(text):
    """Parse kubeconfig text (YAML or JSON) into a dict."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise KubeConfigError("invalid JSON: %s" % exc) from None
    elif HAS_YAML:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise KubeConfigError("invalid YAML: %s" % exc) from None
    else:
        data = parse_simple_yaml(text)
    if not isinstance(data, dict):
        raise KubeConfigError("the top level is not a mapping")
    return data


def _named(items, name, kind):
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item.get(kind) or {}
    return None


def load_kubeconfig(path, context=None, text=None):
    """Resolve a kubeconfig into a flat dict.

    Keys: server, ca_file, ca_data, cert_file, cert_data, key_file, key_data, token, insecure,
    context, cluster, user. ``*_data`` are decoded bytes; ``*_file`` paths are made absolute relative
    to the kubeconfig's directory, as kubectl does.
    """
    if text is None:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise KubeConfigError("cannot read kubeconfig %s: %s" % (path, exc)) from None
    try:
        data = parse_kubeconfig_text(text)
    except KubeConfigError as exc:
        raise KubeConfigError("kubeconfig %s: %s" % (path, exc)) from None

    ctx_name = context or data.get("current-context")
    if not ctx_name:
        raise KubeConfigError("kubeconfig %s has no current-context; set the context option" % path)
    ctx = _named(data.get("contexts"), ctx_name, "context")
    if ctx is None:
        names = [c.get("name") for c in data.get("contexts") or [] if isinstance(c, dict)]
        raise KubeConfigError("kubeconfig %s has no context %r (contexts: %s)" % (path, ctx_name, ", ".join(names)))
    cluster = _named(data.get("clusters"), ctx.get("cluster"), "cluster")
    if not cluster or not cluster.get("server"):
        raise KubeConfigError("kubeconfig %s: context %r names cluster %r, which is missing or has no server"
                              % (path, ctx_name, ctx.get("cluster")))
    user = _named(data.get("users"), ctx.get("user"), "user") or {}
    base_dir = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()

    def file_path(value):
        return os.path.join(base_dir, os.path.expanduser(value)) if value else None

    def data_bytes(value, what):
        if not value:
            return None
        try:
            return base64.b64decode(value, validate=False)
        except (ValueError, TypeError):
            raise KubeConfigError("kubeconfig %s: %s is not valid base64" % (path, what)) from None

    token = user.get("token")
    if not token and user.get("tokenFile"):
        try:
            with open(file_path(user["tokenFile"]), encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise KubeConfigError("kubeconfig %s: cannot read tokenFile: %s" % (path, exc)) from None
    has_credentials = token or user.get("client-certificate") or user.get("client-certificate-data")
    if (user.get("exec") or user.get("auth-provider")) and not has_credentials:
        raise KubeConfigError("kubeconfig %s: user %r uses an exec/auth-provider plugin, which this client "
                              "does not run; use a kubeconfig with a client certificate or token "
                              "(e.g. /etc/kubernetes/admin.conf)" % (path, ctx.get("user")))
    return dict(
        server=str(cluster["server"]).rstrip("/"),
        ca_file=file_path(cluster.get("certificate-authority")),
        ca_data=data_bytes(cluster.get("certificate-authority-data"), "certificate-authority-data"),
        cert_file=file_path(user.get("client-certificate")),
        cert_data=data_bytes(user.get("client-certificate-data"), "client-certificate-data"),
        key_file=file_path(user.get("client-key")),
        key_data=data_bytes(user.get("client-key-data"), "client-key-data"),
        token=token or None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        context=ctx_name,
        cluster=ctx.get("cluster"),
        user=ctx.get("user"),
    )


# ---------------------------------------------------------------------------------------------
# client


class K8sClient:
    """Kubernetes REST client. Use as a context manager (or call close()) to remove temp files."""

    def __init__(self, server, ca_file=None, ca_data=None, cert_file=None, cert_data=None, key_file=None,
                 key_data=None, token=None, validate_certs=True, timeout=10, retries=4, backoff=0.5,
                 max_backoff=8.0, sleep=time.sleep, clock=time.monotonic, insecure=False, **_ignored):
        self.server = str(server).rstrip("/")
        self.token = token
        self.validate_certs = bool(validate_certs) and not insecure
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.clock = clock
        self._temp_files = []
        self.ca_path = ca_file or self._temp_file(ca_data, "ca")
        self.client_cert = cert_file or self._temp_file(cert_data, "cert")
        self.client_key = key_file or self._temp_file(key_data, "key")

    @classmethod
    def from_kubeconfig(cls, path, context=None, server=None, **kwargs):
        """A client for the kubeconfig's context; ``server`` replaces the kubeconfig's server URL."""
        config = load_kubeconfig(path, context=context)
        if server:
            config["server"] = normalize_server(server)
        config.update(kwargs)
        return cls(**config)

    @classmethod
    def from_module(cls, module, server=None, **kwargs):
        """A client from the KUBECONFIG_ARGUMENT_SPEC options of a module."""
        params = module.params
        return cls.from_kubeconfig(
            params["kubeconfig"], context=params.get("context"), server=server or params.get("api_server"),
            validate_certs=params.get("validate_certs", True), timeout=params.get("request_timeout") or 10, **kwargs)

    def with_server(self, server, **overrides):
        """Another client with the same credentials but a different server (shares no temp files)."""
        other = K8sClient.__new__(K8sClient)
        other.__dict__.update(self.__dict__)
        other.server = normalize_server(server)
        other._temp_files = []
        other.__dict__.update(overrides)
        return other

    def _temp_file(self, data, what):
        if not data:
            return None
        fd, path = tempfile.mkstemp(prefix="k8s-client-%s-" % what)  # mkstemp creates it 0600
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
        finally:
            os.close(fd)
        self._temp_files.append(path)
        return path

    def close(self):
        while self._temp_files:
            path = self._temp_files.pop()
            with contextlib.suppress(OSError):
                os.unlink(path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the one place that talks HTTP (replaced in unit tests) --------------------------------
    def _transport(self, method, url, data, headers, timeout):
        """Perform one HTTP exchange. Returns (status, headers dict, body bytes).

        HTTP error statuses are returned, not raised; transport failures raise K8sApiError(code=None).
        """
        request = Request(headers=headers, timeout=timeout, validate_certs=self.validate_certs,
                          follow_redirects="none", use_proxy=False)
        try:
            response = request.open(method, url, data=data, client_cert=self.client_cert,
                                    client_key=self.client_key, ca_path=self.ca_path)
            return response.getcode(), dict(response.headers.items()), response.read()
        except HTTPError as exc:
            try:
                body = exc.read()
            except Exception:  # a broken error body must not hide the status code
                body = b""
            return exc.code, dict(exc.headers.items()) if exc.headers else {}, body
        except (URLError, socket.timeout, ssl.SSLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise K8sApiError("cannot reach %s: %s" % (self.server, reason), method=method, path=url) from None

    # -- requests -----------------------------------------------------------------------------
    def _headers(self, accept="application/json"):
        headers = {"Accept": accept, "User-Agent": "baremetal.kubernetes"}
        if self.token:
            headers["Authorization"] = "Bearer %s" % self.token
        return headers

    def url(self, path, query=None):
        url = self.server + path
        if query:
            pairs = [(k, v) for k, v in query.items() if v is not None and v != ""]
            if pairs:
                url += ("&" if "?" in url else "?") + urlencode(pairs)
        return url

    def raw(self, method, path, body=None, query=None, content_type="application/json", retry_on=RETRY_STATUSES,
            retries=None, deadline=None, timeout=None, accept="application/json"):
        """One API call with bounded retries. Returns (status, headers, body bytes) on 2xx.

        Raises K8sApiError for any other status once retries are exhausted. ``deadline`` (a
        ``clock()`` value) stops retrying early; ``retries`` overrides the client's default.
        """
        retries = self.retries if retries is None else retries
        headers = self._headers(accept)
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
            headers["Content-Type"] = content_type
        url = self.url(path, query)
        attempt = 0
        while True:
            attempt += 1
            request_timeout = timeout or self.timeout
            if deadline is not None:
                request_timeout = max(1, min(request_timeout, deadline - self.clock()))
            error = None
            try:
                status, resp_headers, resp_body = self._transport(method, url, data, headers, request_timeout)
            except K8sApiError as exc:
                exc.method, exc.path = method, path
                error = exc
            else:
                if 200 <= status < 300:
                    return status, resp_headers, resp_body
                lower = {str(k).lower(): v for k, v in (resp_headers or {}).items()}
                reason, message, status_obj = parse_status(status, resp_body)
                retry_after = parse_retry_after(lower.get("retry-after"))
                if retry_after is None:
                    details = status_obj.get("details") or {}
                    if details.get("retryAfterSeconds"):
                        retry_after = float(details["retryAfterSeconds"])
                error = K8sApiError(message, code=status, reason=reason, status=status_obj, method=method,
                                    path=path, retry_after=retry_after)
            retryable = error.code is None or error.code in (retry_on or ())
            if not retryable or attempt > retries:
                raise error
            delay = backoff_delay(attempt, self.backoff, self.max_backoff, error.retry_after)
            if deadline is not None and self.clock() + delay >= deadline:
                raise error
            self.sleep(delay)

    def request(self, method, path, body=None, query=None, **kwargs):
        """An API call returning the decoded JSON body (None for an empty body)."""
        _status, _headers, payload = self.raw(method, path, body=body, query=query, **kwargs)
        if not payload:
            return None
        try:
            return json.loads(payload.decode("utf-8"))
        except ValueError:
            raise K8sApiError("the server answered %s %s with something that is not JSON: %r"
                              % (method, path, payload[:200]), method=method, path=path) from None

    def get(self, path, query=None, **kwargs):
        return self.request("GET", path, query=query, **kwargs)

    def list_all(self, path, query=None, limit=500, **kwargs):
        """GET a list, following ``continue`` tokens; returns the items."""
        items = []
        query = dict(query or {})
        query["limit"] = limit
        while True:
            result = self.get(path, query=query, **kwargs) or {}
            items.extend(result.get("items") or [])
            token = (result.get("metadata") or {}).get("continue")
            if not token:
                return items
            query["continue"] = token

    def patch(self, path, body, patch_type="merge", **kwargs):
        content_type = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
        }[patch_type]
        return self.request("PATCH", path, body=body, content_type=content_type, **kwargs)

    def probe(self, path, timeout=None):
        """A health endpoint (/readyz, /livez): (status code, full text). Any status is returned; no retry.

        Transport failures raise K8sApiError(code=None).
        """
        headers = self._headers("text/plain, */*")
        try:
            status, _headers, body = self._transport("GET", self.url(path), None, headers, timeout or self.timeout)
        except K8sApiError as exc:
            exc.method, exc.path = "GET", path
            raise
        return status, (body or b"").decode("utf-8", "replace")


def normalize_server(server):
    """'10.0.0.1' -> 'https://10.0.0.1:6443'; '10.0.0.1:8443' -> 'https://10.0.0.1:8443'; URLs kept."""
    server = str(server).strip().rstrip("/")
    if "://" in server:
        return server
    if server.startswith("["):  # [v6]:port or [v6]
        return "https://%s" % (server if "]:" in server else server + ":6443")
    if server.count(":") > 1:  # bare IPv6
        return "https://[%s]:6443" % server
    if ":" in server:
        return "https://%s" % server
    return "https://%s:6443" % server


def path_quote(value):
    return quote(str(value), safe="")


def parse_time(value):
    """Seconds since the epoch from a Kubernetes Time/MicroTime ('2026-11-28T02:55:58Z',
    '2026-11-28T02:55:58.123456Z', '...+00:00'); None when absent or unparsable."""
    if not value:
        return None
    match = re.match(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$", str(value))
    if not match:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if match.group(7):
        seconds += float(match.group(7))
    zone = match.group(8)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds


def selector_matches(selector, labels):
    """True when a LabelSelector (matchLabels + matchExpressions) selects ``labels``.

    An empty selector selects everything (policy/v1 PodDisruptionBudget semantics); None selects nothing.
    """
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, operator, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True
