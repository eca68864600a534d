"""Cross-object checks at plan time: an error where the configuration and the agent decide, else a warning.

The rules are the models' (`models.duplicate_source_ip`, `unclaimed_source_ip`,
`shared_floating_ips`, `released_in_use`), the same the agent reports on
writes; this module decides only how *certain* the objects they are checked
against are once the plan is applied:

- certain: planned in this walk (this plugin process saw its PlanResourceChange),
  or declared in the configuration with known values (`config_inventory`, from
  the validate walk) and not planned away;
- possible: in the agent but neither planned nor in the configuration: it may
  be destroyed later in this walk (an orphan in this state) or stay (managed
  elsewhere).

The agent's objects are read once per plugin process (`AgentEstate`) and
kept current with the provider's own writes: Terraform plans every resource
instance in turn, and reading the whole estate for each one made a plan of N
policies cost N listings (quadratic; minutes at 1,000 policies).

A violation against certain objects can never apply as intended: it is a plan
error. One that depends on possible objects is a warning (never a false
error). "The source IP is in no gateway" needs every gateway to be known, so
it is an error only with a complete inventory.
"""

from __future__ import annotations

import functools
import threading
from typing import Optional

from tf.utils import Diagnostics

from egress_api import errors, models
from egress_api.precedence import OverlapIndex, Rule
from egress_provider.config_inventory import Inventory
from egress_provider.framework.diagnostics import Locator, add_violations

DECIDED = (
    "This follows from the configuration and the objects the agent already has, whatever order Terraform "
    "applies them in, so the plan stops here: fix the configuration."
)
UNDECIDED = (
    "This depends on objects that are not in this configuration (they may be destroyed in this run, or be "
    "managed elsewhere). The agent accepts the write and keeps traffic fail-closed until the objects agree."
)


class PlanView:
    """What this plugin process has planned so far (kind -> name -> model, and names planned to be deleted)."""

    def __init__(self):
        self._lock = threading.Lock()  # Terraform plans independent resources concurrently
        self._planned: dict[str, dict[str, models.BaseModel]] = {"gateway": {}, "policy": {}}
        self._gone: dict[str, set[str]] = {"gateway": set(), "policy": set()}
        self._policies = PolicyIndex()

    def plan_object(self, kind: str, model: models.BaseModel) -> None:
        with self._lock:
            if kind == "policy":
                self._policies.put(model)
            self._planned[kind][model.name] = model
            self._gone[kind].discard(model.name)

    def object_gone(self, kind: str, name: str) -> None:
        """The `kind` object `name` is planned to be deleted (destroyed, or replaced under a new name)."""
        with self._lock:
            if name not in self._planned[kind]:  # a replacement under the same name stays planned
                self._gone[kind].add(name)

    def snapshot(self) -> tuple[dict, dict]:
        with self._lock:
            return {k: dict(v) for k, v in self._planned.items()}, {k: set(v) for k, v in self._gone.items()}

    def policies_using(self, ip: str) -> list[models.Policy]:
        """Planned policies whose source IP is `ip`."""
        with self._lock:
            return self._policies.using(ip)

    def overlapping(self, rule: Rule) -> set[str]:
        """Names of planned policies of `rule`'s priority whose destinations overlap its own."""
        with self._lock:
            return self._policies.overlaps.overlapping(rule)


class PolicyIndex:
    """Policies by source IP and by destinations (`OverlapIndex`), so that a planned policy's checks look up the
    few others that can matter instead of scanning every policy (that scan, once per planned policy, made a
    plan of N policies quadratic). Keyed by name: `put` replaces the policy's previous version. Callers lock."""

    def __init__(self, policies=()):
        self._by_name: dict[str, models.Policy] = {}
        self._by_ip: dict[Optional[str], dict[str, models.Policy]] = {}
        self.overlaps = OverlapIndex()
        for p in policies:
            self.put(p)

    def put(self, policy: models.Policy) -> None:
        self.drop(policy.name)
        self._by_name[policy.name] = policy
        self._by_ip.setdefault(policy.egress_source_ip, {})[policy.name] = policy
        rule = models.precedence_rule(policy)
        if rule is not None:  # while its destinations or priority are pending, it overlaps nothing yet
            self.overlaps.put(rule)

    def drop(self, name: str) -> None:
        before = self._by_name.pop(name, None)
        if before is not None:
            self._by_ip[before.egress_source_ip].pop(name, None)
            self.overlaps.drop(name)

    def using(self, ip: str) -> list[models.Policy]:
        return list(self._by_ip.get(ip, {}).values())


