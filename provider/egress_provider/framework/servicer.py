"""tf's ProviderServicer with its gaps closed.

- PlanResourceChange: the resource's `plan` hook runs on create too, with the
  config; optional+computed attributes with a default take it when unset
  (`name` -> "default"), so removing `name` from config plans a replacement;
  computed attributes the resource lists in `computed_on_change` become
  unknown when anything changes; destroy plans (plan_destroy capability) are
  answered instead of rejected.
- Every RPC is wrapped: an uncaught exception becomes an error diagnostic
  (never `rpc error: code = Unknown`), an egress agent error a diagnostic
  that says what to do.
- A null state is sent as msgpack nil, so Terraform decodes a typed null.
- Unknown values keep their refinements both ways (see unknowns.py): importing
  this module installs that codec into tf.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from tf.gen import tfplugin_pb2 as pb
from tf.iface import PlanContext as TfPlanContext
from tf.provider import ProviderServicer, _decode_state, _encode_state
from tf.types import Unknown
from tf.utils import Diagnostics, _to_attribute_path, read_dynamic_value

from egress_provider.framework import unknowns
from egress_provider.framework.logs import TRACE
from egress_provider.framework.types import equal
from egress_provider.framework.unknowns import is_unknown

unknowns.install()

log = logging.getLogger("rpc")

NULL = pb.DynamicValue(msgpack=b"\xc0")  # msgpack nil: a typed null on the Terraform side


@dataclass
class PlanContext(TfPlanContext):
    """tf's PlanContext plus what a plan hook needs to decide: config and prior state."""

    config: dict = field(default_factory=dict)
    prior: Optional[dict] = None

    @property
    def creating(self) -> bool:
        return self.prior is None


def _internal_error(rpc_name: str, exc: BaseException) -> Diagnostics:
    from egress_api import errors

    diags = Diagnostics()
    if isinstance(exc, unknowns.WireError):
        diags.add_error(
            "Terraform sent a value the egress provider cannot read",
            f"{exc}\n\nThis Terraform may be newer than the provider: upgrade terraform-provider-egress.",
        )
        return diags
    if isinstance(exc, errors.ApiError):
        from egress_provider.framework.diagnostics import add_api_error

        add_api_error(diags, exc, action=f"complete {rpc_name}", kind="object", name="")
        return diags
    log.error("%s failed", rpc_name, exc_info=exc, extra={"rpc": rpc_name})  # shown under TF_LOG_PROVIDER
    diags.add_error(
        f"Internal error in the egress provider ({rpc_name})",
        f"{type(exc).__name__}: {exc}\n\nThis is a bug in terraform-provider-egress. Run the command again with "
        "TF_LOG=debug (or TF_LOG_PROVIDER=ERROR) and report the traceback it logs.",
    )
    return diags


# Benchmarks set this to measure the provider's own share of a Terraform run:
# one "<rpc>\t<start>\t<end>" line (CLOCK_MONOTONIC, comparable across the
# plugin processes Terraform starts) is appended per RPC.
_RPC_LOG = os.environ.get("EGRESS_PROVIDER_RPC_LOG")


_rpc_log_fd: Optional[int] = None


