"""`egress-cni` against the CNI spec (1.0.0), with a real egress-agent behind it.

Each case is a spec-shaped success or error object (code, msg) on stdout, and
nothing is left behind in the agent when the plugin fails.
"""

from __future__ import annotations

import json

import pytest

from egress_api import errors, models

from helpers.agent import short_dir, start_agent
from helpers.cni import egress_conf, invoke, k8s_args, ptp_result

POD = k8s_args("alice", "fe1", uid="0b1f-uid")


@pytest.fixture
def cni_agent(tmp_path_factory):
    """A real egress-agent serving the CNI plugin's pod socket (--inventory-socket) beside its API socket."""
    workdir = tmp_path_factory.mktemp("agent")
    with start_agent(workdir, extra_args=["--inventory-socket", str(short_dir(workdir) / "pods.sock")]) as agent:
        assert agent.pod_socket.exists()
        yield agent


def add(agent, ip="10.244.1.5", host_if="veth1a2b3c4d", args=POD, **conf):
    return invoke("ADD", egress_conf(str(agent.pod_socket), ptp_result(ip, host_if), **conf), args=args)


def test_version_lists_the_versions_served():
    res = invoke("VERSION", {"cniVersion": "1.0.0"})
    assert res.status == 0, res.stdout
    assert res.json == {"cniVersion": "1.0.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}


def test_add_registers_the_pod_and_passes_prev_result_through_unchanged(cni_agent):
    conf = egress_conf(str(cni_agent.pod_socket), ptp_result("10.244.1.5", "veth1a2b3c4d"),
                       args={"cni": {"labels": [{"key": "role", "value": "frontend"}]}})
    res = invoke("ADD", conf, args=POD)
    assert res.status == 0, res.stdout + res.stderr
    assert res.json == ptp_result("10.244.1.5", "veth1a2b3c4d")
    [pod] = cni_agent.client.list_pods()
    assert pod == models.Pod(name="fe1", namespace="alice", node="worker1", ip="10.244.1.5",
                             interface="veth1a2b3c4d", uid="0b1f-uid", labels={"role": "frontend"})


def test_add_takes_whatever_the_main_plugin_named_the_host_interface(cni_agent):
    assert add(cni_agent, host_if="cali12ab34cd56e").status == 0
    assert cni_agent.client.list_pods()[0].interface == "cali12ab34cd56e"


def test_add_without_prev_result_is_a_config_error(cni_agent):
    res = invoke("ADD", egress_conf(str(cni_agent.pod_socket)), args=POD)
    assert res.status == 1 and res.error_code == 7
    assert "chained after the main plugin" in res.json["msg"]
    assert cni_agent.client.list_pods() == []


def test_unknown_cni_version_is_error_1(cni_agent):
    res = add(cni_agent, version="9.9.9")
    assert res.status == 1 and res.error_code == 1
    assert res.json["cniVersion"] == "1.0.0" and "9.9.9" in res.json["msg"]
    assert cni_agent.client.list_pods() == []


def test_garbage_on_stdin_is_error_6():
    for command in ("ADD", "DEL", "CHECK"):
        res = invoke(command, "{not json", args=POD)
        assert res.status == 1 and res.error_code == 6, (command, res.stdout)


def test_missing_runtime_variables_are_error_4(cni_agent):
    res = invoke("ADD", egress_conf(str(cni_agent.pod_socket), ptp_result("10.244.1.5", "veth1")), args=POD,
                 env={"CNI_CONTAINERID": ""})
    assert res.status == 1 and res.error_code == 4 and "CNI_CONTAINERID" in res.json["msg"]
    res = invoke("ADD", egress_conf(str(cni_agent.pod_socket), ptp_result("10.244.1.5", "veth1")), args="")
    assert res.status == 1 and res.error_code == 4 and "K8S_POD_NAMESPACE" in res.json["msg"]
    res = invoke("FROB", {"cniVersion": "1.0.0"})
    assert res.status == 1 and res.error_code == 4
    assert cni_agent.client.list_pods() == []


def test_bad_failure_policy_is_a_config_error(cni_agent):
    res = add(cni_agent, failurePolicy="sometimes")
    assert res.status == 1 and res.error_code == 7 and "failurePolicy" in res.json["msg"]


def test_a_pod_the_agent_rejects_is_not_started_and_not_stored(cni_agent):
    res = add(cni_agent, args=k8s_args("Alice_NS", "fe1"))
    assert res.status == 1 and res.error_code == 100
    assert "namespace" in res.json["msg"]
    assert cni_agent.client.list_pods() == []


def test_del_removes_the_pod_and_is_idempotent(cni_agent):
    assert add(cni_agent).status == 0
    conf = egress_conf(str(cni_agent.pod_socket), ptp_result("10.244.1.5", "veth1a2b3c4d"))
    for _ in range(2):
        res = invoke("DEL", conf, args=POD)
        assert res.status == 0 and res.stdout == "", res.stdout
        assert cni_agent.client.list_pods() == []
    # A runtime may DEL with neither prevResult nor Kubernetes args (e.g. after a failed ADD).
    assert invoke("DEL", egress_conf(str(cni_agent.pod_socket)), args="").status == 0


def test_del_succeeds_when_the_agent_is_down(tmp_path):
    res = invoke("DEL", egress_conf(str(tmp_path / "nobody.sock")), args=POD)
    assert res.status == 0 and res.stdout == ""
    assert "cannot reach the egress-agent" in res.stderr


def test_add_with_the_agent_down_fails_closed_by_default(tmp_path):
    sock = tmp_path / "nobody.sock"
    res = invoke("ADD", egress_conf(str(sock), ptp_result("10.244.1.5", "veth1")), args=POD)
    assert res.status == 1 and res.error_code == 11
    assert "cannot be guaranteed" in res.json["msg"] and str(sock) in res.json["msg"]
    assert "egress-agent DaemonSet" in res.json["msg"]


def test_add_with_the_agent_down_starts_the_pod_under_fail_open_and_counts_it(tmp_path):
    sock = tmp_path / "nobody.sock"
    prev = ptp_result("10.244.1.5", "veth1")
    res = invoke("ADD", egress_conf(str(sock), prev, failurePolicy="open"), args=POD)
    assert res.status == 0, res.stdout
    assert res.json == prev
    assert "failurePolicy open" in res.stderr
    [entry] = [json.loads(line) for line in (tmp_path / "fail-open.log").read_text().splitlines()]
    assert entry["pod"] == "alice/fe1" and entry["container_id"] == "c0ffee"


def test_check_verifies_the_pod_is_known_with_the_same_attachment(cni_agent):
    assert add(cni_agent).status == 0
    sock = str(cni_agent.pod_socket)
    ok = invoke("CHECK", egress_conf(sock, ptp_result("10.244.1.5", "veth1a2b3c4d")), args=POD)
    assert ok.status == 0 and ok.stdout == "", ok.stdout
    moved = invoke("CHECK", egress_conf(sock, ptp_result("10.244.1.9", "veth1a2b3c4d")), args=POD)
    assert moved.status == 1 and moved.error_code == 101 and "10.244.1.9" in moved.json["msg"]
    unknown = invoke("CHECK", egress_conf(sock, ptp_result("10.244.1.6", "veth2")), args=k8s_args("alice", "nope"))
    assert unknown.status == 1 and unknown.error_code == 3
    old = invoke("CHECK", egress_conf(sock, ptp_result("10.244.1.5", "veth1a2b3c4d", "0.3.1"), version="0.3.1"),
                 args=POD)
    assert old.status == 1 and old.error_code == 1


def test_older_spec_versions_are_served_and_echoed(cni_agent):
    prev = ptp_result("10.244.1.5", "veth1a2b3c4d", version="0.4.0")
    res = invoke("ADD", egress_conf(str(cni_agent.pod_socket), prev, version="0.4.0"), args=POD)
    assert res.status == 0 and res.json["cniVersion"] == "0.4.0"


def test_get_pod_is_what_check_asks(cni_agent):
    assert add(cni_agent).status == 0
    assert cni_agent.client.get_pod("alice/fe1").interface == "veth1a2b3c4d"
    with pytest.raises(errors.NotFound):
        cni_agent.client.get_pod("alice/nope")
    with pytest.raises(errors.InvalidArgument, match="namespace/name"):
        cni_agent.client.get_pod("fe1")
