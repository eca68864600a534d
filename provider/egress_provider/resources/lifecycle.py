"""The lifecycle every egress resource shares: one agent object per resource instance.

A resource subclass says which object it manages (class attributes) and how
its Terraform values map to the model (`model_data`, `to_state`); its own
file keeps only that and its schema, as in the HashiCorp scaffolding layout.

Writes are idempotent. Each carries a request id derived from what it
writes (a create: kind, name and spec; an update: the same plus the
resource_version it starts from), and the agent answers a write it already
applied with its result. So when a write's outcome is unknown (the agent got
it but did not answer in time), the provider retries it until the resource's
`timeouts` allow no more; and if even that fails, the next `terraform apply`
sends the same id again and adopts the object the agent kept instead of
failing with "already exists".
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Iterator, Optional

from tf.iface import Config, CreateContext, DeleteContext, ImportContext, ReadContext, Resource, State, UpdateContext
from tf.schema import Attribute, Schema
from tf.types import Number
from tf.utils import Diagnostics

from egress_api import errors, models
from egress_provider.framework.diagnostics import Locator, add_api_error, add_invalid_object, add_resolved_outcome
from egress_provider.framework.servicer import PlanContext
from egress_provider.resources import timeouts
from egress_provider.resources.common import call, model_input, plan_time_check, validate_config


class AgentObjectResource(Resource):
    terraform_type: ClassVar[str]  # "egress_gateway": names the resource in diagnostics
    kind: ClassVar[str]  # the models' kind, "gateway"; the agent client names its methods create_gateway, ...
    kind_plural: ClassVar[str]  # "gateways", as in `egressctl get gateways`

    # Every write bumps the agent's resource_version, so any change makes it unknown at plan...
    computed_on_change = ("resource_version",)
    # ...except a change of these, which only the provider reads: no agent write.
    provider_only_fields = ("timeouts",)

    # Resource identity (Terraform >= 1.12, `import { identity = { name = "..." } }`): an object is its name
    # on the agent's cluster. framework/protocol.py serves it; bump identity_version if this ever changes.
    identity_attributes = ("name",)
    identity_version = 0

    def __init__(self, provider):
        self.provider = provider

    # --- conversion, per resource ---
    @staticmethod
    def model_data(values: dict) -> dict[str, Any]:
        """The model's fields from Terraform values (config or planned state); nulls are left in."""
        raise NotImplementedError

    @staticmethod
    def to_state(versioned) -> State:
        """Terraform state for an object as the agent stores it."""
        raise NotImplementedError

    # --- plan ---
    def validate(self, diags: Diagnostics, type_name: str, config: Config):
        super().validate(diags, type_name, config)
        if not diags.has_errors():
            validate_config(diags, self.kind, self.model_data(config), self.locator(config))
            timeouts.validate(diags, config.get("timeouts"))

    def plan(self, ctx: PlanContext, current: Optional[State], planned: State) -> Optional[State]:
        planned["id"] = planned["name"]
        view = self.provider.plan_view
        if current is not None and current["name"] != planned["name"]:
            view.object_gone(self.kind, current["name"])  # replaced: the old object is deleted first
        if not (ctx.changed_fields - set(self.provider_only_fields)) or self.provider.endpoint is None:
            return planned
        model = validate_config(Diagnostics(), self.kind, self.model_data(planned))
        if model is not None:
            plan_time_check(ctx.diagnostics, self.provider.client(), view, model, kind=self.terraform_type,
                            at=self.locator(planned))
            view.plan_object(self.kind, model)
        return planned

    def plan_destroy(self, ctx: PlanContext, current: State) -> None:
        self.provider.plan_view.object_gone(self.kind, current["name"])

    # --- apply ---
    def create(self, ctx: CreateContext, planned: State) -> Optional[State]:
        model = self._parse(ctx.diagnostics, planned)
        if model is None:
            return None
        v = self._write(ctx.diagnostics, "create", model, planned, at=self.locator(planned),
                        request_id=request_id("create", self.kind, model))
        return None if v is None else self._state(v, planned)

    def update(self, ctx: UpdateContext, current: State, planned: State) -> Optional[State]:
        model = self._parse(ctx.diagnostics, planned)
        if model is None:
            return current
        if model == self._parse(Diagnostics(), current):
            # Only `timeouts` or the order of a list changed: the agent's object is already this one.
            return planned
        version = _resource_version(current)
        v = self._write(ctx.diagnostics, "update", model, planned, at=self.locator(planned), resource_version=version,
                        request_id=request_id("update", self.kind, model, version))
        return current if v is None else self._state(v, planned)

    def delete(self, ctx: DeleteContext, current: State):
        name = current["name"]
        action = f'delete {self.terraform_type} "{name}"'
        client = self.provider.client()
        try:
            self._client_method("delete")(name, resource_version=_resource_version(current),
                                          deadline=timeouts.deadline(current, "delete"))
        except errors.NotFound:
            return None  # already gone: the goal of a delete
        except errors.ApiError as err:
            add_api_error(ctx.diagnostics, err, action=action, kind=self.terraform_type, name=name,
                          endpoint=client.target)
            return current
        add_resolved_outcome(ctx.diagnostics, client.last_call, action=action)
        return None

    # --- read / import ---
    def read(self, ctx: ReadContext, current: State) -> Optional[State]:
        name = current.get("name") or current.get("id")
        try:
            return self._state(self._client_method("get")(name, deadline=timeouts.deadline(current, "read")), current)
        except errors.NotFound:
            return None  # deleted outside Terraform: drop from state so the next plan re-creates it

    def import_(self, ctx: ImportContext, id: str) -> Optional[State]:
        try:
            return self._state(self._client_method("get")(id), {})
        except errors.NotFound:
            ctx.diagnostics.add_error(
                f"Cannot import {self.terraform_type} {id!r}: no such {self.kind}",
                f"The agent has no {self.kind} by that name. `egressctl get {self.kind_plural}` lists them.",
            )
        except errors.ApiError as err:
            add_api_error(ctx.diagnostics, err, action=f"import {self.terraform_type} {id!r}",
                          kind=self.terraform_type, name=id, endpoint=self.provider.client().target)
        return None

    # --- list (`terraform query`, Terraform >= 1.14) ---
    @classmethod
    def list_schema(cls) -> Schema:
        """The `config {}` of a `list "egress_..." "x" {}` block: no filters, every object is listed."""
        return Schema(version=0, description=f"Lists every {cls.kind} the agent stores.", attributes=[])

    def list_states(self) -> Iterator[State]:
        """Every object of this kind on the agent, as state, sorted by name."""
        objects = getattr(self.provider.client(), f"list_{self.kind_plural}")()
        return (self.to_state(v) for v in sorted(objects, key=lambda v: v.obj.name))

    # --- helpers ---
    @classmethod
    def locator(cls, values: dict) -> Locator:
        """Places model violations about `values` (config or planned state) at their attribute paths."""
        return Locator(cls.get_schema(), values)

    def _client_method(self, verb: str):
        """The agent client's `<verb>_<kind>` method, e.g. create_gateway or get_policy."""
        return getattr(self.provider.client(), f"{verb}_{self.kind}")

    def _parse(self, diags: Diagnostics, planned: State) -> Optional[models.BaseModel]:
        """The model for a planned state (known in full at apply); invalid values become diagnostics."""
        try:
            return models.parse(self.kind, model_input(self.model_data(planned)))
        except models.InvalidObject as err:
            add_invalid_object(diags, err, self.locator(planned))
            return None

    def _state(self, versioned, values: dict) -> State:
        """State for the stored object, with the `timeouts` block of `values` (config-only, kept as written)."""
        return {**self.to_state(versioned), "timeouts": values.get("timeouts")}

    def _write(self, diags: Diagnostics, verb: str, model, values: dict, **kwargs):
        """Create or update `model` on the agent within `values`' timeout; on an error add a diagnostic, return None."""
        action = f'{verb} {self.terraform_type} "{model.name}"'
        client = self.provider.client()
        result = call(
            diags,
            self._client_method(verb),
            model,
            action=action,
            kind=self.terraform_type,
            name=model.name,
            endpoint=client.target,
            deadline=timeouts.deadline(values, verb),
            **kwargs,
        )
        if result is not None:
            add_resolved_outcome(diags, client.last_call, action=action)
        return result


def resource_version_attribute() -> Attribute:
    """The computed `resource_version` every resource's schema lists; updates and deletes send it back."""
    return Attribute(
        "resource_version",
        Number(),
        computed=True,
        description="The agent's version of the object; updates and deletes carry it so a concurrent "
        "change made elsewhere fails with a conflict instead of being overwritten.",
    )


def request_id(verb: str, kind: str, model, resource_version: int = 0) -> str:
    """The id of "write exactly this": the same for every retry, in this apply or the next one.

    Two writes get the same id only when they write the same object, with the
    same spec, from the same resource_version; the agent answers such a replay
    only while the object is still exactly as that write left it.
    """
    spec = json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{verb}\0{kind}\0{model.name}\0{resource_version}\0{spec}".encode()).hexdigest()
    return f"terraform-{verb}-{digest[:40]}"


def _resource_version(state: State) -> int:
    return int(state.get("resource_version") or 0)
