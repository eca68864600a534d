"""What both resources share: plan-time validation with the models, and agent calls as diagnostics."""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from tf.types import Unknown
from tf.utils import Diagnostics

from egress_api import errors, models
from egress_provider.framework.diagnostics import add_api_error, add_invalid_object, add_violations


def strip_unknown(value: Any) -> tuple[Any, bool]:
    """`value` without its Unknown parts (dict entries, list elements), and whether any were dropped."""
    if value is Unknown:
        return None, True
    if isinstance(value, dict):
        out, dropped = {}, False
        for k, v in value.items():
            clean, d = strip_unknown(v)
            dropped |= d
            if v is not Unknown:
                out[k] = clean
        return out, dropped
    if isinstance(value, list):
        out, dropped = [], False
        for v in value:
            clean, d = strip_unknown(v)
            dropped |= d
            if v is not Unknown:
                out.append(clean)
        return out, dropped
    return value, False


def drop_nulls(value: Any) -> Any:
    """Config nulls mean "not set": omit them so the models apply their defaults."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def validate_config(
    diags: Diagnostics, kind: str, data: dict[str, Any], placeholders: dict[str, Any]
) -> Optional[models.BaseModel]:
    """Run `models.parse` on what is known of a config; report violations with attribute paths.

    An attribute that is wholly unknown is replaced by a valid placeholder and
    its violations are ignored; a collection with unknown elements is checked
    for its known ones. Returns the model only when the whole config is known
    and valid.
    """
    clean: dict[str, Any] = {}
    unknown: set[str] = set()
    partial = False
    for key, value in data.items():
        if value is Unknown:
            unknown.add(key)
            clean[key] = placeholders[key]
            continue
        value, dropped = strip_unknown(value)
        partial |= dropped
        if dropped and isinstance(value, list) and not value:
            unknown.add(key)
            value = placeholders[key]
        clean[key] = value
    try:
        model = models.parse(kind, drop_nulls(clean))
    except models.InvalidObject as err:
        err.violations = [v for v in err.violations if not (v.path and v.path[0] in unknown)]
        add_invalid_object(diags, err)
        return None
    return None if unknown or partial else model


def call(diags: Diagnostics, fn: Callable, *args, action: str, kind: str, name: str, endpoint: str = "", **kwargs):
    """Call the agent; on an agent error add a diagnostic and return None."""
    try:
        return fn(*args, **kwargs)
    except errors.ApiError as err:
        add_api_error(diags, err, action=action, kind=kind, name=name, endpoint=endpoint)
        return None


class PlanView:
    """What this plugin process has planned so far, so plan-time checks see the plan, not only the agent.

    Terraform plans every resource of a provider in one plugin process, in
    dependency order, so a policy that depends on its gateway is planned after
    it: the gateway's planned floating IPs count, and policies being destroyed
    or replaced no longer hold their source IP. Independent resources may be
    planned in any order, which is one reason these checks only warn.
    """

    def __init__(self):
        self._lock = threading.Lock()  # Terraform plans independent resources concurrently
        self._planned: dict[str, dict[str, models.BaseModel]] = {"gateway": {}, "policy": {}}  # kind -> name -> model
        self._gone: dict[str, set[str]] = {"gateway": set(), "policy": set()}  # kind -> names planned to be deleted

    def plan_object(self, kind: str, model: models.BaseModel) -> None:
        """`model` (of `kind`, "gateway" or "policy") is planned to exist as given."""
        with self._lock:
            self._planned[kind][model.name] = model
            self._gone[kind].discard(model.name)

    def object_gone(self, kind: str, name: str) -> None:
        """The `kind` object `name` is planned to be deleted (destroyed, or replaced under a new name)."""
        with self._lock:
            self._planned[kind].pop(name, None)
            self._gone[kind].add(name)

    def world(self, client) -> tuple[dict[str, models.Gateway], list[models.Gateway], list[models.Policy]]:
        """(stored gateways by name, gateways and policies as they will be once this plan so far is applied)."""
        stored_gateways = {v.obj.name: v.obj for v in client.list_gateways()}
        stored_policies = {v.obj.name: v.obj for v in client.list_policies()}
        with self._lock:
            gateways = self._after_plan("gateway", stored_gateways)
            policies = self._after_plan("policy", stored_policies)
        return stored_gateways, gateways, policies

    def _after_plan(self, kind: str, stored: dict[str, models.BaseModel]) -> list:
        after = {n: obj for n, obj in stored.items() if n not in self._gone[kind]}
        after.update(self._planned[kind])
        return list(after.values())


AT_PLAN_NOTE = (
    "The agent checks this again at apply and refuses the write if it still holds then. If another change "
    "planned alongside (not yet seen by the provider) fixes it, apply succeeds."
)


def plan_time_check(diags: Diagnostics, client, view: PlanView, model, *, kind: str) -> None:
    """Rules across objects, checked with `models.check_references` against the agent plus this plan.

    They are warnings at plan, errors at apply (where the agent runs the same
    rules atomically): other resources in the same plan may still satisfy
    them, and the provider cannot see all of those.
    """
    try:
        stored, gateways, policies = view.world(client)
    except errors.ApiError:
        return  # the apply reports agent trouble with its own diagnostic
    found = models.check_references(model, gateways, policies)
    add_violations(diags, found, kind=kind, name=model.name, warning=True, note=AT_PLAN_NOTE)
    if found:
        return
    if isinstance(model, models.Gateway):
        try:  # which floating IPs no node could take (the agent runs the assignment function)
            add_violations(diags, client.validate_gateway(model).warnings, kind=kind, name=model.name, warning=True)
        except errors.ApiError:
            pass
        return
    # The source IP is listed; whether a node holds it is known only once its gateway is stored as planned.
    # Terraform plans each resource again just before applying it, after its dependencies are applied,
    # so an apply reports UnknownEgressIP even when the gateway is created in the same run.
    owner = next((g for g in gateways if model.egress_source_ip in g.floating_ips), None)
    if owner is not None and stored.get(owner.name) == owner:
        try:
            result = client.validate_policy(model)
        except errors.ApiError:
            return
        add_violations(diags, result.warnings, kind=kind, name=model.name, warning=True)