class AgentEstate:
    """The agent's gateways and policies as this plugin process knows them: listed once, on first use,
    then updated by this process's own writes (`stored`, `removed`).

    A plugin process serves one Terraform command, so the listing is as fresh as the command; writes
    made meanwhile by others (another pipeline, egressctl) are what the plan checks treat as
    "possible" objects anyway, and the agent re-checks every write against its current store.

    The same listing answers a refresh (`listed_policy`): each policy as stored with the pods it
    selects, so refreshing N policies costs one agent call, not 2N. An object this process wrote
    since is read from the agent again.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._objects: Optional[dict[str, dict[str, models.BaseModel]]] = None
        self._policies = PolicyIndex()
        self._policy_reads: dict[str, tuple] = {}  # name -> (Versioned policy, PolicySelection), as listed

    def _list(self, client) -> dict[str, dict[str, models.BaseModel]]:
        if self._objects is None:
            policies = client.list_policies_with_selection()
            self._objects = {
                "gateway": {v.obj.name: v.obj for v in client.list_gateways()},
                "policy": {v.obj.name: v.obj for v, _ in policies},
            }
            self._policy_reads = {v.obj.name: (v, sel) for v, sel in policies if sel is not None}
            self._policies = PolicyIndex(self._objects["policy"].values())
        return self._objects

    def policies_using(self, client, ip: str) -> list[models.Policy]:
        """Stored policies whose source IP is `ip` (lists the estate the first time)."""
        with self._lock:
            self._list(client)
            return self._policies.using(ip)

    def overlapping(self, client, rule: Rule) -> set[str]:
        """Names of stored policies of `rule`'s priority whose destinations overlap its own."""
        with self._lock:
            self._list(client)
            return self._policies.overlaps.overlapping(rule)

    def snapshot(self, client) -> tuple[dict[str, models.Gateway], dict[str, models.Policy]]:
        """(gateways, policies) by name; lists them from the agent the first time (errors.ApiError propagates)."""
        with self._lock:
            objects = self._list(client)
            return dict(objects["gateway"]), dict(objects["policy"])

    def listed_policy(self, client, name: str) -> Optional[tuple]:
        """(Versioned policy, PolicySelection) as listed, or None: not listed, or written by this process since
        (then read it from the agent). Lists the estate the first time (errors.ApiError propagates)."""
        with self._lock:
            self._list(client)
            return self._policy_reads.get(name)

    def stored(self, kind: str, model: models.BaseModel) -> None:
        """This process wrote `model` (created, updated or adopted it): the agent now has it as is."""
        with self._lock:
            if self._objects is not None:
                if kind == "policy":
                    self._policies.put(model)
                self._objects[kind][model.name] = model
            if kind == "policy":
                self._policy_reads.pop(model.name, None)

    def removed(self, kind: str, name: str) -> None:
        """This process deleted the `kind` object `name` (or found it gone)."""
        with self._lock:
            if self._objects is not None:
                self._objects[kind].pop(name, None)
                if kind == "policy":
                    self._policies.drop(name)
            if kind == "policy":
                self._policy_reads.pop(name, None)


