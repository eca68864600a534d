"""The agent's settings: command-line flags, optionally a YAML file with the same keys.

Flags override the file; node labels merge key by key (a `--node-label` wins over the
file's value for its key). The node's own fields are validated by `models.Node`
(the one place validation lives); errors name the flag/key to fix.

On SIGHUP the agent builds its settings again from the same flags and the file as it
is now (`live_changes`): the node labels apply live, anything else that changed is
named in a log line and waits for a restart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from egress_agent.cluster.detector import DEFAULT_INTERVAL, DEFAULT_MISSES  # stdlib only: cheap to import
from egress_api import models, transport

#: YAML keys (flag --node-ip <-> key node_ip).
KEYS = ("node", "role", "node_ip", "interface", "pod_cidr", "service_cidr", "socket", "listen", "store", "datapath", "etcd_prefix",
        "lease_ttl", "lease_keepalive", "probe_interval", "probe_misses", "etcd_ca", "etcd_cert", "etcd_key",
        "kubernetes", "kubeconfig", "kube_label_wait", "metrics_listen", "tls_cert", "tls_key", "tls_client_ca",
        "insecure_listen", "socket_roles", "audit_log", "inventory_socket", "garp_repeats", "garp_interval",
        "restart_window",
        "cluster_key_file", "node_labels", "node_labels_from_kubernetes")
DATAPATHS = ("off", "kernel")
#: Seconds the cluster keeps a restarting node's floating IPs (cluster/restart.py). Long enough for an
#: agent start (about 2-5 s with the eBPF compile) on a loaded node, short enough to bound a lost promise.
DEFAULT_RESTART_WINDOW = 30


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AgentConfig:
    node: models.Node
    socket: str  # absolute path of the unix socket
    store: str  # store URL, e.g. sqlite:/var/lib/egress/state.db
    listen: str = ""  # optional host:port
    datapath: str = "off"
    etcd_prefix: str = "/egress"  # etcd store only: key prefix
    lease_ttl: int = 2  # etcd store only: membership lease TTL in seconds
    lease_keepalive: Optional[float] = None  # etcd store only: seconds between keepalives (None: cluster default)
    probe_interval: float = DEFAULT_INTERVAL  # etcd store only: seconds between UDP probes to each peer
    probe_misses: int = DEFAULT_MISSES  # etcd store only: unanswered probes before a peer is Down
    etcd_tls: tuple[str, str, str] = ("", "", "")  # etcd store only: CA file, client cert, client key
    kubernetes: bool = False  # watch the Kubernetes API for namespaces and this node's pods
    kubeconfig: str = ""  # with kubernetes: a kubeconfig file; "" = in-cluster service account
    kube_label_wait: float = 10.0  # with kubernetes: seconds a CNI ADD waits for its pod's labels
    node_labels_from_kubernetes: bool = False  # with kubernetes: this node's Node object labels it (under ours)
    metrics_listen: str = ""  # host:port serving Prometheus /metrics; "" = no metrics endpoint
    tls: tuple[str, str, str] = ("", "", "")  # --listen's TLS: certificate, key, client CA ("": none)
    insecure_listen: bool = False  # --listen without mutual TLS off loopback, knowingly
    socket_roles: str = ""  # extra uid/gid -> role entries for the unix socket (server.local_peers)
    audit_log: str = ""  # file (or "-" for stderr) the audit lines go to; "" = none
    inventory_socket: str = ""  # the CNI plugin's socket: this node's pods, JSON over HTTP (server.pod_socket)
    garp_repeats: int = 3  # kernel datapath: gratuitous ARPs after the first one at a takeover
    garp_interval: float = 1.0  # ... this many seconds apart
    restart_window: int = DEFAULT_RESTART_WINDOW  # seconds a SIGTERM'd agent may take to come back (0: leave)
    cluster_key_file: str = ""  # etcd store only: key authenticating liveness probes; "" = the one kept in etcd
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mutual_tls(self) -> bool:
        return bool(self.tls[0] and self.tls[2])


def node_labels(raw: Any) -> dict[str, str]:
    """--node-label KEY=VALUE (repeatable), or YAML `node_labels` as a mapping or a list of KEY=VALUE.
    Only the form is checked here; `models.Node` checks keys and values as Kubernetes labels."""
    if not raw:
        return {}
    if isinstance(raw, dict):
        return {str(k): "" if v is None else str(v) for k, v in raw.items()}
    if isinstance(raw, str) or not isinstance(raw, list):
        raise ConfigError(f"node_labels: expected a mapping or a list of KEY=VALUE, got {raw!r}")
    labels: dict[str, str] = {}
    for item in raw:
        key, eq, value = str(item).partition("=")
        if not eq:
            raise ConfigError(f"--node-label {item}: expected KEY=VALUE (e.g. egress.example.com/gateway=true)")
        if labels.get(key, value) != value:
            raise ConfigError(f"--node-label {key}: given twice with different values ({labels[key]!r}, {value!r})")
        labels[key] = value
    return labels


def merged_labels(file_raw: Any, flag_raw: Any) -> dict[str, str]:
    """The file's `node_labels` with the `--node-label` flags over them, key by key.

    Flags win: they are the node's fixed settings (a unit file's ExecStart), the file is what
    operators edit and reload, so a flag pins a label that no edit of the file can drop.
    """
    return {**node_labels(file_raw), **node_labels(flag_raw)}


#: AgentConfig fields a reload may change without a restart (the node's labels live inside `node`).
LIVE = ("labels",)


def live_changes(running: "AgentConfig", fresh: "AgentConfig") -> tuple[dict[str, str], list[str]]:
    """(the labels `fresh` gives, the settings that differ but only apply at a restart), by flag name.

    `routers` are found by the agent at start (never configured), so they are not compared.
    """
    from dataclasses import fields

    restart = [_flag(f.name) for f in fields(AgentConfig)
               if f.name != "node" and getattr(running, f.name) != getattr(fresh, f.name)]
    names = {"name": "node", "service_cidrs": "service_cidr", "api_address": "listen"}
    old, new = running.node.model_dump(), fresh.node.model_dump()
    restart += [_flag(names.get(k, k)) for k in old if k not in (*LIVE, "routers") and old[k] != new[k]]
    return dict(fresh.node.labels), sorted(restart)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def load_file(path: str) -> dict[str, Any]:
    import yaml  # only the agent needs YAML; keep it off the client's import path

    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except OSError as err:
        raise ConfigError(f"--config {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"--config {path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of settings ({', '.join(KEYS)})")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ConfigError(f"--config {path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(KEYS)}")
    if isinstance(data.get("service_cidr"), list):  # a YAML list of CIDRs, same as the flag's A,B
        data["service_cidr"] = ",".join(str(c) for c in data["service_cidr"])
    # node_labels is the one structured setting (a mapping, or a list of KEY=VALUE); the rest are scalars.
    return {k: (v if k == "node_labels" or v is None else str(v)) for k, v in data.items()}


def _cidr_list(value: Any) -> list[str]:
    """--service-cidr A,B (or a YAML list): the CIDRs, in the order given."""
    if not value:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(c).strip() for c in items if str(c).strip()]


def build(flags: dict[str, Optional[str]], config_file: Optional[str] = None) -> AgentConfig:
    settings: dict[str, Any] = load_file(config_file) if config_file else {}
    labels = merged_labels(settings.get("node_labels"), flags.get("node_labels"))
    settings.update({k: v for k, v in flags.items() if v is not None})
    where = f" (in --config {config_file} or as a flag)" if config_file else ""

    for required in ("node", "node_ip", "socket", "store"):
        if not settings.get(required):
            raise ConfigError(f"{_flag(required)} is required{where}")
    try:
        node = models.parse(
            "node",
            {
                "name": settings["node"],
                "role": settings.get("role") or "worker",
                "node_ip": settings["node_ip"],
                "interface": settings.get("interface") or "",
                "pod_cidr": settings.get("pod_cidr") or "",
                "service_cidrs": _cidr_list(settings.get("service_cidr")),
                "api_address": settings.get("listen") or "",
                "labels": labels,
            },
        )
    except models.InvalidObject as err:
        names = {"name": "node", "service_cidrs": "service_cidr", "labels": "node_label"}
        raise ConfigError(
            "; ".join(f"{_flag(names.get(str(v.path[0]), str(v.path[0])))}: {v.message}" for v in err.violations)
        ) from None

    socket = _socket_path(settings, "socket")

    inventory_socket = _socket_path(settings, "inventory_socket")
    if inventory_socket == socket:
        raise ConfigError(f"--inventory-socket {inventory_socket}: must differ from --socket")

    listen = settings.get("listen") or ""
    if listen:
        try:
            if transport.parse_target(listen).scheme != "tcp":
                raise transport.TargetError("use --socket for unix sockets")
        except transport.TargetError as err:
            raise ConfigError(f"--listen {listen}: {err}; expected host:port, e.g. 127.0.0.1:7443") from None

    metrics_listen = _host_port(settings, "metrics_listen", "127.0.0.1:9464")
    listen_tls, insecure_listen = _listener_security(settings, listen)
    socket_roles = settings.get("socket_roles") or ""
    if socket_roles:
        from egress_agent.server.local_peers import SocketRoles, SocketRolesError

        try:
            SocketRoles(socket_roles)
        except SocketRolesError as err:
            raise ConfigError(str(err)) from None
    audit_log = settings.get("audit_log") or ""
    if audit_log and audit_log != "-":
        audit_log = os.path.abspath(audit_log)

    store = settings["store"]
    scheme, _, rest = store.partition(":")
    if scheme == "sqlite":
        if not rest:
            raise ConfigError(f"--store {store}: give a file, e.g. sqlite:/var/lib/egress/state.db")
        store = f"sqlite:{os.path.abspath(rest)}"
    elif scheme == "etcd":
        from egress_agent.store.etcd_client import parse_endpoints

        if not listen:
            raise ConfigError("--store etcd:... needs --listen HOST:PORT: other agents probe it and status names it")
        try:
            store = "etcd:" + ",".join(parse_endpoints(rest))
        except ValueError as err:
            raise ConfigError(f"--store {store}: {err}") from None
    else:
        raise ConfigError(f"--store {store}: unsupported store; use sqlite:PATH or etcd:http://HOST:PORT[,...]")

    etcd_prefix = settings.get("etcd_prefix") or "/egress"
    if not etcd_prefix.startswith("/") or etcd_prefix.endswith("/") or len(etcd_prefix) < 2:
        raise ConfigError(f"--etcd-prefix {etcd_prefix}: must start with '/' and not end with '/' (e.g. /egress)")
    try:
        lease_ttl = int(settings.get("lease_ttl") or 2)
        if lease_ttl < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--lease-ttl {settings.get('lease_ttl')}: must be a whole number of seconds >= 1") from None

    raw = settings.get("lease_keepalive")
    try:
        lease_keepalive = float(raw) if raw else None
        # A keepalive must reach etcd well before the lease runs out, or the node flaps Down.
        if lease_keepalive is not None and not 0 < lease_keepalive < lease_ttl:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--lease-keepalive {raw}: must be a number of seconds above 0 and below the lease TTL "
                          f"({lease_ttl} s; default 0.5)") from None

    probe_interval, probe_misses = _probe_timing(settings)

    datapath = settings.get("datapath") or "off"
    if datapath not in DATAPATHS:
        raise ConfigError(f"--datapath {datapath}: must be one of {', '.join(DATAPATHS)}")
    if datapath == "kernel":
        for needed, example in (("interface", "eth0"), ("pod_cidr", "10.244.1.0/24")):
            if not settings.get(needed):
                raise ConfigError(f"--datapath kernel needs {_flag(needed)} (e.g. {example}){where}")
    garp_repeats, garp_interval = _announcements(settings)
    restart_window = _restart_window(settings)
    tls = tuple(os.path.abspath(settings[k]) if settings.get(k) else "" for k in ("etcd_ca", "etcd_cert", "etcd_key"))
    for key, path in zip(("etcd_ca", "etcd_cert", "etcd_key"), tls):
        if path and not os.path.isfile(path):
            raise ConfigError(f"{_flag(key)} {path}: no such file")
    if bool(tls[1]) != bool(tls[2]):
        raise ConfigError("--etcd-cert and --etcd-key go together: give both or neither")
    _check_etcd_tls(store, tls)
    kubernetes, kubeconfig, label_wait = _kubernetes(settings)
    from_kubernetes = _bool(settings, "node_labels_from_kubernetes")
    if from_kubernetes and not kubernetes:
        raise ConfigError("--node-labels-from-kubernetes needs --kubernetes (the watcher reads the Node object)")
    cluster_key_file = _cluster_key_file(settings, scheme)
    return AgentConfig(
        node=node, socket=socket, store=store, listen=listen, datapath=datapath, etcd_prefix=etcd_prefix,
        lease_ttl=lease_ttl, lease_keepalive=lease_keepalive, probe_interval=probe_interval, probe_misses=probe_misses, etcd_tls=tls,
        kubernetes=kubernetes, kubeconfig=kubeconfig, kube_label_wait=label_wait,
        node_labels_from_kubernetes=from_kubernetes, metrics_listen=metrics_listen,
        tls=listen_tls, insecure_listen=insecure_listen, socket_roles=socket_roles, audit_log=audit_log,
        inventory_socket=inventory_socket, garp_repeats=garp_repeats, garp_interval=garp_interval,
        restart_window=restart_window,
        cluster_key_file=cluster_key_file,
    )


def _socket_path(settings: dict[str, Any], key: str) -> str:
    """An absolute unix socket path (unix: URLs accepted), or "" when unset."""
    path = settings.get(key) or ""
    if not path:
        return ""
    if path.startswith("unix:"):
        path = transport.parse_target(path).address
    path = os.path.abspath(path)
    if len(path.encode()) > 107:
        raise ConfigError(f"{_flag(key)} {path}: a unix socket path must be at most 107 bytes")
    return path


def _check_etcd_tls(store: str, tls: tuple[str, ...]) -> None:
    """TLS flags secure nothing on a plaintext endpoint: refuse rather than silently run without TLS."""
    given = [key for key, path in zip(("etcd_ca", "etcd_cert", "etcd_key"), tls) if path]
    if not given:
        return
    flag = _flag(given[0])
    if not store.startswith("etcd:"):
        raise ConfigError(f"{flag} is for an etcd store; --store {store} does not use etcd")
    plaintext = [u for u in store[len("etcd:"):].split(",") if not u.startswith("https://")]
    if plaintext:
        raise ConfigError(f"{flag} needs https:// etcd endpoints, but {', '.join(plaintext)} is plaintext: "
                          "use https:// (or drop the TLS flags)")


def _host_port(settings: dict[str, Any], key: str, example: str) -> str:
    """A TCP host:port setting, or "" when unset."""
    value = settings.get(key) or ""
    if not value:
        return ""
    try:
        if transport.parse_target(value).scheme != "tcp":
            raise transport.TargetError("a unix socket cannot serve HTTP here")
    except transport.TargetError as err:
        raise ConfigError(f"{_flag(key)} {value}: {err}; expected host:port, e.g. {example}") from None
    return value


def _bool(settings: dict[str, Any], key: str) -> bool:
    raw = str(settings.get(key) or "false").lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{key}: {settings.get(key)!r} must be true or false")
    return raw in ("true", "1", "yes")


def is_loopback(host_port: str) -> bool:
    """Whether a host:port listener is reachable from this machine only."""
    import ipaddress

    host = host_port.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _listener_security(settings: dict[str, Any], listen: str) -> tuple[tuple[str, str, str], bool]:
    """(--tls-cert, --tls-key, --tls-client-ca) and --insecure-listen, checked against --listen.

    Off loopback, the TCP listener needs mutual TLS: without client certificates every caller that
    reaches the port would have every right. --insecure-listen says so knowingly.
    """
    tls = tuple(os.path.abspath(settings[k]) if settings.get(k) else "" for k in ("tls_cert", "tls_key", "tls_client_ca"))
    for key, path in zip(("tls_cert", "tls_key", "tls_client_ca"), tls):
        if path and not os.path.isfile(path):
            raise ConfigError(f"{_flag(key)} {path}: no such file")
    if bool(tls[0]) != bool(tls[1]):
        raise ConfigError("--tls-cert and --tls-key go together: give both or neither")
    if tls[2] and not tls[0]:
        raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key: the agent's own certificate comes first")
    insecure = _bool(settings, "insecure_listen")
    if (tls[0] or insecure) and not listen:
        raise ConfigError(f"{'--tls-cert' if tls[0] else '--insecure-listen'} is about the TCP listener: "
                          "it needs --listen HOST:PORT")
    if listen and not (tls[0] and tls[2]) and not insecure and not is_loopback(listen):
        raise ConfigError(
            f"--listen {listen} is not a loopback address: anyone who reaches it could change every policy. "
            "Give --tls-cert, --tls-key and --tls-client-ca (mutual TLS; `egressctl certs init` makes them), "
            "or --insecure-listen to serve it without client authentication anyway")
    if tls[0]:
        from egress_agent.server.tls import ServerTLSFiles, TLSFilesError, load_pair

        try:
            load_pair(ServerTLSFiles(*tls))
        except TLSFilesError as err:
            raise ConfigError(str(err)) from None
    return tls, insecure


def _kubernetes(settings: dict[str, Any]) -> tuple[bool, str, float]:
    """(--kubernetes, --kubeconfig, --kube-label-wait)."""
    raw = str(settings.get("kubernetes") or "false").lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"kubernetes: {settings.get('kubernetes')!r} must be true or false")
    enabled = raw in ("true", "1", "yes")
    kubeconfig = settings.get("kubeconfig") or ""
    if kubeconfig and not enabled:
        raise ConfigError("--kubeconfig needs --kubernetes (it configures the Kubernetes watcher)")
    if kubeconfig:
        kubeconfig = os.path.abspath(kubeconfig)
        if not os.path.isfile(kubeconfig):
            raise ConfigError(f"--kubeconfig {kubeconfig}: no such file")
    raw = settings.get("kube_label_wait")
    try:
        wait = float(raw) if raw else 10.0
        if not 0 < wait <= 300:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--kube-label-wait {raw}: must be a number of seconds in (0, 300] (default 10)") from None
    return enabled, kubeconfig, wait


def _announcements(settings: dict[str, Any]) -> tuple[int, float]:
    """(--garp-repeats, --garp-interval): how a takeover is re-announced after the first gratuitous ARP."""
    raw = settings.get("garp_repeats")
    try:
        repeats = int(raw) if raw not in (None, "") else 3
        if not 0 <= repeats <= 60:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--garp-repeats {raw}: must be a whole number from 0 to 60 (default 3)") from None
    raw = settings.get("garp_interval")
    try:
        interval = float(raw) if raw else 1.0
        if not 0.05 <= interval <= 60:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--garp-interval {raw}: must be a number of seconds from 0.05 to 60 (default 1)") from None
    return repeats, interval


def _cluster_key_file(settings: dict[str, Any], store_scheme: str) -> str:
    """--cluster-key-file, checked now (exists, private, long enough) so a bad one stops the start with exit 2."""
    from egress_agent.cluster.probe_key import KeyFileError, read_key_file

    path = settings.get("cluster_key_file") or ""
    if not path:
        return ""
    if store_scheme != "etcd":
        raise ConfigError("--cluster-key-file needs --store etcd:... (it authenticates the probes between agents)")
    path = os.path.abspath(path)
    try:
        read_key_file(path)
    except KeyFileError as err:
        raise ConfigError(f"--cluster-key-file {err}") from None
    return path


def _probe_timing(settings: dict[str, Any]) -> tuple[float, int]:
    """The failure detector's (interval, misses): a peer is Down after interval x misses without an answer."""
    raw = settings.get("probe_interval")
    try:
        interval = float(raw) if raw else DEFAULT_INTERVAL
        # Below 1 ms the probe loop would only burn CPU; above 60 s the lease (the backstop) always wins.
        if not 0.001 <= interval <= 60:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--probe-interval {raw}: must be a number of seconds from 0.001 to 60 "
                          f"(default {DEFAULT_INTERVAL:g})") from None
    raw = settings.get("probe_misses")
    try:
        misses = int(raw) if raw else DEFAULT_MISSES
        if misses < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--probe-misses {raw}: must be a whole number >= 1 (default {DEFAULT_MISSES})") from None
    return interval, misses


