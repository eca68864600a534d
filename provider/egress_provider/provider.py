"""The `egress` provider: configuration (agent endpoint, timeout) and its resources and data sources."""

from __future__ import annotations

import os
from typing import Optional

from tf.iface import Config, Provider
from tf.schema import Attribute, Schema
from tf.types import Number, String
from tf.utils import Diagnostics

from egress_provider.framework.unknowns import is_unknown

SOURCE = "egressnat/egress"
FULL_NAME = f"registry.terraform.io/{SOURCE}"
ENDPOINT_ENV = "EGRESS_ENDPOINT"
DEFAULT_TIMEOUT = 10.0

ENDPOINT_HELP = (
    "Set `endpoint` in the provider block, e.g.\n\n"
    '  provider "egress" {\n    endpoint = "unix:///run/egress/agent.sock"\n  }\n\n'
    f"or export {ENDPOINT_ENV}=unix:///run/egress/agent.sock. The value is the egress-agent's gRPC target: "
    "unix:///absolute/path for its unix socket (egress-agent --socket), or host:port for TCP."
)


def provider_schema() -> Schema:
    return Schema(
        version=0,
        description="Manages deterministic egress NAT on bare-metal clusters through an egress-agent.",
        attributes=[
            Attribute(
                "endpoint",
                String(),
                optional=True,
                description=f"gRPC target of an egress-agent: `unix:///path/to/agent.sock` or `host:port`. "
                f"Defaults to the `{ENDPOINT_ENV}` environment variable.",
            ),
            Attribute(
                "timeout",
                Number(),
                optional=True,
                description=f"Seconds to wait for each call to the agent. Default {DEFAULT_TIMEOUT:g}.",
            ),
        ],
    )


def _check_endpoint(endpoint: str) -> Optional[str]:
    """A reason why `endpoint` is not a gRPC target the agent client accepts, or None."""
    from egress_api import transport

    try:
        transport.parse_target(endpoint)
    except transport.TargetError as err:
        return str(err)
    return None


class EgressProvider(Provider):
    def __init__(self):
        self.endpoint: Optional[str] = None
        self.timeout: float = DEFAULT_TIMEOUT
        self._client = None
        from egress_provider.config_inventory import ConfigInventory
        from egress_provider.resources.plan_checks import PlanView

        self.plan_view = PlanView()  # what this plugin process has planned (see PlanView)
        self.config_inventory = ConfigInventory()  # the configuration as the validate walk saw it
        from egress_provider.resources.lifecycle import AdoptedObjects

        self.adopted = AdoptedObjects()  # objects a create took over in this apply (create_before_destroy)

    # --- identity and schema ---
    def get_model_prefix(self) -> str:
        return "egress_"

    def full_name(self) -> str:
        return FULL_NAME

    def get_provider_schema(self, diags: Diagnostics) -> Schema:
        return provider_schema()

    def get_resources(self):
        from egress_provider.resources.egress_gateway import EgressGateway
        from egress_provider.resources.egress_nat_policy import EgressNatPolicy

        return [EgressGateway, EgressNatPolicy]

    def get_data_sources(self):
        from egress_provider.data_sources.egress_effective_ip import EgressEffectiveIP
        from egress_provider.data_sources.egress_gateway_status import EgressGatewayStatus
        from egress_provider.data_sources.egress_node import EgressNode

        return [EgressGatewayStatus, EgressNode, EgressEffectiveIP]

    # --- configuration ---
    def validate_config(self, diags: Diagnostics, config: Config):
        endpoint, timeout = config.get("endpoint"), config.get("timeout")
        if isinstance(endpoint, str):
            reason = _check_endpoint(endpoint)
            if reason:
                diags.add_error("Invalid endpoint", reason, path=["endpoint"])
        if isinstance(timeout, (int, float)) and timeout <= 0:
            diags.add_error("Invalid timeout", f"timeout must be a positive number of seconds, not {timeout}", path=["timeout"])

    def configure_provider(self, diags: Diagnostics, config: Config):
        endpoint = config.get("endpoint")
        if is_unknown(endpoint):
            diags.add_error(
                "endpoint is not known yet",
                "The provider's `endpoint` depends on a value Terraform only learns during apply. "
                "Use a literal, a variable, or EGRESS_ENDPOINT.",
                path=["endpoint"],
            )
            return
        endpoint = endpoint or os.environ.get(ENDPOINT_ENV, "").strip()
        if not endpoint:
            diags.add_error("No egress agent endpoint configured", ENDPOINT_HELP)
            return
        reason = _check_endpoint(endpoint)
        if reason:
            diags.add_error("Invalid endpoint", reason, path=["endpoint"] if config.get("endpoint") else None)
            return
        timeout = config.get("timeout")
        self.endpoint = endpoint
        self.timeout = float(timeout) if isinstance(timeout, (int, float)) else DEFAULT_TIMEOUT

        from egress_api import errors

        try:
            self.client().health()
        except errors.ApiError as err:
            diags.add_error(
                f"Cannot reach the egress agent at {endpoint}",
                f"{err.message}\n\nCheck that egress-agent is running and listening there "
                f"(egress-agent --socket PATH), and that `endpoint` / {ENDPOINT_ENV} is right.",
            )

    def client(self):
        """The agent client (created on first use; one channel per plugin process)."""
        if self._client is None:
            from egress_api.client import EgressClient

            self._client = EgressClient(self.endpoint, timeout=self.timeout)
        return self._client


def make_provider() -> EgressProvider:
    return EgressProvider()