class World:
    """The objects once this plan is applied, as certain or possible (see the module's docstring).

    Gateways are few and split at once; policies are split only when a check needs all of them (a
    gateway's plan, a changed policy's overlap warnings): an unchanged policy's check looks up its own
    source IP (`policies_using`), so a no-op plan of N policies is not N^2.
    """

    def __init__(self, view: PlanView, estate: AgentEstate, client, inventory: Optional[Inventory]):
        self._view, self._estate, self._client = view, estate, client
        self.stored_gateways, self._stored_policies = estate.snapshot(client)
        self._planned, self._gone = view.snapshot()
        self._inventory = inventory or Inventory(gateways_complete=False, policies_complete=False)
        config_g, self._config_policies = self._inventory.objects()
        self.certain_gateways, self.possible_gateways = _split(
            self._planned["gateway"], self._gone["gateway"], self.stored_gateways, config_g)
        self.all_gateways_known = inventory is not None and self._inventory.gateways_complete

    @functools.cached_property
    def _policies(self) -> tuple[dict[str, models.Policy], dict[str, models.Policy]]:
        return _split(self._planned["policy"], self._gone["policy"], self._stored_policies, self._config_policies)

    @property
    def certain_policies(self) -> dict[str, models.Policy]:
        return self._policies[0]

    @property
    def possible_policies(self) -> dict[str, models.Policy]:
        return self._policies[1]

    def policies_using(self, ip: Optional[str]) -> tuple[list[models.Policy], list[models.Policy]]:
        """(certain, possible) policies whose source IP is `ip`: the same split as `certain_policies` and
        `possible_policies`, for one IP."""
        if ip is None:
            return [], []  # to be allocated: no other policy can share it
        planned, gone, config = self._planned["policy"], self._gone["policy"], self._config_policies
        certain = {p.name: p for p in self._view.policies_using(ip) if p.name in planned}
        for p in self._inventory.policies_using(ip):
            if p.name not in planned and p.name not in gone:
                certain[p.name] = p
        possible = [p for p in self._estate.policies_using(self._client, ip)
                    if p.name not in certain and p.name not in planned and p.name not in gone and p.name not in config]
        return list(certain.values()), possible


    def overlap_candidates(self, policy: models.Policy) -> list[models.Policy]:
        """The other policies, as this plan leaves them (certain or possible), that may share `policy`'s
        priority and overlap its destinations: those the planned and stored overlap indexes name (the
        configuration's own models carry no destinations), so a changed policy is not tested against all."""
        rule = models.precedence_rule(policy)
        if rule is None:
            return []
        planned, gone = self._planned["policy"], self._gone["policy"]
        found = []
        for name in self._view.overlapping(rule) | self._estate.overlapping(self._client, rule):
            p = planned.get(name)
            if p is None and name not in gone and name not in self._config_policies:
                p = self._stored_policies.get(name)
            if p is not None:
                found.append(p)
        return found


def _split(planned: dict, gone: set, stored: dict, from_config: dict) -> tuple[dict, dict]:
    certain, possible = dict(planned), {}
    for name, obj in from_config.items():
        if name not in certain and name not in gone:
            certain[name] = obj
    for name, obj in stored.items():
        if name not in certain and name not in possible and name not in gone and name not in from_config:
            possible[name] = obj
    return certain, possible


def world(view: PlanView, estate: AgentEstate, client, inventory: Optional[Inventory]) -> World:
    """The objects once this plan is applied (not used in a destroy run: see config_inventory.destroy_run)."""
    return World(view, estate, client, inventory)


def _report(
    diags: Diagnostics, certain: list, possible: list, *, kind: str, name: str, warn: bool, at: Optional[Locator]
) -> None:
    add_violations(diags, certain, kind=kind, name=name, note=DECIDED, at=at)
    if warn:
        possible = [v for v in possible if v not in certain]
        add_violations(diags, possible, kind=kind, name=name, warning=True, note=UNDECIDED, at=at)


def check_policy(
    diags: Diagnostics, w: World, policy: models.Policy, *, kind: str, warn: bool, at: Optional[Locator] = None
) -> None:
    same_ip_certain, same_ip_possible = w.policies_using(policy.egress_source_ip)
    certain = models.duplicate_source_ip(policy, same_ip_certain)
    possible = models.duplicate_source_ip(policy, same_ip_possible)
    found = models.unclaimed_source_ip(policy, [*w.certain_gateways.values(), *w.possible_gateways.values()])
    if found:
        (certain if w.all_gateways_known else possible).append(found)
    gateway_certain, gateway_possible = _gateway_rules(w, policy)
    certain += gateway_certain
    possible += gateway_possible
    _report(diags, certain, possible, kind=kind, name=policy.name, warn=warn, at=at)
    if warn:  # a precedence the configuration leaves to prefix and name: a warning, never an error
        overlaps = models.equal_priority_overlaps(policy, w.overlap_candidates(policy))
        add_violations(diags, overlaps, kind=kind, name=policy.name, warning=True, at=at)


