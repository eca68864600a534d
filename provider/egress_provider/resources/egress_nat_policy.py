"""`egress_nat_policy`: the seed's EgressNATPolicy: which pods, to which destinations, leave with which source IP."""

from __future__ import annotations

from typing import Any, Optional

from tf.iface import Config, CreateContext, DeleteContext, ImportContext, ReadContext, Resource, State, UpdateContext
from tf.schema import Attribute, Block, Schema
from tf.types import Number, String
from tf.utils import Diagnostics

from egress_api import errors, models
from egress_provider.framework.blocks import SetNestedBlock, SingleNestedBlock
from egress_provider.framework.diagnostics import add_api_error, add_invalid_object
from egress_provider.framework.servicer import PlanContext
from egress_provider.framework.types import CanonicalString, CanonicalStringSet, StringMapEmptyIsNull
from egress_provider.resources.common import call, plan_time_check, validate_config

KIND = "policy"
TYPE = "egress_nat_policy"
PLACEHOLDERS = {
    "name": "placeholder",
    "egress": [{}],
    "destination_cidrs": ["192.0.2.0/24"],
    "egress_source_ip": "192.0.2.1",
}


def _selector_block(type_name: str, what: str, example: str) -> SingleNestedBlock:
    return SingleNestedBlock(
        type_name,
        Block(
            description=f"Selects {what} by label (a Kubernetes LabelSelector). Omitted, or with no "
            "`match_labels`, it selects all of them.",
            attributes=[
                Attribute(
                    "match_labels",
                    StringMapEmptyIsNull(),
                    optional=True,
                    description=f"Labels {what} must all carry (key = value); keys and values follow Kubernetes "
                    f"label syntax, e.g. `{example}`.",
                )
            ],
        ),
    )


def _required(block):
    # At least one rule is required, but the models say so (with their message), not Terraform's min_items.
    block.doc_required = True
    return block


def _selector_to_state(sel: Optional[models.LabelSelector]) -> Optional[dict]:
    if sel is None:
        return None
    return {"match_labels": dict(sel.match_labels) or None}


def to_state(versioned) -> State:
    p: models.Policy = versioned.obj
    return {
        "id": p.name,
        "name": p.name,
        "egress": [
            {
                "namespace_selector": _selector_to_state(rule.namespace_selector),
                "pod_selector": _selector_to_state(rule.pod_selector),
            }
            for rule in p.egress
        ],
        "destination_cidrs": list(p.destination_cidrs),
        "egress_source_ip": p.egress_source_ip,
        "resource_version": versioned.resource_version,
    }


def _model_data(values: dict) -> dict[str, Any]:
    return {
        "name": values.get("name"),
        "egress": values.get("egress"),
        "destination_cidrs": values.get("destination_cidrs"),
        "egress_source_ip": values.get("egress_source_ip"),
    }


