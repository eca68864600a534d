"""What both resources share: plan-time validation with the models, and agent calls as diagnostics."""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from tf.utils import Diagnostics

from egress_api import errors, models
from egress_provider.framework.diagnostics import Locator, add_api_error, add_invalid_object, add_violations
from egress_provider.framework.types import is_known
from egress_provider.framework.unknowns import is_unknown, known_prefix


def model_input(value: Any) -> Any:
    """Terraform values as model input: an unknown becomes `models.Pending` (with what is known of its
    beginning), and a null means "not set", so it is left out and the model applies its default."""
    if is_unknown(value):
        return models.Pending(known_prefix(value))
    if isinstance(value, dict):
        return {k: model_input(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [model_input(v) for v in value]
    return value


def validate_config(
    diags: Diagnostics, kind: str, data: dict[str, Any], at: Optional[Locator] = None
) -> Optional[models.BaseModel]:
    """Check what is known of a config with `models.parse`; report every violation at its attribute path.

    Unknown values are checked once known (a known prefix is checked now).
    Returns the model only when the whole config is known and valid.
    """
    try:
        model = models.parse(kind, model_input(data))
    except models.InvalidObject as err:
        add_invalid_object(diags, err, at)
        return None
    return model if is_known(data) else None


def call(
    diags: Diagnostics,
    fn: Callable,
    *args,
    action: str,
    kind: str,
    name: str,
    endpoint: str = "",
    at: Optional[Locator] = None,
    **kwargs,
):
    """Call the agent; on an agent error add a diagnostic (violations placed by `at`) and return None."""
    try:
        return fn(*args, **kwargs)
    except errors.ApiError as err:
        add_api_error(diags, err, action=action, kind=kind, name=name, endpoint=endpoint, at=at)
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


def plan_time_check(
    diags: Diagnostics, client, view: PlanView, model, *, kind: str, at: Optional[Locator] = None
) -> None:
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
    add_violations(diags, found, kind=kind, name=model.name, warning=True, note=AT_PLAN_NOTE, at=at)
    if found:
        return
    if isinstance(model, models.Gateway):
        try:  # which floating IPs no node could take (the agent runs the assignment function)
            warnings = client.validate_gateway(model).warnings
            add_violations(diags, warnings, kind=kind, name=model.name, warning=True, at=at)
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
        add_violations(diags, result.warnings, kind=kind, name=model.name, warning=True, at=at)