def _gateway_rules(w: World, policy: models.Policy) -> tuple[list[models.Violation], list[models.Violation]]:
    """(certain, possible) violations of a policy that names a `gateway`: it must exist, list the policy's
    source IP when one is given, and have a free floating IP for every policy allocating from it."""
    name = policy.gateway
    if not isinstance(name, str):
        return [], []
    gw = w.certain_gateways.get(name) or w.possible_gateways.get(name)
    if gw is None:
        v = models.Violation(("gateway",), (
            f"gateway {name!r} is neither in this configuration nor on the agent, so the policy can get no source "
            f"IP from it: declare it (resource \"egress_gateway\" with name = \"{name}\") and refer to it as "
            "gateway = egress_gateway.NAME.name, which also makes Terraform create it first"))
        return ([v], []) if w.all_gateways_known else ([], [v])
    sure = name in w.certain_gateways
    if policy.egress_source_ip is not None:
        found = models.ip_outside_gateway(policy, [gw])
        return ([found], []) if found and sure else ([], [found] if found else [])
    if not sure:
        return [], []  # the gateway may be destroyed in this run, or change: the apply decides
    short = _capacity(gw, w.certain_policies.values(), certain=True)
    if short:
        return short, []
    return [], _capacity(gw, [*w.certain_policies.values(), *w.possible_policies.values()], certain=False)


def _capacity(gw: models.Gateway, policies, *, certain: bool) -> list[models.Violation]:
    """More policies allocating from `gw` than it has floating IPs that `policies` leave free."""
    policies = list(policies)
    allocating = sorted(p.name for p in policies if p.gateway == gw.name and p.egress_source_ip is None)
    used = {p.egress_source_ip for p in policies if p.egress_source_ip in gw.floating_ips}
    free = len(gw.floating_ips) - len(used)
    if len(allocating) <= free:
        return []
    whose = "policies of this configuration" if certain else "policies (some of them not in this configuration)"
    return [models.Violation(("gateway",), (
        f"gateway {gw.name!r} has {len(gw.floating_ips):,} floating IPs and {free:,} of them free, but "
        f"{len(allocating):,} {whose} allocate their source IP from it ({', '.join(allocating[:5])}"
        f"{', ...' if len(allocating) > 5 else ''}): add floating IPs to the gateway, or name another gateway "
        "for some of them"))]


def check_gateway(
    diags: Diagnostics,
    w: World,
    gateway: Optional[models.Gateway],
    before: Optional[models.Gateway],
    *,
    kind: str,
    warn: bool,
    at: Optional[Locator] = None,
) -> None:
    """`gateway` planned to exist (None: planned to be deleted); `before`: the stored object it replaces."""
    name = gateway.name if gateway else before.name
    others = [g for n, g in {**w.possible_gateways, **w.certain_gateways}.items() if n not in (name, before and before.name)]
    certain, possible = [], []
    if gateway is not None:
        certain += models.shared_floating_ips(gateway, [g for n, g in w.certain_gateways.items() if n != name])
        possible += models.shared_floating_ips(gateway, [g for n, g in w.possible_gateways.items() if n != name])
    if before is not None:
        certain += models.released_in_use(gateway, others, list(w.certain_policies.values()), before=before)
        possible += models.released_in_use(gateway, others, list(w.possible_policies.values()), before=before)
    _report(diags, certain, possible, kind=kind, name=name, warn=warn, at=at)


def agent_world(view: PlanView, estate: AgentEstate, client, inventory: Optional[Inventory]) -> Optional[World]:
    try:
        return world(view, estate, client, inventory)
    except errors.ApiError:
        return None  # the apply reports agent trouble with its own diagnostic


def assignment_warnings(diags: Diagnostics, client, w: World, model, *, kind: str, at: Optional[Locator] = None) -> None:
    """What the agent's assignment says about a changed object: IPs no node can take, a source IP nobody holds.

    And, as errors, a gateway's floating IPs that are the cluster's own addresses (a node's, its subnet's
    network or broadcast address, a node's router): only the agent knows them.
    """
    try:
        if isinstance(model, models.Gateway):
            result = client.validate_gateway(model)
            add_violations(diags, result.errors, kind=kind, name=model.name, at=at)
            found = [v for v in result.warnings
                     if "cannot be assigned to any node" in v.message or v.path[:1] == ("node_selector",)]
        else:
            # Known only once the gateway listing the IP is stored as planned. Terraform plans each resource
            # again just before applying it, so an apply reports UnknownEgressIP even for a gateway made alongside.
            owner = next((g for g in w.certain_gateways.values() if model.egress_source_ip in g.floating_ips), None)
            if owner is None or w.stored_gateways.get(owner.name) != owner:
                return
            found = [v for v in client.validate_policy(model).warnings if v.message.startswith("UnknownEgressIP")]
    except errors.ApiError:
        return
    add_violations(diags, found, kind=kind, name=model.name, warning=True, at=at)
