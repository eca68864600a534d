"""Terraform plugin protocol 6.10 in front of the house servicer (which, through `tf` 1.2.0, speaks about 6.6).

`tf` ships stubs generated from an older tfplugin6.proto and registers them in
protobuf's default pool; we vendor the official 6.10 proto
(`tfplugin6/tfplugin6.proto`, see scripts/gen-proto) and serve *its* service.
Each RPC is either

- new in 6.9/6.10 and answered here: resource identity
  (GetResourceIdentitySchemas, UpgradeResourceIdentity) and list resources
  (ValidateListResourceConfig, ListResource, for `terraform query`); or
- handed to the house `Servicer` unchanged: the request is re-read as tf's
  message type from its wire bytes (field numbers are stable across protocol
  minors, and unknown fields survive), and the answer is re-read as ours;
  where 6.10 added a response field (identities, list schemas) it is filled
  in afterwards.

Resources opt in with `identity_attributes` (string attributes of their state
that identify the object, e.g. ("name",)) and `list_states()` (every object's
state, for listing); see resources/lifecycle.py.
"""

from __future__ import annotations

import functools
import json
import time
import traceback
import sys
from typing import Any, Callable, Iterator, Optional

import msgpack
from tf.gen import tfplugin_pb2 as tf_pb
from tf.provider import _encode_state
from tf.utils import Diagnostics

from egress_provider.framework import servicer as house
from egress_provider.framework.tfplugin6 import tfplugin6_pb2 as pb
from egress_provider.framework.tfplugin6 import tfplugin6_pb2_grpc as rpc

PROTOCOL_VERSION = "6.10"  # of tfplugin6/tfplugin6.proto; terraform-registry-manifest.json says the same
STRING_TYPE = b'"string"'  # cty's JSON type name, as schemas carry types


def _convert(message, to_cls):
    """The same wire bytes read as another generation's message class."""
    return to_cls.FromString(message.SerializeToString())


def _diagnostics_pb(diags: Diagnostics) -> list:
    return [_convert(d, pb.Diagnostic) for d in diags.to_pb()]


def _guard(rpc_name: str, streaming: bool = False):
    """Like the house servicer's guard: an exception becomes an error diagnostic, every RPC is timed."""

    def wrap(method):
        response_cls = getattr(pb, rpc_name).Event if streaming else getattr(pb, rpc_name).Response
        field = "diagnostic" if streaming else "diagnostics"
        logged_by_house = hasattr(tf_pb, rpc_name)  # the house servicer times the RPCs tf knows

        def failure(exc: Exception):
            traceback.print_exc(file=sys.stderr)
            diags = house._internal_error(rpc_name, exc)
            return response_cls(**{field: _diagnostics_pb(diags)})

        if streaming:
            @functools.wraps(method)
            def stream(self, request, context):
                started = time.monotonic()
                try:
                    yield from method(self, request, context)
                except Exception as exc:  # noqa: BLE001 - reaches the user as a diagnostic
                    yield failure(exc)
                finally:
                    if house._RPC_LOG:
                        house._log_rpc(rpc_name, started)

            return stream

        @functools.wraps(method)
        def unary(self, request, context):
            started = time.monotonic()
            try:
                return method(self, request, context)
            except Exception as exc:  # noqa: BLE001
                return failure(exc)
            finally:
                if house._RPC_LOG and not logged_by_house:
                    house._log_rpc(rpc_name, started)

        return unary

    return wrap


