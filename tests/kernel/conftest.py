"""The kernel lab for datapath tests: 3 workers + 1 master, built once per session, always torn down."""

from __future__ import annotations

import os

import pytest

from helpers.lab import SEED_PODS, KernelLab

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("kernel tests need root (network namespaces, eBPF, nftables): run them as root")
    lab = KernelLab(tmp_path_factory.mktemp("lab"), workers=3, masters=1)
    try:
        for pod, node, namespace, labels in SEED_PODS:
            lab.add_pod(pod, node, namespace, **labels)
        yield lab
    finally:
        lab.close()


@pytest.fixture
def clean_lab(lab):
    """The session lab with no datapath installed, before and after the test."""
    lab.reset()
    yield lab
    lab.reset()