def _log_rpc(rpc_name: str, started: float) -> None:
    global _rpc_log_fd
    if _rpc_log_fd is None:  # opened once: an open per RPC was a tenth of a 1,000-policy plan's samples
        _rpc_log_fd = os.open(_RPC_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    # One write(2) per line on an O_APPEND descriptor: concurrent RPCs never interleave a line.
    os.write(_rpc_log_fd, f"{rpc_name}\t{started:.6f}\t{time.monotonic():.6f}\n".encode())


def _guard(rpc_name: str, method):
    response_cls = getattr(pb, rpc_name).Response

    @functools.wraps(method)
    def wrapper(self, request, context):
        started = time.monotonic()
        try:
            return method(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every failure must reach the user as a diagnostic
            diags = _internal_error(rpc_name, exc)
            if "diagnostics" in response_cls.DESCRIPTOR.fields_by_name:
                return response_cls(diagnostics=diags.to_pb())
            if rpc_name == "CallFunction":
                return response_cls(error=pb.FunctionError(text=diags.diagnostics[0].summary))
            raise
        finally:
            if _RPC_LOG:
                _log_rpc(rpc_name, started)
            log.log(TRACE, "%s done", rpc_name,
                    extra={"rpc": rpc_name, "duration_ms": round((time.monotonic() - started) * 1000, 1)})

    return wrapper


class Servicer(ProviderServicer):
    def _attrs_blocks(self, type_name: str):
        return self._get_res_attrs(type_name), self._get_res_blocks(type_name)

    def PlanResourceChange(self, request: pb.PlanResourceChange.Request, context):
        R = pb.PlanResourceChange.Response
        type_name = request.type_name

        attrs, blocks = self._attrs_blocks(type_name)
        diags = Diagnostics()
        _, prior = _decode_state(diags, attrs, blocks, request.prior_state)
        proposed_enc, proposed = _decode_state(diags, attrs, blocks, request.proposed_new_state)
        config = read_dynamic_value(request.config) or {}
        if diags.has_errors():
            return R(diagnostics=diags.to_pb())
        inst = self.app.new_resource(self._get_res_cls(type_name))
        if proposed is None:  # destroy: nothing to plan but the null; the resource may take note
            if hasattr(inst, "plan_destroy"):
                inst.plan_destroy(PlanContext(diags, type_name, changed_fields=set(), config={}, prior=prior), prior)
            return R(planned_state=NULL, diagnostics=diags.to_pb())

        planned = dict(proposed)
        for name, attr in attrs.items():
            if attr.computed and attr.optional and config.get(name) is None and attr.default is not Unknown:
                planned[name] = attr.default  # unset in config means the default, not "keep prior"
            elif prior is None and attr.computed and planned.get(name) is None:
                planned[name] = attr.default

        if prior is None:
            changed = set(attrs) | set(blocks)
        else:
            changed = {n for n, a in attrs.items() if n in prior and not equal(a.type, prior[n], planned.get(n))}
            changed |= {n for n, b in blocks.items() if not _blocks_equal(b, prior.get(n), planned.get(n))}
        requires_replace = sorted(n for n in changed if prior is not None and attrs.get(n) and attrs[n].requires_replace)
        if prior is not None and changed - set(getattr(inst, "provider_only_fields", ())):
            for name in getattr(inst, "computed_on_change", ()):
                planned[name] = Unknown

        ctx = PlanContext(diags, type_name, changed_fields=changed, config=config, prior=prior)
        planned = inst.plan(ctx, prior, planned)
        return R(
            planned_state=_encode_state(attrs, blocks, planned, proposed_enc),
            requires_replace=[_to_attribute_path([n]) for n in requires_replace],
            diagnostics=diags.to_pb(),
        )

    def GetProviderSchema(self, request, context):
        """tf's schema response plus the server capabilities tf announces only in GetMetadata.

        Terraform takes the capabilities from the schema response it caches; without plan_destroy
        there, it never sends a destroy plan (PlanResourceChange with a null proposed state), so the
        provider could not check what a destroy leaves behind.
        """
        resp = super().GetProviderSchema(request, context)
        resp.server_capabilities.CopyFrom(pb.ServerCapabilities(plan_destroy=True, get_provider_schema_optional=True))
        return resp

    def UpgradeResourceState(self, request, context):
        """State written by an older provider lacks attributes added since: they are null, not an error.

        Terraform decodes the upgraded state against the current schema and refuses an object with
        attributes missing ("an object with 8 attributes is required (6 given)").
        """
        if request.raw_state.json:
            state = json.loads(request.raw_state.json)
            attrs, blocks = self._attrs_blocks(request.type_name)
            if isinstance(state, dict) and any(n not in state for n in (*attrs, *blocks)):
                for name in (*attrs, *blocks):
                    state.setdefault(name, None)
                request = pb.UpgradeResourceState.Request(
                    type_name=request.type_name, version=request.version,
                    raw_state=pb.RawState(json=json.dumps(state).encode()),
                )
        return super().UpgradeResourceState(request, context)

    def ReadResource(self, request, context):
        resp = super().ReadResource(request, context)
        return _null_if_empty(resp, "new_state")

    def ApplyResourceChange(self, request, context):
        resp = super().ApplyResourceChange(request, context)
        return _null_if_empty(resp, "new_state")


def _blocks_equal(block, a: Any, b: Any) -> bool:
    if is_unknown(a) or is_unknown(b):
        return False
    return block.semantically_equal(a, b)


def _null_if_empty(resp, field_name: str):
    value = getattr(resp, field_name)
    if not value.msgpack and not value.json:
        getattr(resp, field_name).CopyFrom(NULL)
    return resp


# Wrap every RPC of the tfplugin6 service, including the ones tf implements itself.
for _name in pb.DESCRIPTOR.services_by_name["Provider"].methods_by_name:
    _method = getattr(Servicer, _name, None)
    if _method is not None and hasattr(pb, _name):
        setattr(Servicer, _name, _guard(_name, _method))
