"""The kernel lab for datapath tests: 3 workers + 1 master, built once per session, always torn down."""

from __future__ import annotations

import os

import pytest

from helpers.lab import KernelLab

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("kernel tests need root (network namespaces, eBPF, nftables): run them as root")
    lab = KernelLab(tmp_path_factory.mktemp("lab"), workers=3, masters=1)
    try:
        # The seed's cast: alice's frontend pods on a normal node and on the gateway node,
        # alice's backend, bob's frontend, and paul's frontend.
        lab.add_pod("fe1", "worker1", "alice", role="frontend")
        lab.add_pod("fe2", "worker2", "alice", role="frontend")
        lab.add_pod("be1", "worker1", "alice", role="backend")
        lab.add_pod("bob1", "worker1", "bob", role="frontend")
        lab.add_pod("paul1", "worker3", "paul", role="frontend")
        yield lab
    finally:
        lab.close()


@pytest.fixture
def clean_lab(lab):
    """The session lab with no datapath installed, before and after the test."""
    lab.reset()
    yield lab
    lab.reset()
