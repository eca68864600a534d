"""Several endpoints: three real agents on one etcd cluster, one of them dead or paused.

Any agent serves the whole cluster, so the provider (and egressctl) go on
through the next endpoint when one node is down; a write sent to a paused
agent is retried on the next one with the same request id, and the paused
agent does not apply it again when it wakes up.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from egress_api import models
from egress_api.client import EgressClient
from helpers.agent import AgentProcess, ctl_command
from helpers.terraform import Terraform

pytestmark = [pytest.mark.etcd, pytest.mark.terraform]


def tcp_endpoint(agent: AgentProcess) -> str:
    return agent.extra_args[agent.extra_args.index("--listen") + 1]


def config(endpoints: list[str], policies: int) -> str:
    listed = ", ".join(f'"{e}"' for e in endpoints)
    out = [f'provider "egress" {{\n  endpoints = [{listed}]\n  timeout   = 2\n}}\n',
           'resource "egress_gateway" "gw" {\n  floating_ips = ['
           + ", ".join(f'"192.0.2.{100 + i}"' for i in range(policies)) + "]\n}\n"]
    for i in range(policies):
        out.append(f"""resource "egress_nat_policy" "p{i}" {{
  name = "p{i}"
  egress {{}}
  destination_cidrs = ["198.51.100.0/24"]
  egress_source_ip  = "192.0.2.{100 + i}"
  depends_on        = [egress_gateway.gw]
}}
""")
    return "\n".join(out)


def test_one_dead_endpoint_of_three_does_not_stop_the_pipeline(group, tmp_path):
    worker1, worker2, master1 = group["worker1"], group["worker2"], group["master1"]
    endpoints = [tcp_endpoint(a) for a in (worker1, worker2, master1)]
    worker1.kill()  # the first endpoint in the list is a dead node

    tf = Terraform(tmp_path)
    tf.write(config(endpoints, 3))
    res = tf.apply()
    assert "Apply complete! Resources: 4 added" in res.stdout
    tf.plan_is_empty()
    assert sorted(v.obj.name for v in master1.client.list_policies()) == ["p0", "p1", "p2"]

    # egressctl takes the same list, comma-separated.
    r = subprocess.run([*ctl_command(), "--endpoint", ",".join(endpoints), "get", "policies", "-o", "json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "p2" in r.stdout

    # The node that answered dies too: the last one carries on, and a destroy still works.
    worker2.kill()
    tf.plan_is_empty()
    tf.run("destroy", "-auto-approve", "-no-color", "-input=false")
    assert master1.client.list_policies() == [] and master1.client.list_gateways() == []


def test_a_write_to_a_paused_agent_fails_over_and_is_applied_once(group):
    """worker2 gets the write and sleeps; the client retries it on master1; worker2 wakes and does not apply it."""
    worker2, master1 = group["worker2"], group["master1"]
    client = EgressClient([tcp_endpoint(worker2), tcp_endpoint(master1)], timeout=1)
    client.create_gateway(models.Gateway(name="default", floating_ips=["192.0.2.100"]))
    assert client.target == tcp_endpoint(worker2)  # the first endpoint answered: calls go there
    pid = worker2.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        created = client.create_policy(models.Policy(name="p0", egress=[{}], destination_cidrs=["198.51.100.0/24"],
                                                     egress_source_ip="192.0.2.100"))
        record = client.last_call
    finally:
        os.kill(pid, signal.SIGCONT)
    assert [a.endpoint for a in record.attempts] == [tcp_endpoint(worker2), tcp_endpoint(master1)]
    assert record.unknown_outcome and f"answered by {tcp_endpoint(master1)}" in record.resolved
    assert client.target == tcp_endpoint(master1)

    # worker2 wakes up with the request still queued: it must not write p0 a second time.
    # (gRPC may drop the call the client cancelled; if the agent still runs it, the write is refused as
    # expired or answered as a replay.) A write through worker2 afterwards queues behind anything left.
    worker2.wait_healthy(15)
    worker2.client.create_gateway(models.Gateway(name="after", floating_ips=["192.0.2.200"]))
    assert "created policy 'p0'" not in worker2.log()
    assert master1.client.get_policy("p0").resource_version == created.resource_version
    assert [v.obj.name for v in worker2.client.list_policies()] == ["p0"]
    client.close()
