from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LabelSelector(_message.Message):
    __slots__ = ("match_labels", "match_expressions")
    class MatchLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MATCH_LABELS_FIELD_NUMBER: _ClassVar[int]
    MATCH_EXPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    match_labels: _containers.ScalarMap[str, str]
    match_expressions: _containers.RepeatedCompositeFieldContainer[LabelSelectorRequirement]
    def __init__(self, match_labels: _Optional[_Mapping[str, str]] = ..., match_expressions: _Optional[_Iterable[_Union[LabelSelectorRequirement, _Mapping]]] = ...) -> None: ...

class LabelSelectorRequirement(_message.Message):
    __slots__ = ("key", "operator", "values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    operator: str
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., operator: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class EgressRule(_message.Message):
    __slots__ = ("namespace_selector", "pod_selector")
    NAMESPACE_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    POD_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    namespace_selector: LabelSelector
    pod_selector: LabelSelector
    def __init__(self, namespace_selector: _Optional[_Union[LabelSelector, _Mapping]] = ..., pod_selector: _Optional[_Union[LabelSelector, _Mapping]] = ...) -> None: ...

class Gateway(_message.Message):
    __slots__ = ("name", "floating_ips", "resource_version", "node_selector", "max_ips_per_node")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FLOATING_IPS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    MAX_IPS_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    floating_ips: _containers.RepeatedScalarFieldContainer[str]
    resource_version: int
    node_selector: LabelSelector
    max_ips_per_node: int
    def __init__(self, name: _Optional[str] = ..., floating_ips: _Optional[_Iterable[str]] = ..., resource_version: _Optional[int] = ..., node_selector: _Optional[_Union[LabelSelector, _Mapping]] = ..., max_ips_per_node: _Optional[int] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("name", "egress", "destination_cidrs", "egress_source_ip", "resource_version", "priority", "excluded_cidrs", "selection", "gateway")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_CIDRS_FIELD_NUMBER: _ClassVar[int]
    EGRESS_SOURCE_IP_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_CIDRS_FIELD_NUMBER: _ClassVar[int]
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    name: str
    egress: _containers.RepeatedCompositeFieldContainer[EgressRule]
    destination_cidrs: _containers.RepeatedScalarFieldContainer[str]
    egress_source_ip: str
    resource_version: int
    priority: int
    excluded_cidrs: _containers.RepeatedScalarFieldContainer[str]
    selection: PolicySelection
    gateway: str
    def __init__(self, name: _Optional[str] = ..., egress: _Optional[_Iterable[_Union[EgressRule, _Mapping]]] = ..., destination_cidrs: _Optional[_Iterable[str]] = ..., egress_source_ip: _Optional[str] = ..., resource_version: _Optional[int] = ..., priority: _Optional[int] = ..., excluded_cidrs: _Optional[_Iterable[str]] = ..., selection: _Optional[_Union[PolicySelection, _Mapping]] = ..., gateway: _Optional[str] = ...) -> None: ...

class PolicySelection(_message.Message):
    __slots__ = ("selected_pods", "sample")
    SELECTED_PODS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    selected_pods: int
    sample: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, selected_pods: _Optional[int] = ..., sample: _Optional[_Iterable[str]] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("type", "status", "reason", "message", "last_transition_time")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_TRANSITION_TIME_FIELD_NUMBER: _ClassVar[int]
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: str
    def __init__(self, type: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., last_transition_time: _Optional[str] = ...) -> None: ...

class GatewayStatus(_message.Message):
    __slots__ = ("name", "nodes", "floating_ips", "unassigned_reasons", "conditions")
    class NodesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class FloatingIpsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class UnassignedReasonsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    FLOATING_IPS_FIELD_NUMBER: _ClassVar[int]
    UNASSIGNED_REASONS_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    nodes: _containers.ScalarMap[str, str]
    floating_ips: _containers.ScalarMap[str, str]
    unassigned_reasons: _containers.ScalarMap[str, str]
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    def __init__(self, name: _Optional[str] = ..., nodes: _Optional[_Mapping[str, str]] = ..., floating_ips: _Optional[_Mapping[str, str]] = ..., unassigned_reasons: _Optional[_Mapping[str, str]] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("name", "role", "state", "node_ip", "floating_ips", "pod_cidr", "api_address", "labels", "service_cidrs")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_IP_FIELD_NUMBER: _ClassVar[int]
    FLOATING_IPS_FIELD_NUMBER: _ClassVar[int]
    POD_CIDR_FIELD_NUMBER: _ClassVar[int]
    API_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_CIDRS_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    state: str
    node_ip: str
    floating_ips: _containers.RepeatedScalarFieldContainer[str]
    pod_cidr: str
    api_address: str
    labels: _containers.ScalarMap[str, str]
    service_cidrs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ..., state: _Optional[str] = ..., node_ip: _Optional[str] = ..., floating_ips: _Optional[_Iterable[str]] = ..., pod_cidr: _Optional[str] = ..., api_address: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., service_cidrs: _Optional[_Iterable[str]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("kind", "name", "type", "reason", "message", "timestamp", "count")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    type: str
    reason: str
    message: str
    timestamp: float
    count: int
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., timestamp: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class PolicyCounters(_message.Message):
    __slots__ = ("name", "steered_packets", "steered_bytes", "translated_packets", "translated_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STEERED_PACKETS_FIELD_NUMBER: _ClassVar[int]
    STEERED_BYTES_FIELD_NUMBER: _ClassVar[int]
    TRANSLATED_PACKETS_FIELD_NUMBER: _ClassVar[int]
    TRANSLATED_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    steered_packets: int
    steered_bytes: int
    translated_packets: int
    translated_bytes: int
    def __init__(self, name: _Optional[str] = ..., steered_packets: _Optional[int] = ..., steered_bytes: _Optional[int] = ..., translated_packets: _Optional[int] = ..., translated_bytes: _Optional[int] = ...) -> None: ...

class Pod(_message.Message):
    __slots__ = ("name", "namespace", "node", "ip", "labels", "interface", "uid")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    node: str
    ip: str
    labels: _containers.ScalarMap[str, str]
    interface: str
    uid: str
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., node: _Optional[str] = ..., ip: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., interface: _Optional[str] = ..., uid: _Optional[str] = ...) -> None: ...

class Namespace(_message.Message):
    __slots__ = ("name", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ObjectRef(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("name", "resource_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    resource_version: int
    def __init__(self, name: _Optional[str] = ..., resource_version: _Optional[int] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("with_selection",)
    WITH_SELECTION_FIELD_NUMBER: _ClassVar[int]
    with_selection: bool
    def __init__(self, with_selection: bool = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GatewayList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Gateway]
    def __init__(self, items: _Optional[_Iterable[_Union[Gateway, _Mapping]]] = ...) -> None: ...

class PolicyList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Policy]
    def __init__(self, items: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ...) -> None: ...

class NodeList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[NodeStatus]
    def __init__(self, items: _Optional[_Iterable[_Union[NodeStatus, _Mapping]]] = ...) -> None: ...

class PodList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Pod]
    def __init__(self, items: _Optional[_Iterable[_Union[Pod, _Mapping]]] = ...) -> None: ...

class NamespaceList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Namespace]
    def __init__(self, items: _Optional[_Iterable[_Union[Namespace, _Mapping]]] = ...) -> None: ...

class EventsRequest(_message.Message):
    __slots__ = ("kind", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class EventList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, items: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class Violation(_message.Message):
    __slots__ = ("path", "message")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    path: _containers.RepeatedScalarFieldContainer[str]
    message: str
    def __init__(self, path: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ...) -> None: ...

class Violations(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Violation]
    def __init__(self, items: _Optional[_Iterable[_Union[Violation, _Mapping]]] = ...) -> None: ...

class ValidateResult(_message.Message):
    __slots__ = ("errors", "warnings")
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    errors: _containers.RepeatedCompositeFieldContainer[Violation]
    warnings: _containers.RepeatedCompositeFieldContainer[Violation]
    def __init__(self, errors: _Optional[_Iterable[_Union[Violation, _Mapping]]] = ..., warnings: _Optional[_Iterable[_Union[Violation, _Mapping]]] = ...) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("status", "node", "store", "store_ok", "detail", "leader", "version")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    STORE_OK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    status: str
    node: str
    store: str
    store_ok: bool
    detail: str
    leader: str
    version: str
    def __init__(self, status: _Optional[str] = ..., node: _Optional[str] = ..., store: _Optional[str] = ..., store_ok: bool = ..., detail: _Optional[str] = ..., leader: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class DescribePolicyResponse(_message.Message):
    __slots__ = ("policy", "holder", "events", "counters", "exclusions", "shadowed", "shadowed_pods", "conditions")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIONS_FIELD_NUMBER: _ClassVar[int]
    SHADOWED_FIELD_NUMBER: _ClassVar[int]
    SHADOWED_PODS_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    holder: str
    events: _containers.RepeatedCompositeFieldContainer[Event]
    counters: PolicyCounters
    exclusions: _containers.RepeatedCompositeFieldContainer[PolicyExclusion]
    shadowed: _containers.RepeatedCompositeFieldContainer[ShadowedTraffic]
    shadowed_pods: int
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ..., holder: _Optional[str] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., counters: _Optional[_Union[PolicyCounters, _Mapping]] = ..., exclusions: _Optional[_Iterable[_Union[PolicyExclusion, _Mapping]]] = ..., shadowed: _Optional[_Iterable[_Union[ShadowedTraffic, _Mapping]]] = ..., shadowed_pods: _Optional[int] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ...) -> None: ...

class PolicyExclusion(_message.Message):
    __slots__ = ("cidr", "reason")
    CIDR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    cidr: str
    reason: str
    def __init__(self, cidr: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ShadowedTraffic(_message.Message):
    __slots__ = ("pod", "destination", "policy")
    POD_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    pod: str
    destination: str
    policy: str
    def __init__(self, pod: _Optional[str] = ..., destination: _Optional[str] = ..., policy: _Optional[str] = ...) -> None: ...

class EffectiveIPRequest(_message.Message):
    __slots__ = ("namespace", "pod", "destination")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pod: str
    destination: str
    def __init__(self, namespace: _Optional[str] = ..., pod: _Optional[str] = ..., destination: _Optional[str] = ...) -> None: ...

class EffectiveIP(_message.Message):
    __slots__ = ("source_ip", "policy", "holder", "dropped", "node")
    SOURCE_IP_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    source_ip: str
    policy: str
    holder: str
    dropped: bool
    node: str
    def __init__(self, source_ip: _Optional[str] = ..., policy: _Optional[str] = ..., holder: _Optional[str] = ..., dropped: bool = ..., node: _Optional[str] = ...) -> None: ...

class SourceChange(_message.Message):
    __slots__ = ("pod", "destination", "before", "after")
    POD_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    pod: str
    destination: str
    before: str
    after: str
    def __init__(self, pod: _Optional[str] = ..., destination: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ...) -> None: ...

class PolicyImpact(_message.Message):
    __slots__ = ("selected_pods", "sample", "changes", "changed_pods")
    SELECTED_PODS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    CHANGED_PODS_FIELD_NUMBER: _ClassVar[int]
    selected_pods: int
    sample: _containers.RepeatedScalarFieldContainer[str]
    changes: _containers.RepeatedCompositeFieldContainer[SourceChange]
    changed_pods: int
    def __init__(self, selected_pods: _Optional[int] = ..., sample: _Optional[_Iterable[str]] = ..., changes: _Optional[_Iterable[_Union[SourceChange, _Mapping]]] = ..., changed_pods: _Optional[int] = ...) -> None: ...