class ProtocolServicer(rpc.ProviderServicer):
    """tfplugin6.10's Provider service over `house.Servicer`."""

    def __init__(self, legacy: house.Servicer):
        self.legacy = legacy

    # --- what the provider's resources declare ---
    def _resource_classes(self) -> dict[str, type]:
        return self.legacy._load_res_cls_map()

    def _identity_attributes(self, type_name: str) -> tuple[str, ...]:
        return tuple(getattr(self._resource_classes().get(type_name), "identity_attributes", ()))

    def _listable(self) -> dict[str, type]:
        return {t: c for t, c in self._resource_classes().items() if hasattr(c, "list_states")}

    def _identity(self, type_name: str, state: Optional[pb.DynamicValue]) -> Optional[pb.ResourceIdentityData]:
        """The identity of a resource instance from its (msgpack) state; None for a null state or no identity."""
        names = self._identity_attributes(type_name)
        if not names or state is None or not state.msgpack or state.msgpack == b"\xc0":
            return None
        values = msgpack.unpackb(state.msgpack, raw=False, strict_map_key=False)
        return self._identity_of(names, values)

    @staticmethod
    def _identity_of(names: tuple[str, ...], values: dict) -> Optional[pb.ResourceIdentityData]:
        identity = {n: values.get(n) for n in names}
        if not all(isinstance(v, str) for v in identity.values()):
            return None  # unknown at plan (a name computed from another resource): identity comes with apply
        return pb.ResourceIdentityData(identity_data=pb.DynamicValue(msgpack=msgpack.packb(identity)))

    # --- schemas ---
    @_guard("GetMetadata")
    def GetMetadata(self, request, context):
        resp = _convert(self.legacy.GetMetadata(_convert(request, tf_pb.GetMetadata.Request), context),
                        pb.GetMetadata.Response)
        resp.list_resources.extend(pb.GetMetadata.ListResourceMetadata(type_name=t) for t in sorted(self._listable()))
        return resp

    @_guard("GetProviderSchema")
    def GetProviderSchema(self, request, context):
        resp = _convert(self.legacy.GetProviderSchema(_convert(request, tf_pb.GetProviderSchema.Request), context),
                        pb.GetProviderSchema.Response)
        for type_name, cls in self._listable().items():
            resp.list_resource_schemas[type_name].CopyFrom(_convert(cls.list_schema().to_pb(), pb.Schema))
        return resp

    @_guard("GetResourceIdentitySchemas")
    def GetResourceIdentitySchemas(self, request, context):
        resp = pb.GetResourceIdentitySchemas.Response()
        for type_name, cls in self._resource_classes().items():
            names = self._identity_attributes(type_name)
            if not names:
                continue
            attrs = {a.name: a for a in cls.get_schema().attributes}
            resp.identity_schemas[type_name].CopyFrom(pb.ResourceIdentitySchema(
                version=getattr(cls, "identity_version", 0),
                identity_attributes=[
                    pb.ResourceIdentitySchema.IdentityAttribute(
                        name=n, type=STRING_TYPE, required_for_import=True, description=attrs[n].description or "",
                    )
                    for n in names
                ],
            ))
        return resp

    @_guard("UpgradeResourceIdentity")
    def UpgradeResourceIdentity(self, request, context):
        # One identity version so far (0): stored identities are already current; re-encode JSON as msgpack.
        cls = self._resource_classes().get(request.type_name)
        current = getattr(cls, "identity_version", 0)
        if request.version != current:
            diags = Diagnostics().add_error(
                f"Cannot upgrade the identity of {request.type_name}",
                f"The state holds identity version {request.version}; this provider knows version {current}. "
                "Use the provider version that wrote this state, or re-import the resource.",
            )
            return pb.UpgradeResourceIdentity.Response(diagnostics=_diagnostics_pb(diags))
        values = json.loads(request.raw_identity.json or b"{}")
        return pb.UpgradeResourceIdentity.Response(
            upgraded_identity=pb.ResourceIdentityData(identity_data=pb.DynamicValue(msgpack=msgpack.packb(values)))
        )

    # --- managed resources: the house servicer's answers plus identity ---
    @_guard("ReadResource")
    def ReadResource(self, request, context):
        resp = _convert(self.legacy.ReadResource(_convert(request, tf_pb.ReadResource.Request), context),
                        pb.ReadResource.Response)
        identity = self._identity(request.type_name, resp.new_state)
        if identity is not None:
            resp.new_identity.CopyFrom(identity)
        return resp

    @_guard("PlanResourceChange")
    def PlanResourceChange(self, request, context):
        resp = _convert(self.legacy.PlanResourceChange(_convert(request, tf_pb.PlanResourceChange.Request), context),
                        pb.PlanResourceChange.Response)
        identity = self._identity(request.type_name, resp.planned_state)
        if identity is not None:
            resp.planned_identity.CopyFrom(identity)
        return resp

    @_guard("ApplyResourceChange")
    def ApplyResourceChange(self, request, context):
        resp = _convert(self.legacy.ApplyResourceChange(_convert(request, tf_pb.ApplyResourceChange.Request), context),
                        pb.ApplyResourceChange.Response)
        identity = self._identity(request.type_name, resp.new_state)
        if identity is not None:
            resp.new_identity.CopyFrom(identity)
        return resp

    @_guard("ImportResourceState")
    def ImportResourceState(self, request, context):
        """Import by ID (`terraform import`, `import { id = ... }`) or by identity (`import { identity = {...} }`)."""
        legacy_request = _convert(request, tf_pb.ImportResourceState.Request)
        if not request.id and request.HasField("identity"):
            names = self._identity_attributes(request.type_name)
            values = msgpack.unpackb(request.identity.identity_data.msgpack or b"\x80", raw=False)
            if names != ("name",) or not isinstance(values.get("name"), str):
                diags = Diagnostics().add_error(
                    f"Cannot import {request.type_name} by identity",
                    f"The identity must give {', '.join(names) or 'nothing'} as strings, e.g. identity = {{ name = \"default\" }}.",
                )
                return pb.ImportResourceState.Response(diagnostics=_diagnostics_pb(diags))
            legacy_request.id = values["name"]  # the object's name is its import ID
        resp = _convert(self.legacy.ImportResourceState(legacy_request, context), pb.ImportResourceState.Response)
        for imported in resp.imported_resources:
            identity = self._identity(imported.type_name, imported.state)
            if identity is not None:
                imported.identity.CopyFrom(identity)
        return resp

    # --- list resources (`terraform query`) ---
    @_guard("ValidateListResourceConfig")
    def ValidateListResourceConfig(self, request, context):
        if request.type_name not in self._listable():
            diags = Diagnostics().add_error(f"{request.type_name} cannot be listed", "")
            return pb.ValidateListResourceConfig.Response(diagnostics=_diagnostics_pb(diags))
        return pb.ValidateListResourceConfig.Response()

    @_guard("ListResource", streaming=True)
    def ListResource(self, request, context) -> Iterator[pb.ListResource.Event]:
        cls = self._listable().get(request.type_name)
        if cls is None:
            diags = Diagnostics().add_error(f"{request.type_name} cannot be listed", "")
            yield pb.ListResource.Event(diagnostic=_diagnostics_pb(diags))
            return
        names = self._identity_attributes(request.type_name)
        attrs, blocks = self.legacy._attrs_blocks(request.type_name)
        resource = self.legacy.app.new_resource(cls)
        for i, state in enumerate(resource.list_states()):
            if request.limit and i >= request.limit:
                return
            event = pb.ListResource.Event(identity=self._identity_of(names, state), display_name=state["name"])
            if request.include_resource_object:
                # A listing knows the stored object only: config-only and observed attributes are null.
                state = {**{name: None for name in (*attrs, *blocks)}, **state}
                event.resource_object.CopyFrom(_convert(_encode_state(attrs, blocks, state, None), pb.DynamicValue))
            yield event


def _delegate(rpc_name: str) -> Callable:
    """An RPC the house servicer answers as it is (its request and response re-read across generations)."""
    request_cls, response_cls = getattr(tf_pb, rpc_name).Request, getattr(pb, rpc_name).Response

    def method(self, request, context):
        return _convert(getattr(self.legacy, rpc_name)(_convert(request, request_cls), context), response_cls)

    method.__name__ = rpc_name
    return method


# Every other RPC tf knows is delegated; the rest (ephemeral resources, state stores, actions) stay
# UNIMPLEMENTED, which Terraform tolerates from providers that declare none of them.
for _name in pb.DESCRIPTOR.services_by_name["Provider"].methods_by_name:
    if _name not in ProtocolServicer.__dict__ and hasattr(tf_pb, _name) and hasattr(house.Servicer, _name):
        setattr(ProtocolServicer, _name, _delegate(_name))


def add_to_server(legacy: house.Servicer, server: Any) -> None:
    rpc.add_ProviderServicer_to_server(ProtocolServicer(legacy), server)
