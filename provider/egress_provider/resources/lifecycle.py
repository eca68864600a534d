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
import threading
import time
from typing import Any, ClassVar, Iterator, Optional

from tf.iface import Config, CreateContext, DeleteContext, ImportContext, ReadContext, Resource, State, UpdateContext
from tf.schema import Attribute, Schema
from tf.types import Number
from tf.utils import Diagnostics

from egress_api import errors, models
from egress_provider.framework.diagnostics import Locator, add_api_error, add_invalid_object, add_resolved_outcome
from egress_provider.framework.servicer import PlanContext
from egress_provider.config_inventory import destroy_run
from egress_provider.resources import plan_checks, timeouts
from egress_provider.resources.common import model_input, validate_config


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

    # Computed attributes the agent derives from other state (e.g. the pods a policy selects), see `observed`.
    observed_fields: ClassVar[tuple[str, ...]] = ()

    def observed(self, model) -> dict[str, Any]:
        """The `observed_fields` of `model`, asked of the agent."""
        return {}

    def checked_values(self, ctx: PlanContext, planned: State) -> State:
        """The planned values the plan checks read: `planned`, or what the agent will be sent where a computed
        value is planned unknown (a policy's source IP to be allocated is sent as none)."""
        return planned

    def waits_for(self, err: errors.FailedPrecondition) -> bool:
        """Whether a write refused with `err` may pass once another object is written (then `_write` tries
        again until the resource's timeout), like the AWS provider's retries of dependency violations."""
        return False

    def same_object(self, stored, model) -> bool:
        """Whether the stored object `stored` is what writing `model` makes (a create adopts it then)."""
        return stored == model

    def plan_notes(self, diags: Diagnostics, model) -> None:
        """Warnings a reviewer should read in a plan that creates or changes `model` (e.g. its impact)."""

    def _state(self, versioned, values: dict) -> State:
        """State for the stored object: what the agent observes of it, and the `timeouts` block of `values`
        (config-only, kept as written)."""
        state = {**self.to_state(versioned), "timeouts": values.get("timeouts")}
        try:
            state.update(self.observed(versioned.obj))
        except errors.ApiError:
            state.update(dict.fromkeys(self.observed_fields))  # null, never missing: the next refresh fills them in
        return state

    # --- plan ---
    def validate(self, diags: Diagnostics, type_name: str, config: Config):
        super().validate(diags, type_name, config)
        if not diags.has_errors():
            validate_config(diags, self.kind, self.model_data(config), self.locator(config))
            timeouts.validate(diags, config.get("timeouts"))
        if self.provider.endpoint is None:  # the validate walk: note the configuration for the plan walk
            self.provider.config_inventory.record(self.kind, self.model_data(config))

    def plan(self, ctx: PlanContext, current: Optional[State], planned: State) -> Optional[State]:
        planned["id"] = planned["name"]
        view = self.provider.plan_view
        if current is not None and current["name"] != planned["name"]:
            view.object_gone(self.kind, current["name"])  # replaced: the old object is deleted
        if self.provider.endpoint is None or destroy_run():
            return planned
        model = validate_config(Diagnostics(), self.kind, self.model_data(self.checked_values(ctx, planned)))
        if model is None:
            return planned
        view.plan_object(self.kind, model)
        # Unchanged objects are checked too (another change may break them), but only errors are shown for them.
        changed = bool(ctx.changed_fields)
        w = plan_checks.agent_world(view, self.provider.estate, self.provider.client(),
                                    self.provider.config_inventory.load())
        if w is None:
            return planned
        if isinstance(model, models.Gateway):
            before = w.stored_gateways.get(current["name"] if current else model.name)
            plan_checks.check_gateway(ctx.diagnostics, w, model, before, kind=self.terraform_type, warn=changed,
                                      at=self.locator(planned))
        else:
            plan_checks.check_policy(ctx.diagnostics, w, model, kind=self.terraform_type, warn=changed,
                                      at=self.locator(planned))
        if changed and not ctx.diagnostics.has_errors():
            plan_checks.assignment_warnings(ctx.diagnostics, self.provider.client(), w, model, kind=self.terraform_type,
                                             at=self.locator(planned))
            try:
                self.plan_notes(ctx.diagnostics, model)
            except errors.ApiError:
                pass
        return planned

    def plan_destroy(self, ctx: PlanContext, current: State) -> None:
        view = self.provider.plan_view
        view.object_gone(self.kind, current["name"])
        if self.kind != "gateway" or self.provider.endpoint is None or destroy_run():
            return
        inventory = self.provider.config_inventory.load()
        planned, _ = view.snapshot()
        if current["name"] in planned["gateway"] or (inventory is not None and current["name"] in inventory.gateways):
            return  # a gateway of that name stays: this is the old instance of a replacement
        # Removed from the configuration (or by a count/for_each change): the configuration's policies stay.
        w = plan_checks.agent_world(view, self.provider.estate, self.provider.client(), inventory)
        before = w and w.stored_gateways.get(current["name"])
        if before is not None:
            plan_checks.check_gateway(ctx.diagnostics, w, None, before, kind=self.terraform_type, warn=True,
                                      at=self.locator(current))

    # --- apply ---
    def create(self, ctx: CreateContext, planned: State) -> Optional[State]:
        model = self._parse(ctx.diagnostics, planned)
        if model is None:
            return None
        v = self._write(ctx.diagnostics, "create", model, planned, at=self.locator(planned),
                        request_id=request_id("create", self.kind, model), adopt_existing=True)
        if v is None:
            return None
        # The old instance of a create_before_destroy may be this very object (the agent answered a repeated
        # request with it, or it was adopted): the old instance's delete later in this apply must not remove it.
        self.provider.adopted.add(self.kind, model.name, v.resource_version)
        return self._state(v, planned)

    def _adopt(self, diags: Diagnostics, model, err: errors.AlreadyExists, at):
        """Create found `model.name` existing: adopt it when it is exactly `model`, refuse otherwise.

        `create_before_destroy` of an object with a fixed name (`terraform apply
        -replace` with it, or a change that forces replacement) creates the
        new object while the old one still exists under that name, then deletes
        the old one. The new object would be identical, so it takes the old one
        over; the delete of the old one that follows in this apply is then
        skipped (`AdoptedObjects`). Anything else stays an error.
        """
        try:
            existing = self._client_method("get")(model.name)
        except errors.ApiError:
            existing = None
        if existing is None or not self.same_object(existing.obj, model):
            add_api_error(diags, err, action=f'create {self.terraform_type} "{model.name}"',
                          kind=self.terraform_type, name=model.name, endpoint=self.provider.client().target, at=at)
            return None
        diags.add_warning(
            f"Adopted the existing {self.kind} {model.name!r}",
            f"The agent already has {self.kind} {model.name!r} exactly as configured, so this resource took it over "
            "instead of creating it (create_before_destroy of a fixed name replaces an object with itself; the delete "
            "of the old instance is then skipped). If another Terraform configuration also manages it, remove it "
            "from one of them.",
        )
        return existing

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
        if self.provider.adopted.take(self.kind, name, _resource_version(current)):
            return None  # the old instance of a create_before_destroy: its replacement owns the object now
        action = f'delete {self.terraform_type} "{name}"'
        client = self.provider.client()
        try:
            self._client_method("delete")(name, resource_version=_resource_version(current),
                                          deadline=timeouts.deadline(current, "delete"))
        except errors.NotFound:
            self.provider.estate.removed(self.kind, name)
            return None  # already gone: the goal of a delete
        except errors.ApiError as err:
            add_api_error(ctx.diagnostics, err, action=action, kind=self.terraform_type, name=name,
                          endpoint=client.target)
            return current
        self.provider.estate.removed(self.kind, name)
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

    def _write(self, diags: Diagnostics, verb: str, model, values: dict, *, at: Optional[Locator] = None,
               adopt_existing: bool = False, **kwargs):
        """Create or update `model` on the agent within `values`' timeout; on an error add a diagnostic, return None.

        `adopt_existing`: a create that finds the name taken adopts an identical object (`_adopt`).
        """
        action = f'{verb} {self.terraform_type} "{model.name}"'
        client = self.provider.client()
        deadline = timeouts.deadline(values, verb)
        try:
            while True:
                try:
                    result = self._client_method(verb)(model, deadline=deadline, **kwargs)
                    break
                except errors.FailedPrecondition as err:
                    if not self.waits_for(err) or time.monotonic() + _WAIT_S >= deadline:
                        raise
                    time.sleep(_WAIT_S)  # what it waits for may be applied meanwhile (same request id: safe)
        except errors.AlreadyExists as err:
            if adopt_existing:
                adopted = self._adopt(diags, model, err, at)
                if adopted is not None:
                    self.provider.estate.stored(self.kind, adopted.obj)
                return adopted
            add_api_error(diags, err, action=action, kind=self.terraform_type, name=model.name,
                          endpoint=client.target, at=at)
            return None
        except errors.ApiError as err:
            add_api_error(diags, err, action=action, kind=self.terraform_type, name=model.name,
                          endpoint=client.target, at=at)
            return None
        self.provider.estate.stored(self.kind, result.obj)
        add_resolved_outcome(diags, client.last_call, action=action)
        return result


_WAIT_S = 0.5  # between tries of a write that waits for another object (`waits_for`)


class AdoptedObjects:
    """(kind, name, resource_version) of objects a create adopted in this plugin process (one apply).

    Terraform deletes the old instance of a create_before_destroy in the same
    apply, with the resource_version it had; that delete must not remove the
    object the new instance now owns. Each entry is used once.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: set[tuple[str, str, int]] = set()

    def add(self, kind: str, name: str, resource_version: int) -> None:
        with self._lock:
            self._entries.add((kind, name, resource_version))

    def take(self, kind: str, name: str, resource_version: int) -> bool:
        with self._lock:
            if (kind, name, resource_version) in self._entries:
                self._entries.discard((kind, name, resource_version))
                return True
            return False


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
