# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Label and field selectors as the apiserver parses them.

Label selector grammar: k8s.io/apimachinery/pkg/labels/selector.go (=, ==, !=, in, notin, exists, !key).
Field selectors: k8s.io/apimachinery/pkg/fields/selector.go (=, ==, !=); which fields a resource
supports is per resource (pods: spec.nodeName, status.phase, metadata.name/namespace, ...).
"""

from __future__ import annotations

import re


class SelectorError(ValueError):
    """The selector does not parse; the apiserver answers 400 BadRequest."""


_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|!=|=)\s*([A-Za-z0-9._-]*)\s*$")


def _split_top(text):
    """Split on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise SelectorError("unbalanced parentheses in selector %r" % text)
    parts.append(current)
    return [p for p in parts if p.strip()]


def parse_label_selector(text):
    """Return a list of (key, operator, values) requirements."""
    requirements = []
    for part in _split_top(text or ""):
        match = _EQ_RE.match(part)
        if match:
            key, operator, value = match.groups()
            requirements.append((key, "!=" if operator == "!=" else "=", [value]))
            continue
        match = _SET_RE.match(part)
        if not match:
            raise SelectorError("unable to parse requirement: %r" % part.strip())
        negate, key, operator, values = match.groups()
        if operator:
            if negate:
                raise SelectorError("unable to parse requirement: %r" % part.strip())
            requirements.append((key, operator, [v.strip() for v in values.split(",") if v.strip()]))
        else:
            requirements.append((key, "!" if negate else "exists", []))
    return requirements


def label_requirements_from_selector(selector):
    """Requirements from a metav1.LabelSelector dict (matchLabels + matchExpressions)."""
    requirements = [(k, "=", [v]) for k, v in sorted((selector or {}).get("matchLabels", {}).items())]
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in (selector or {}).get("matchExpressions", []) or []:
        requirements.append((expr["key"], operators[expr["operator"]], list(expr.get("values") or [])))
    return requirements


def labels_match(requirements, labels):
    labels = labels or {}
    for key, operator, values in requirements:
        present = key in labels
        value = labels.get(key)
        if operator == "=" and not (present and value == values[0]):
            return False
        if operator == "!=" and present and value == values[0]:
            return False
        if operator == "in" and not (present and value in values):
            return False
        if operator == "notin" and present and value in values:
            return False
        if operator == "exists" and not present:
            return False
        if operator == "!" and present:
            return False
    return True


def parse_field_selector(text):
    """Return a list of (field, operator, value) with operator '=' or '!='."""
    result = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        match = re.match(r"^\s*([A-Za-z0-9._-]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not match:
            raise SelectorError("invalid selector: '%s'; can't understand '%s'" % (text, part))
        field, operator, value = match.groups()
        result.append((field, "!=" if operator == "!=" else "=", value))
    return result


def field_value(obj, path):
    node = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def fields_match(requirements, obj, supported):
    """True when ``obj`` satisfies every requirement; unsupported fields raise like the apiserver."""
    for field, operator, value in requirements:
        if field not in supported:
            raise SelectorError('field label not supported: %s' % field)
        actual = field_value(obj, field)
        if (operator == "=") != (actual == value):
            return False
    return True
