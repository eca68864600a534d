"""The `egress` provider: configuration (agent endpoints, timeout) and its resources and data sources.

`endpoints` lists agents of one cluster (any agent serves the whole cluster);
calls go to the one that answered last and fail over to the next when an agent
cannot be reached (see egress_api.calls for which failures fail over).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

from tf.iface import Config, Provider
from tf.schema import Attribute, Schema
from tf.types import List, Number, String
from tf.utils import Diagnostics

from egress_provider.framework.unknowns import is_unknown

log = logging.getLogger("provider")

SOURCE = "egressnat/egress"
FULL_NAME = f"registry.terraform.io/{SOURCE}"
ENDPOINT_ENV = "EGRESS_ENDPOINT"
ENDPOINTS_ENV = "EGRESS_ENDPOINTS"
TLS_ENV = {"ca_file": "EGRESS_CA_FILE", "cert_file": "EGRESS_CERT_FILE", "key_file": "EGRESS_KEY_FILE"}
DEFAULT_TIMEOUT = 10.0
HEALTH_PROBE_TIMEOUT = 2.0  # seconds per endpoint for the check at configure time

ENDPOINT_HELP = (
    "Set `endpoints` in the provider block, e.g.\n\n"
    '  provider "egress" {\n    endpoints = ["unix:///run/egress/agent.sock", "192.0.2.12:7443"]\n  }\n\n'
    f"or export {ENDPOINTS_ENV}=unix:///run/egress/agent.sock,192.0.2.12:7443 (comma-separated). Each value is an "
    "egress-agent's gRPC target: unix:///absolute/path for its unix socket (egress-agent --socket), or host:port "
    "for TCP (egress-agent --listen). `endpoint` and EGRESS_ENDPOINT are the one-agent form."
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
                description="gRPC target of one egress-agent: `unix:///path/to/agent.sock` or `host:port`. "
                "The one-element form of `endpoints`; set one of the two.",
            ),
            Attribute(
                "endpoints",
                List(String()),
                optional=True,
                description="gRPC targets of egress-agents of one cluster, tried in order: calls go to the agent "
                "that answered last and fail over to the next when it cannot be reached, so one dead node does "
                "not stop a plan. A write whose outcome is unknown (sent, no answer) is retried with the same "
                "request id, which the agents apply at most once. Defaults to the comma-separated "
                f"`{ENDPOINTS_ENV}` (or `{ENDPOINT_ENV}`) environment variable.",
            ),
            Attribute(
                "ca_file",
                String(),
                optional=True,
                sensitive=True,
                description="For TCP endpoints: the CA that signed the agents' certificates, as a file path or PEM "
                "contents. Defaults to `EGRESS_CA_FILE`. Unix sockets are local and ignore it.",
            ),
            Attribute(
                "cert_file",
                String(),
                optional=True,
                sensitive=True,
                description="This client's certificate (mutual TLS), as a file path or PEM contents: its "
                "`spiffe://egress/role/...` URI is the role the agent grants (`admin` to apply, `viewer` is "
                "enough to plan). Defaults to `EGRESS_CERT_FILE`.",
            ),
            Attribute(
                "key_file",
                String(),
                optional=True,
                sensitive=True,
                description="The private key of `cert_file`, as a file path or PEM contents. Defaults to "
                "`EGRESS_KEY_FILE`.",
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
        self.endpoint: Optional[str] = None  # the configured endpoints, comma-separated; None until configured
        self.timeout: float = DEFAULT_TIMEOUT
        self.tls = None  # egress_api.transport.ClientTLS for TCP endpoints, from ca_file/cert_file/key_file
        self._client = None
        from egress_provider.config_inventory import ConfigInventory
        from egress_provider.resources.plan_checks import AgentEstate, PlanView

        self.plan_view = PlanView()  # what this plugin process has planned (see PlanView)
        self.estate = AgentEstate()  # the agent's objects, read once per plugin process (see AgentEstate)
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
        from egress_provider.data_sources.egress_policy_status import EgressPolicyStatus

        return [EgressGatewayStatus, EgressPolicyStatus, EgressNode, EgressEffectiveIP]

    # --- configuration ---
    def validate_config(self, diags: Diagnostics, config: Config):
        endpoint, endpoints, timeout = config.get("endpoint"), config.get("endpoints"), config.get("timeout")
        if isinstance(endpoint, str):
            reason = _check_endpoint(endpoint)
            if reason:
                diags.add_error("Invalid endpoint", reason, path=["endpoint"])
        if endpoint is not None and endpoints is not None:
            diags.add_error("Conflicting endpoint settings", "Set either `endpoint` (one agent) or `endpoints` "
                            "(a list), not both.", path=["endpoints"])
        if isinstance(endpoints, list):
            if not endpoints:
                diags.add_error("Invalid endpoints", "`endpoints` must list at least one agent.", path=["endpoints"])
            for i, item in enumerate(endpoints):
                reason = _check_endpoint(item) if isinstance(item, str) else None
                if reason:
                    diags.add_error("Invalid endpoints", reason, path=["endpoints", (i,)])
        if isinstance(timeout, (int, float)) and timeout <= 0:
            diags.add_error("Invalid timeout", f"timeout must be a positive number of seconds, not {timeout}", path=["timeout"])

    def configure_provider(self, diags: Diagnostics, config: Config):
        endpoints = _configured_endpoints(diags, config)
        if endpoints is None:
            return
        tls = _configured_tls(diags, config)
        if tls is False:
            return
        self.tls = tls
        timeout = config.get("timeout")
        self.endpoint = ",".join(endpoints)
        self.timeout = float(timeout) if isinstance(timeout, (int, float)) else DEFAULT_TIMEOUT
        log.debug("configured", extra={"endpoints": self.endpoint, "timeout_s": self.timeout})

        from egress_api import errors

        try:
            # A short probe: an agent that accepts connections but hangs (paused, overloaded) costs this
            # long per plugin process before the next endpoint is tried, not the full `timeout`.
            self.client().health(timeout=min(self.timeout, HEALTH_PROBE_TIMEOUT))
        except errors.PermissionDenied as err:
            diags.add_error("Not allowed to use the egress agent",
                            f"{err.message}\n\nGive the provider a client certificate the agent accepts (`cert_file`/"
                            "`key_file`, or EGRESS_CERT_FILE/EGRESS_KEY_FILE), or on a unix socket run Terraform as a "
                            "user the agent's --socket-roles names. See docs/security.md.")
        except errors.ApiError as err:
            where = endpoints[0] if len(endpoints) == 1 else "any of " + ", ".join(endpoints)
            diags.add_error(
                f"Cannot reach the egress agent at {where}",
                f"{err.message}\n\nCheck that egress-agent is running and listening there "
                f"(egress-agent --socket PATH or --listen HOST:PORT), and that `endpoints` / {ENDPOINTS_ENV} is right.",
            )

    def client(self):
        """The agent client (created on first use; one channel per plugin process)."""
        if self._client is None:
            from egress_api.client import EgressClient

            self._client = EgressClient(self.endpoint, timeout=self.timeout, tls=self.tls)
        return self._client


def _configured_tls(diags: Diagnostics, config: Config):
    """ClientTLS from ca_file/cert_file/key_file (or EGRESS_*_FILE), None for none, False after an error."""
    from egress_api import transport

    values = {}
    for name, env in TLS_ENV.items():
        value: Any = config.get(name)
        if is_unknown(value):
            diags.add_error(f"{name} is not known yet", f"The provider's `{name}` depends on a value Terraform only "
                            f"learns during apply. Use a literal, a variable, a file(), or {env}.", path=[name])
            return False
        values[name] = value or os.environ.get(env, "")
    try:
        return transport.ClientTLS.load(values["ca_file"], values["cert_file"], values["key_file"],
                                        what="ca_file/cert_file/key_file")
    except transport.TLSConfigError as err:
        attribute = next((n for n in TLS_ENV if str(err).startswith(n)), "ca_file")
        diags.add_error("Invalid TLS settings", f"{err} (the provider's `{attribute}`, or {TLS_ENV[attribute]})",
                        path=[attribute] if config.get(attribute) else None)
        return False


def _configured_endpoints(diags: Diagnostics, config: Config) -> Optional[list[str]]:
    """The agents to talk to, from `endpoints`, `endpoint`, EGRESS_ENDPOINTS or EGRESS_ENDPOINT (first set wins)."""
    from egress_api import calls, transport

    for name in ("endpoints", "endpoint"):
        value: Any = config.get(name)
        if is_unknown(value) or (isinstance(value, list) and any(is_unknown(v) for v in value)):
            diags.add_error(
                f"{name} is not known yet",
                f"The provider's `{name}` depends on a value Terraform only learns during apply. "
                f"Use a literal, a variable, or {ENDPOINTS_ENV}.",
                path=[name],
            )
            return None
        if value:
            try:
                return calls.parse_endpoints(value)
            except transport.TargetError as err:
                diags.add_error(f"Invalid {name}", str(err), path=[name])
                return None
    for env in (ENDPOINTS_ENV, ENDPOINT_ENV):
        value = os.environ.get(env, "").strip()
        if value:
            try:
                return calls.parse_endpoints(value)
            except transport.TargetError as err:
                diags.add_error(f"Invalid {env}", f"{env}={value!r}: {err}")
                return None
    diags.add_error("No egress agent endpoint configured", ENDPOINT_HELP)
    return None


def make_provider() -> EgressProvider:
    return EgressProvider()