class EgressNatPolicy(Resource):
    computed_on_change = ("resource_version",)

    def __init__(self, provider):
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "nat_policy"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            version=0,
            description=(
                "Traffic selection for the egress NAT gateway (the EgressNATPolicy of Anthos clusters on bare "
                "metal). Traffic from a selected pod to one of `destination_cidrs` is steered to the node holding "
                "`egress_source_ip` and leaves the cluster with that source address. A pod is selected when it "
                "matches **any** `egress` rule; within a rule, `namespace_selector` and `pod_selector` must "
                "**both** match, and an omitted selector matches everything (Kubernetes LabelSelector semantics). "
                "If `egress_source_ip` is not currently held by any node, the policy is kept and an "
                "`UnknownEgressIP` event is recorded (`egressctl describe policy NAME`) until a node takes it."
            ),
            attributes=[
                Attribute("id", String(), computed=True, description="The policy's name."),
                Attribute(
                    "name",
                    String(),
                    required=True,
                    requires_replace=True,
                    description="Name of the policy: 1-63 lower-case letters, digits or `-`. "
                    "Changing it replaces the policy.",
                ),
                Attribute(
                    "destination_cidrs",
                    CanonicalStringSet(models.parse_ipv4_cidr),
                    required=True,
                    description="IPv4 CIDR blocks (at least one, no host bits set, e.g. `198.51.100.0/24`); "
                    "traffic to any of them is selected. Updated in place.",
                ),
                Attribute(
                    "egress_source_ip",
                    CanonicalString(models.parse_ipv4),
                    required=True,
                    description="Source IPv4 address selected traffic leaves with. It must be one of the "
                    "`floating_ips` of an `egress_gateway`, and each policy needs its own. Updated in place.",
                ),
                Attribute(
                    "resource_version",
                    Number(),
                    computed=True,
                    description="The agent's version of the object; updates and deletes carry it so a concurrent "
                    "change made elsewhere fails with a conflict instead of being overwritten.",
                ),
            ],
            block_types=[
                _required(SetNestedBlock(
                    "egress",
                    Block(
                        description="A traffic selection rule; at least one is required. A pod matching any rule "
                        "is selected.",
                        block_types=[
                            _selector_block("namespace_selector", "namespaces", '{ user = "alice" }'),
                            _selector_block("pod_selector", "pods", '{ role = "frontend" }'),
                        ],
                    ),
                ))
            ],
        )

    # --- plan ---
    def validate(self, diags: Diagnostics, type_name: str, config: Config):
        super().validate(diags, type_name, config)
        if not diags.has_errors():
            validate_config(diags, KIND, _model_data(config), PLACEHOLDERS)

    def plan(self, ctx: PlanContext, current: Optional[State], planned: State) -> Optional[State]:
        planned["id"] = planned["name"]
        view = self.provider.plan_view
        if current is not None and current["name"] != planned["name"]:
            view.policy_gone(current["name"])  # replaced: the old object is deleted first
        if not ctx.changed_fields or self.provider.endpoint is None:
            return planned
        model = validate_config(Diagnostics(), KIND, _model_data(planned), PLACEHOLDERS)
        if model is not None:
            plan_time_check(ctx.diagnostics, self.provider.client(), view, model, kind=TYPE)
            view.plan_policy(model)
        return planned

    def plan_destroy(self, ctx: PlanContext, current: State) -> None:
        self.provider.plan_view.policy_gone(current["name"])

    # --- apply ---
    def create(self, ctx: CreateContext, planned: State) -> Optional[State]:
        model = _parse(ctx.diagnostics, planned)
        if model is None:
            return None
        v = call(
            ctx.diagnostics,
            self.provider.client().create_policy,
            model,
            action=f'create egress_nat_policy "{model.name}"',
            kind=TYPE,
            name=model.name,
            endpoint=self.provider.endpoint,
        )
        if v is None:
            return None
        return to_state(v)

    def update(self, ctx: UpdateContext, current: State, planned: State) -> Optional[State]:
        model = _parse(ctx.diagnostics, planned)
        if model is None:
            return current
        v = call(
            ctx.diagnostics,
            self.provider.client().update_policy,
            model,
            resource_version=int(current.get("resource_version") or 0),
            action=f'update egress_nat_policy "{model.name}"',
            kind=TYPE,
            name=model.name,
            endpoint=self.provider.endpoint,
        )
        if v is None:
            return current
        return to_state(v)

    def delete(self, ctx: DeleteContext, current: State):
        name = current["name"]
        try:
            self.provider.client().delete_policy(name, resource_version=int(current.get("resource_version") or 0))
        except errors.NotFound:
            return None
        except errors.ApiError as err:
            add_api_error(
                ctx.diagnostics, err, action=f'delete egress_nat_policy "{name}"', kind=TYPE, name=name,
                endpoint=self.provider.endpoint,
            )
            return current
        return None

    # --- read / import ---
    def read(self, ctx: ReadContext, current: State) -> Optional[State]:
        name = current.get("name") or current.get("id")
        try:
            return to_state(self.provider.client().get_policy(name))
        except errors.NotFound:
            return None  # deleted outside Terraform: drop from state so the next plan re-creates it

    def import_(self, ctx: ImportContext, id: str) -> Optional[State]:
        try:
            return to_state(self.provider.client().get_policy(id))
        except errors.NotFound:
            ctx.diagnostics.add_error(
                f"Cannot import egress_nat_policy {id!r}: no such policy",
                "The agent has no policy by that name. `egressctl get policies` lists them.",
            )
        except errors.ApiError as err:
            add_api_error(ctx.diagnostics, err, action=f"import egress_nat_policy {id!r}", kind=TYPE, name=id,
                          endpoint=self.provider.endpoint)
        return None


def _parse(diags: Diagnostics, planned: State) -> Optional[models.Policy]:
    from egress_provider.resources.common import drop_nulls

    try:
        return models.parse(KIND, drop_nulls(_model_data(planned)))
    except models.InvalidObject as err:
        add_invalid_object(diags, err)
        return None
