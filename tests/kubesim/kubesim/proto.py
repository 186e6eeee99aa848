# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decoding the protobuf request bodies kubectl sends (application/vnd.kubernetes.protobuf).

kubectl's typed clients (create secret, drain's eviction and delete) send protobuf; kubesim answers in
JSON, which client-go accepts. Envelope: 4 magic bytes "k8s\\x00" + runtime.Unknown{typeMeta=1, raw=2,
contentEncoding=3, contentType=4} (k8s.io/apimachinery/pkg/runtime/serializer/protobuf). Message
layouts below are the field numbers of the generated.proto files in k8s.io/api and k8s.io/apimachinery,
checked against bodies real kubectl 1.37 sends (tests/kubesim/test_kubesim_proto.py).
"""

from __future__ import annotations

import base64
import datetime

MAGIC = b"k8s\x00"


class ProtoError(ValueError):
    pass


def _varint(data, pos):
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtoError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data):
    """Yield (field number, wire type, value) for one message."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value = data[pos:pos + length]
            if len(value) != length:
                raise ProtoError("truncated field %d" % number)
            pos += length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ProtoError("unsupported wire type %d" % wire)
        yield number, wire, value


# Schemas: field number -> (json name, type). Types: str, bytes, int, bool, ("msg", schema),
# ("map", key type, value type), ("list", type), "time".
TIME = {1: ("seconds", "int"), 2: ("nanos", "int")}
OWNER_REFERENCE = {5: ("apiVersion", "str"), 1: ("kind", "str"), 3: ("name", "str"), 4: ("uid", "str"),
                   6: ("controller", "bool"), 7: ("blockOwnerDeletion", "bool")}
OBJECT_META = {
    1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"), 4: ("selfLink", "str"),
    5: ("uid", "str"), 6: ("resourceVersion", "str"), 7: ("generation", "int"), 8: ("creationTimestamp", "time"),
    9: ("deletionTimestamp", "time"), 10: ("deletionGracePeriodSeconds", "int"),
    11: ("labels", ("map", "str", "str")), 12: ("annotations", ("map", "str", "str")),
    13: ("ownerReferences", ("list", ("msg", OWNER_REFERENCE))), 14: ("finalizers", ("list", "str")),
}
PRECONDITIONS = {1: ("uid", "str"), 2: ("resourceVersion", "str")}
DELETE_OPTIONS = {1: ("gracePeriodSeconds", "int"), 2: ("preconditions", ("msg", PRECONDITIONS)),
                  3: ("orphanDependents", "bool"), 4: ("propagationPolicy", "str"), 5: ("dryRun", ("list", "str"))}
SCHEMAS = {
    ("v1", "Secret"): {1: ("metadata", ("msg", OBJECT_META)), 2: ("data", ("map", "str", "bytes")),
                       3: ("type", "str"), 4: ("stringData", ("map", "str", "str")), 5: ("immutable", "bool")},
    ("v1", "ConfigMap"): {1: ("metadata", ("msg", OBJECT_META)), 2: ("data", ("map", "str", "str")),
                          3: ("binaryData", ("map", "str", "bytes")), 4: ("immutable", "bool")},
    ("v1", "Namespace"): {1: ("metadata", ("msg", OBJECT_META))},
    ("policy/v1", "Eviction"): {1: ("metadata", ("msg", OBJECT_META)),
                                2: ("deleteOptions", ("msg", DELETE_OPTIONS))},
    ("meta.k8s.io/v1", "DeleteOptions"): DELETE_OPTIONS,
    ("v1", "DeleteOptions"): DELETE_OPTIONS,
    ("policy/v1", "DeleteOptions"): DELETE_OPTIONS,
}


def _convert(kind, wire, value):
    if kind == "str":
        return value.decode()
    if kind == "bytes":
        return base64.b64encode(value).decode()
    if kind == "int":
        return value - (1 << 64) if value >= 1 << 63 else value
    if kind == "bool":
        return bool(value)
    if kind == "time":
        seconds = decode_message(value, TIME).get("seconds", 0)
        if not seconds:
            return ""  # the zero metav1.Time marshals to null, so it is left out
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(kind, tuple) and kind[0] == "msg":
        return decode_message(value, kind[1])
    raise ProtoError("cannot convert %r" % (kind,))


def decode_message(data, schema):
    result = {}
    for number, wire, value in fields(data):
        if number not in schema:
            continue  # unknown fields are skipped, as proto3 does
        name, kind = schema[number]
        if isinstance(kind, tuple) and kind[0] == "map":
            entry = {n: v for n, _dummy, v in fields(value)}
            key = _convert(kind[1], 2, entry.get(1, b""))
            result.setdefault(name, {})[key] = _convert(kind[2], 2, entry.get(2, b""))
        elif isinstance(kind, tuple) and kind[0] == "list":
            result.setdefault(name, []).append(_convert(kind[1], wire, value))
        else:
            converted = _convert(kind, wire, value)
            # Go's omitempty: zero strings and integers do not appear in JSON.
            if converted in ("", 0) and kind in ("str", "int", "time"):
                continue
            result[name] = converted
    return result


def decode(body):
    """A JSON-shaped dict from a kubernetes protobuf envelope."""
    if not body.startswith(MAGIC):
        raise ProtoError("missing the k8s protobuf magic number")
    unknown = {n: v for n, _dummy, v in fields(body[len(MAGIC):])}
    type_meta = {n: v.decode() for n, _dummy, v in fields(unknown.get(1, b""))}
    api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
    schema = SCHEMAS.get((api_version, kind))
    if schema is None:
        raise ProtoError("kubesim cannot decode protobuf %s %s; send JSON" % (api_version, kind))
    obj = decode_message(unknown.get(2, b""), schema)
    obj["apiVersion"] = api_version
    obj["kind"] = kind
    return obj


def dump(data, depth=0):
    """Debug helper: the raw field tree."""
    lines = []
    for number, wire, value in fields(data):
        if wire == 2:
            try:
                inner = dump(value, depth + 1)
                lines.append("%s%d: {\n%s\n%s}" % ("  " * depth, number, inner, "  " * depth))
                continue
            except (ProtoError, IndexError):
                pass
        lines.append("%s%d: %r" % ("  " * depth, number, value))
    return "\n".join(lines)


def _field(number, payload):
    """A length-delimited field (payload < 128 bytes is all kubesim writes)."""
    if len(payload) >= 128:
        raise ProtoError("field too long for the short encoder")
    return bytes([number << 3 | 2, len(payload)]) + payload


def openapi_v2_document(version):
    """An empty gnostic openapi_v2.Document (swagger=1, info=2{title=1, version=2}, paths=8).

    kubectl fetches /openapi/v2 as protobuf only, for client-side validation of kinds the server-side
    check does not cover (a v1 List from `get -o json`). With no definitions, kubectl skips client-side
    schema validation; validating against real schemas is not modelled.
    """
    info = _field(1, b"Kubernetes") + _field(2, ("v%s" % version.lstrip("v")).encode())
    return _field(1, b"2.0") + _field(2, info) + _field(8, b"")
