"""An egress-agent with --kubernetes against the API-server double (the only double our tests allow)."""

from __future__ import annotations

import pytest

from helpers.agent import AgentProcess
from helpers.kube_apiserver import KubeApiServerDouble


@pytest.fixture
def apiserver():
    with KubeApiServerDouble() as server:
        yield server


def kube_agent(tmp_path, apiserver: KubeApiServerDouble, *extra: str, start: bool = True) -> AgentProcess:
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    agent = AgentProcess(tmp_path / "agent", extra_args=["--kubernetes", "--kubeconfig", str(kubeconfig), *extra])
    agent.extra_args += ["--inventory-socket", str(agent.pod_socket)]  # the CNI plugin's socket
    return agent.start() if start else agent


@pytest.fixture
def make_kube_agent(tmp_path, apiserver):
    made = []

    def make(*extra: str, start: bool = True) -> AgentProcess:
        agent = kube_agent(tmp_path, apiserver, *extra, start=start)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()