def _restart_window(settings: dict[str, Any]) -> int:
    raw = settings.get("restart_window")
    try:
        window = int(raw) if raw not in (None, "") else DEFAULT_RESTART_WINDOW
        # An hour is already far beyond any restart; a longer promise only delays a real failover.
        if not 0 <= window <= 3600:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--restart-window {raw}: must be a whole number of seconds from 0 to 3600 "
                          f"(default {DEFAULT_RESTART_WINDOW}; 0: a stopping agent releases its IPs at once)") from None
    return window


def open_store(url: str, etcd_prefix: str = "/egress", etcd_tls: tuple[str, str, str] = ("", "", "")):
    """The Store for a validated store URL."""
    scheme, _, rest = url.partition(":")
    if scheme == "sqlite":
        from egress_agent.store.sqlite import SqliteStore

        return SqliteStore(rest)
    if scheme == "etcd":
        from egress_agent.store.etcd import EtcdStore

        ca, cert, key = (v or None for v in etcd_tls)
        store = EtcdStore(rest.split(","), prefix=etcd_prefix, ca_cert=ca, cert_file=cert, key_file=key)
        try:
            store.client.check_usable()  # an untrusted etcd is a start error (exit 1), never waited for
        except Exception:
            store.close()
            raise
        return store
    raise ConfigError(f"unsupported store {url!r}")
