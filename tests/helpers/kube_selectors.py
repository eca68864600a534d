"""Label and field selectors as the Kubernetes API parses them, for the API-server double.

Label selectors (`labelSelector=`) take the equality forms `k=v`, `k==v`, `k!=v`
and the set forms `k in (a,b)`, `k notin (a,b)`, `k` (exists) and `!k`
(does not exist), joined by commas (AND). Field selectors (`fieldSelector=`)
take `f=v`, `f==v` and `f!=v` over the few fields the real server indexes for
the kind. A selector the server would reject raises `SelectorError`, which the
double answers with a 400 BadRequest Status like kube-apiserver does.
"""

from __future__ import annotations

import re
from typing import Callable

Predicate = Callable[[dict], bool]

# Fields kube-apiserver accepts in a fieldSelector, per kind (a subset of its
# field label conversion functions: the ones a node agent can use).
FIELDS: dict[str, dict[str, Callable[[dict], str]]] = {
    "Namespace": {
        "metadata.name": lambda o: o["metadata"]["name"],
        "status.phase": lambda o: o.get("status", {}).get("phase", ""),
    },
    "Pod": {
        "metadata.name": lambda o: o["metadata"]["name"],
        "metadata.namespace": lambda o: o["metadata"]["namespace"],
        "spec.nodeName": lambda o: o.get("spec", {}).get("nodeName", ""),
        "status.phase": lambda o: o.get("status", {}).get("phase", ""),
        "status.podIP": lambda o: o.get("status", {}).get("podIP", ""),
    },
    "Node": {  # kube-apiserver's node field selectors
        "metadata.name": lambda o: o["metadata"]["name"],
        "spec.unschedulable": lambda o: str(bool(o.get("spec", {}).get("unschedulable"))).lower(),
    },
}

_SET_TERM = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|!=|=)\s*([A-Za-z0-9_.:-]*)\s*$")  # ":" for IPv6 podIPs
_EXISTS_TERM = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*$")


class SelectorError(ValueError):
    """The selector is malformed or names a field the server does not support."""


def _split_terms(selector: str) -> list[str]:
    """Splits on commas that are not inside the parentheses of a set term."""
    terms, depth, current = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    return [t for t in terms if t.strip()]


def _label_term(term: str) -> Predicate:
    if m := _SET_TERM.match(term):
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _EQ_TERM.match(term):
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _EXISTS_TERM.match(term):
        negate, key = m.groups()
        if negate:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise SelectorError(f"unable to parse requirement: {term!r}")


def label_selector(selector: str) -> Predicate:
    """A predicate over an object for a labelSelector string (empty selects everything)."""
    checks = [_label_term(t) for t in _split_terms(selector)]
    return lambda obj: all(check(obj["metadata"].get("labels") or {}) for check in checks)


def field_selector(kind: str, selector: str) -> Predicate:
    """A predicate over an object of `kind` for a fieldSelector string (empty selects everything)."""
    checks = []
    for term in _split_terms(selector):
        m = _EQ_TERM.match(term)
        if not m:
            raise SelectorError(f"invalid field selector: {term!r}")
        field, op, value = m.groups()
        getter = FIELDS[kind].get(field)
        if getter is None:
            raise SelectorError(f'field label not supported: {field}')
        if op == "!=":
            checks.append(lambda obj, g=getter, v=value: g(obj) != v)
        else:
            checks.append(lambda obj, g=getter, v=value: g(obj) == v)
    return lambda obj: all(check(obj) for check in checks)
