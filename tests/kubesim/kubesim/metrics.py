# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kube-apiserver's encryption-config controller metrics, served on /metrics in the Prometheus text format.

Facts from upstream (k8s.io/apiserver/pkg/server/options/encryptionconfig/metrics/metrics.go and its test,
.../encryptionconfig/controller/controller.go, k8s.io/apiserver/pkg/util/configmetrics, 1.34+):
- ``apiserver_encryption_config_controller_automatic_reloads_total{apiserver_id_hash,status}`` counter and
  ``..._automatic_reload_last_timestamp_seconds{apiserver_id_hash,status}`` gauge, status ``success`` or
  ``failure``. Both are metric vectors: a family has no sample (and is not printed at all) until the
  controller first records that status.
- ``..._last_config_info{apiserver_id_hash,hash} 1``: one sample, the hash of the encryption config file
  last loaded successfully; a newer one replaces it (the old label set disappears).
- ``apiserver_id_hash`` = ``"sha256:" + hex(sha256(apiserver ID))``; the apiserver ID is
  ``"apiserver-" + lowercase base32 (no padding) of the first 16 bytes of sha256(u16-length-prefixed
  hostname, u16-length-prefixed "kube-apiserver")`` (k8s.io/apiserver/pkg/server/config.go).
- ``hash`` = ``"sha256:" + hex(sha256(raw bytes of the --encryption-provider-config file))``.
- A reload attempt happens on every poll of the file: unchanged content (same hash) records nothing; a
  changed file that loads records success; a file that cannot be read or does not load records failure and
  keeps the running configuration. (Upstream also re-queues a failed attempt with a rate limiter, so the
  failure counter may rise by more than one per poll; callers must only rely on "it increased".)
- HELP texts carry the stability level prefix ``[ALPHA]``, as component-base/metrics renders them.
"""

from __future__ import annotations

import base64
import decimal
import hashlib
import math
import socket
import struct
import threading
import time

PREFIX = "apiserver_encryption_config_controller_"
RELOADS = PREFIX + "automatic_reloads_total"
LAST_TIMESTAMP = PREFIX + "automatic_reload_last_timestamp_seconds"
LAST_CONFIG = PREFIX + "last_config_info"
HELP = {
    RELOADS: "Total number of reload successes and failures of encryption configuration split by apiserver "
             "identity.",
    LAST_TIMESTAMP: "Timestamp of the last successful or failed automatic reload of encryption configuration "
                    "split by apiserver identity.",
    LAST_CONFIG: "Information about the last applied encryption configuration with hash as label, split by "
                 "apiserver identity.",
}
TYPE = {RELOADS: "counter", LAST_TIMESTAMP: "gauge", LAST_CONFIG: "gauge"}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def sha256_label(data):
    """``sha256:<hex>``, the format of every hash label here; empty input gives "" like upstream getHash."""
    if not data:
        return ""
    return "sha256:" + hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()


def apiserver_id(hostname=None):
    """The kube-apiserver identity of this host (the same string the apiserver identity Lease is named after)."""
    hostname = (hostname or socket.gethostname()).encode()
    component = b"kube-apiserver"
    data = struct.pack(">H", len(hostname)) + hostname + struct.pack(">H", len(component)) + component
    digest = hashlib.sha256(data).digest()[:16]
    return "apiserver-" + base64.b32encode(digest).decode().rstrip("=").lower()


def go_float(value):
    """A sample value as Go's strconv.FormatFloat(v, 'g', -1, 64) writes it (what client_golang emits)."""
    if math.isnan(value):
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign, digits, exponent = decimal.Decimal(repr(float(value))).normalize().as_tuple()
    text = "".join(str(d) for d in digits)
    exp10 = len(digits) - 1 + exponent
    minus = "-" if sign else ""
    # Shortest formatting decides with precision 6: %e below 1e-4 and from 1e6 up.
    if exp10 < -4 or exp10 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return "%s%se%s%02d" % (minus, mantissa, "-" if exp10 < 0 else "+", abs(exp10))
    if exp10 < 0:
        return "%s0.%s%s" % (minus, "0" * (-exp10 - 1), text)
    if exp10 + 1 >= len(text):
        return minus + text + "0" * (exp10 + 1 - len(text))
    return "%s%s.%s" % (minus, text[:exp10 + 1], text[exp10 + 1:])


class EncryptionConfigMetrics:
    """The three families above for one apiserver process; thread safe (HTTP threads read, the reload loop writes)."""

    def __init__(self, identity=None, clock=time.time):
        self.apiserver_id = identity or apiserver_id()
        self.id_hash = sha256_label(self.apiserver_id)
        self.clock = clock
        self._lock = threading.Lock()
        self._reloads = {}
        self._last = {}
        self._config_hash = ""

    def loaded(self, config_hash):
        """A configuration was loaded (at startup, or by a successful reload): RecordEncryptionConfigLastConfigInfo."""
        with self._lock:
            self._config_hash = config_hash

    def reload_succeeded(self, config_hash):
        with self._lock:
            self._record("success")
            self._config_hash = config_hash

    def reload_failed(self):
        with self._lock:
            self._record("failure")

    def _record(self, status):
        self._reloads[status] = self._reloads.get(status, 0) + 1
        self._last[status] = self.clock()

    def samples(self):
        """{family: [(labels, value)]}, families without samples left out, as client_golang gathers them."""
        with self._lock:
            families = {
                LAST_TIMESTAMP: [({"apiserver_id_hash": self.id_hash, "status": status}, stamp)
                                 for status, stamp in sorted(self._last.items())],
                RELOADS: [({"apiserver_id_hash": self.id_hash, "status": status}, count)
                          for status, count in sorted(self._reloads.items())],
                # configmetrics: emitted only when every label value is non-empty.
                LAST_CONFIG: [({"apiserver_id_hash": self.id_hash, "hash": self._config_hash}, 1)]
                if self._config_hash and self.id_hash else [],
            }
        return {name: rows for name, rows in families.items() if rows}

    def render(self):
        lines = []
        for name, rows in sorted(self.samples().items()):
            lines.append("# HELP %s [ALPHA] %s" % (name, HELP[name]))
            lines.append("# TYPE %s %s" % (name, TYPE[name]))
            for labels, value in rows:
                pairs = ",".join('%s="%s"' % (key, escape(labels[key])) for key in sorted(labels))
                lines.append("%s{%s} %s" % (name, pairs, go_float(value)))
        return "\n".join(lines) + ("\n" if lines else "")


def escape(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
