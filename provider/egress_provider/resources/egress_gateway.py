"""`egress_gateway`: the seed's AnthosNetworkGateway, a named set of floating IPs for egress."""

from __future__ import annotations

from typing import Optional

from tf.iface import Config, CreateContext, DeleteContext, ImportContext, ReadContext, Resource, State, UpdateContext
from tf.schema import Attribute, Schema
from tf.types import Number, String
from tf.utils import Diagnostics

from egress_api import errors, models
from egress_provider.framework.diagnostics import add_api_error, add_invalid_object
from egress_provider.framework.servicer import PlanContext
from egress_provider.framework.types import CanonicalStringSet
from egress_provider.resources.common import call, plan_time_check, validate_config

KIND = "gateway"
TYPE = "egress_gateway"
PLACEHOLDERS = {"name": "placeholder", "floating_ips": ["192.0.2.1"]}


def to_state(versioned) -> State:
    gw: models.Gateway = versioned.obj
    return {
        "id": gw.name,
        "name": gw.name,
        "floating_ips": list(gw.floating_ips),
        "resource_version": versioned.resource_version,
    }


class EgressGateway(Resource):
    # Every write bumps the agent's resource_version, so any change makes it unknown at plan.
    computed_on_change = ("resource_version",)

    def __init__(self, provider):
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "gateway"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            version=0,
            description=(
                "A named set of floating IPs for egress (the AnthosNetworkGateway of Anthos clusters on bare metal). "
                "The agent assigns each floating IP to one Up node whose uplink subnet contains it, workers before "
                "masters, nodes holding fewest floating IPs first, and moves it when that node goes down. "
                "Where each IP is held is shown by the `egress_gateway_status` data source."
            ),
            attributes=[
                Attribute("id", String(), computed=True, description="The gateway's name."),
                Attribute(
                    "name",
                    String(),
                    optional=True,
                    computed=True,
                    default="default",
                    requires_replace=True,
                    description="Name of the gateway: 1-63 lower-case letters, digits or `-`. Default `default`. "
                    "Changing it replaces the gateway.",
                ),
                Attribute(
                    "floating_ips",
                    CanonicalStringSet(models.parse_ipv4),
                    required=True,
                    description="IPv4 addresses (at least one) the agent assigns to nodes as egress source "
                    "addresses. Each must be in the subnet of some node's uplink and belong to no other gateway. "
                    "Two or more per L2 domain survive a node failure. Updated in place.",
                ),
                Attribute(
                    "resource_version",
                    Number(),
                    computed=True,
                    description="The agent's version of the object; updates and deletes carry it so a concurrent "
                    "change made elsewhere fails with a conflict instead of being overwritten.",
                ),
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
            view.gateway_gone(current["name"])  # replaced: the old object is deleted first
        if not ctx.changed_fields or self.provider.endpoint is None:
            return planned
        model = validate_config(Diagnostics(), KIND, _model_data(planned), PLACEHOLDERS)
        if model is not None:
            plan_time_check(ctx.diagnostics, self.provider.client(), view, model, kind=TYPE)
            view.plan_gateway(model)
        return planned

    def plan_destroy(self, ctx: PlanContext, current: State) -> None:
        self.provider.plan_view.gateway_gone(current["name"])

    # --- apply ---
    def create(self, ctx: CreateContext, planned: State) -> Optional[State]:
        model = _parse(ctx.diagnostics, planned)
        if model is None:
            return None
        v = call(
            ctx.diagnostics,
            self.provider.client().create_gateway,
            model,
            action=f'create egress_gateway "{model.name}"',
            kind=TYPE,
            name=model.name,
            endpoint=self.provider.endpoint,
        )
        return to_state(v) if v else None

    def update(self, ctx: UpdateContext, current: State, planned: State) -> Optional[State]:
        model = _parse(ctx.diagnostics, planned)
        if model is None:
            return current
        v = call(
            ctx.diagnostics,
            self.provider.client().update_gateway,
            model,
            resource_version=int(current.get("resource_version") or 0),
            action=f'update egress_gateway "{model.name}"',
            kind=TYPE,
            name=model.name,
            endpoint=self.provider.endpoint,
        )
        return to_state(v) if v else current

    def delete(self, ctx: DeleteContext, current: State):
        name = current["name"]
        try:
            self.provider.client().delete_gateway(name, resource_version=int(current.get("resource_version") or 0))
        except errors.NotFound:
            return None  # already gone: the goal of a delete
        except errors.ApiError as err:
            add_api_error(ctx.diagnostics, err, action=f'delete egress_gateway "{name}"', kind=TYPE, name=name,
                          endpoint=self.provider.endpoint)
            return current
        return None

    # --- read / import ---
    def read(self, ctx: ReadContext, current: State) -> Optional[State]:
        name = current.get("name") or current.get("id")
        try:
            return to_state(self.provider.client().get_gateway(name))
        except errors.NotFound:
            return None  # deleted outside Terraform: drop from state so the next plan re-creates it

    def import_(self, ctx: ImportContext, id: str) -> Optional[State]:
        try:
            return to_state(self.provider.client().get_gateway(id))
        except errors.NotFound:
            ctx.diagnostics.add_error(
                f"Cannot import egress_gateway {id!r}: no such gateway",
                "The agent has no gateway by that name. `egressctl get gateways` lists them.",
            )
        except errors.ApiError as err:
            add_api_error(ctx.diagnostics, err, action=f"import egress_gateway {id!r}", kind=TYPE, name=id,
                          endpoint=self.provider.endpoint)
        return None


def _model_data(values: dict) -> dict:
    return {"name": values.get("name"), "floating_ips": values.get("floating_ips")}


def _parse(diags: Diagnostics, planned: State) -> Optional[models.Gateway]:
    try:
        return models.parse(KIND, {"name": planned["name"], "floating_ips": planned["floating_ips"]})
    except models.InvalidObject as err:
        add_invalid_object(diags, err)
        return None
