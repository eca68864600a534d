"""egress-cni's reading of an invocation: CNI_ARGS, netconf, and the pod's attachment in prevResult."""

from __future__ import annotations

import json

import pytest

from egress_cni import spec
from egress_cni.request import attachment, parse, parse_cni_args
from egress_cni.spec import CniError

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/p", "CNI_IFNAME": "eth0",
       "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=alice;K8S_POD_NAME=fe1;K8S_POD_UID=u1"}


def conf(prev=None, **extra) -> str:
    c = {"cniVersion": "1.0.0", "name": "net", "type": "egress", **extra}
    if prev is not None:
        c["prevResult"] = prev
    return json.dumps(c)


def bridge_result(ip="10.244.1.7") -> dict:
    """The bridge plugin's shape: the bridge, the host veth, the container's eth0."""
    return {"cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0", "mac": "a"}, {"name": "veth9f8e7d6c", "mac": "b"},
                           {"name": "eth0", "mac": "c", "sandbox": "/run/netns/p"}],
            "ips": [{"address": "fd00::7/64", "interface": 2}, {"address": f"{ip}/24", "interface": 2}]}


def test_cni_args_and_pod_identity():
    req = parse(ENV, conf(bridge_result()))
    assert req.pod == ("alice", "fe1", "u1") and req.args["IgnoreUnknown"] == "1"
    assert req.failure_policy == "closed" and req.agent_socket == "/run/egress/inventory.sock"
    with pytest.raises(CniError) as err:
        parse_cni_args("K8S_POD_NAME")
    assert err.value.code == spec.INVALID_ENV


def test_the_bridge_is_skipped_and_the_ipv4_of_the_container_interface_taken(tmp_path):
    (tmp_path / "cni0" / "bridge").mkdir(parents=True)  # what /sys/class/net shows for a bridge
    att = attachment(parse(ENV, conf(bridge_result())), sys_class_net=str(tmp_path))
    assert (att.ip, att.host_interface) == ("10.244.1.7", "veth9f8e7d6c")


def test_a_result_without_host_interfaces_falls_back_to_the_host_route(tmp_path):
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/p"}],
            "ips": [{"address": "10.244.1.9/32", "interface": 0}]}
    routes = tmp_path / "route"
    routes.write_text("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
                      "eth0\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\n"
                      "cali1234567890a\t0901F40A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\n")
    att = attachment(parse(ENV, conf(prev)), sys_class_net=str(tmp_path), proc_route=str(routes))
    assert att.host_interface == "cali1234567890a"
    routes.write_text("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n")
    with pytest.raises(CniError) as err:
        attachment(parse(ENV, conf(prev)), sys_class_net=str(tmp_path), proc_route=str(routes))
    assert err.value.code == spec.INVALID_CONFIG and "host-side interface" in err.value.msg


def test_ipv6_only_and_malformed_results_are_config_errors():
    v6 = {"cniVersion": "1.0.0", "interfaces": [{"name": "veth1"}], "ips": [{"address": "fd00::1/64"}]}
    with pytest.raises(CniError, match="IPv4"):
        attachment(parse(ENV, conf(v6)))
    with pytest.raises(CniError, match="no valid address"):
        attachment(parse(ENV, conf({"ips": [{"address": "nope"}]})))


@pytest.mark.parametrize("extra, words", [
    ({"agentSocket": "relative.sock"}, "absolute path"),
    ({"timeoutSeconds": 0}, "timeoutSeconds"),
    ({"args": {"cni": {"labels": [{"key": "a"}]}}}, "args.cni.labels"),
])
def test_bad_plugin_configuration_is_error_7(extra, words):
    with pytest.raises(CniError) as err:
        parse(ENV, conf(bridge_result(), **extra))
    assert err.value.code == spec.INVALID_CONFIG and words in err.value.msg


def test_kubernetes_flags():
    from egress_agent import config as cfg

    base = {"node": "worker1", "node_ip": "192.0.2.11/24", "socket": "/tmp/a.sock", "store": "sqlite:/tmp/s.db"}
    conf = cfg.build({**base, "kubernetes": True, "kube_label_wait": "2.5"})
    assert conf.kubernetes and conf.kubeconfig == "" and conf.kube_label_wait == 2.5
    with pytest.raises(cfg.ConfigError, match="--kubeconfig needs --kubernetes"):
        cfg.build({**base, "kubeconfig": "/etc/hostname"})
    with pytest.raises(cfg.ConfigError, match="no such file"):
        cfg.build({**base, "kubernetes": True, "kubeconfig": "/nonexistent/kubeconfig"})
    with pytest.raises(cfg.ConfigError, match="--kube-label-wait"):
        cfg.build({**base, "kubernetes": True, "kube_label_wait": "0"})
