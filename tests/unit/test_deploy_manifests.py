"""deploy/kubernetes: valid against Kubernetes' OpenAPI schemas, least-privilege RBAC, and commands that work.

Validation is kubernetes-validate's offline copy of the schemas, strict (unknown fields are errors),
for the newest Kubernetes version it ships.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from egress_cni import install

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
K8S_VERSION = kubernetes_validate.utils.latest_version() + ".0"
CONF = Path(__file__).parent / "cni_conf"


def manifests() -> list[dict]:
    docs = []
    for path in sorted(DEPLOY.rglob("*.yaml")):  # with uninstall/
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> list[dict]:
    return [d for d in manifests() if d["kind"] == kind]


def pod_spec(role: str) -> dict:
    (ds,) = [d for d in by_kind("DaemonSet")
             if d["spec"]["template"]["metadata"]["labels"].get("egress.io/role") == role]
    return ds["spec"]["template"]["spec"]


@pytest.mark.parametrize("doc", manifests(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_is_valid_for_a_recent_kubernetes(doc):
    assert K8S_VERSION >= "1.33"
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validation_catches_mistakes():
    ds = copy.deepcopy(by_kind("DaemonSet")[0])
    ds["spec"]["template"]["spec"]["containers"][0]["privileged"] = True  # belongs in securityContext
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S_VERSION, strict=True)
    ds = copy.deepcopy(by_kind("DaemonSet")[0])
    ds["spec"]["template"]["spec"]["hostNetwork"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S_VERSION, strict=True)


def test_the_agent_may_only_read_pods_namespaces_and_nodes():
    (role,) = by_kind("ClusterRole")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"],
                              "verbs": ["get", "list", "watch"]}]
    (binding,) = by_kind("ClusterRoleBinding")
    (account,) = by_kind("ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]
    assert all(pod_spec(r)["serviceAccountName"] == account["metadata"]["name"] for r in ("worker", "master"))


@pytest.mark.parametrize("role", ["worker", "master"])
def test_agent_command_line(role):
    spec = pod_spec(role)
    agent = next(c for c in spec["containers"] if c["name"] == "agent")
    args = agent["args"]
    flags = dict(zip(args[::2], args[1::2]))
    assert flags["--role"] == role and flags["--node"] == "$(NODE_NAME)"
    assert flags["--datapath"] == "kernel" and flags["--socket"] == "/run/egress/agent.sock"
    assert flags["--store"] == "etcd:$(EGRESS_ETCD_ENDPOINTS)" and args[-2:] == ["--kubernetes", "--node-labels-from-kubernetes"]
    # The node network gets mutual TLS; the CNI plugin its inventory-only socket.
    assert flags["--tls-client-ca"] == "/etc/egress/tls/ca.crt" and flags["--inventory-socket"] == "/run/egress/inventory.sock"
    assert spec["hostNetwork"] is True and agent["securityContext"]["privileged"] is True
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in agent["env"]}
    assert env == {"NODE_NAME": "spec.nodeName", "HOST_IP": "status.hostIP"}
    # every $(VAR) is defined, or Kubernetes would pass it on literally
    (config,) = by_kind("ConfigMap")
    defined = set(env) | set(config["data"])
    assert set(re.findall(r"\$\((\w+)\)", " ".join(args))) <= defined
    # every flag the DaemonSet passes exists in the agent it runs
    help_text = subprocess.run([sys.executable, "-m", "egress_agent.cmd.agent", "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert {a for a in args if a.startswith("--")} - set(re.findall(r"--[a-z-]+", help_text)) == set()
    mounts = {m["mountPath"] for m in agent["volumeMounts"]}
    assert {"/run/egress", "/sys", "/sys/fs/bpf", "/lib/modules", "/usr/src"} <= mounts
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert host_paths["run-egress"] == "/run/egress"


def test_the_roles_run_on_disjoint_nodes():
    ops = {role: pod_spec(role)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
           ["nodeSelectorTerms"][0]["matchExpressions"][0] for role in ("worker", "master")}
    assert ops["worker"] == {"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}
    assert ops["master"] == {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}


def test_the_init_container_command_chains_egress_into_a_node(tmp_path):
    """Runs the init container's own arguments against a node directory tree under tmp_path."""
    (init,) = pod_spec("worker")["initContainers"]
    assert init["command"][1:] == ["-m", "egress_cni.install"]
    host = tmp_path / "host"
    (host / "etc/cni/net.d").mkdir(parents=True)
    shutil.copy(CONF / "calico.conflist", host / "etc/cni/net.d/10-calico.conflist")
    plugin = tmp_path / "egress"
    plugin.write_bytes(b"\x7fELF plugin")
    args = [a.replace("=/host/", f"={host}/").replace(install.DEFAULT_PLUGIN_BINARY, str(plugin)) for a in init["args"]]
    assert install.main(args) == 0
    chain = json.loads((host / "etc/cni/net.d/10-calico.conflist").read_text())["plugins"]
    assert chain[-1] == {"type": "egress", "agentSocket": "/run/egress/inventory.sock", "failurePolicy": "closed"}
    assert (host / "opt/cni/bin/egress").read_bytes() == b"\x7fELF plugin"
    keeper = next(c for c in pod_spec("worker")["containers"] if c["name"] == "cni-keeper")
    assert keeper["args"] == init["args"] + ["--every=10"]

    (uninstall_ds,) = [d for d in by_kind("DaemonSet") if d["metadata"]["name"] == "egress-uninstall"]
    uninstall = uninstall_ds["spec"]["template"]["spec"]["initContainers"][0]
    assert install.main([a.replace("=/host/", f"={host}/") for a in uninstall["args"]]) == 0
    assert json.loads((host / "etc/cni/net.d/10-calico.conflist").read_text()) == \
        json.loads((CONF / "calico.conflist").read_text())
    assert not (host / "opt/cni/bin/egress").exists()
