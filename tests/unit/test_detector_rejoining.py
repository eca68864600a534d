"""A crashed agent restarted on a live node: held while its kernel refuses probes, then rejoining while its new
agent answers before the leader has seen its new lease (Detector.rejoining), then a member again.

Real detectors on loopback UDP. Without the rejoining state the leader's decision (cluster/nodes.py) judged
such a node Down for the few ms between its first answer and its new lease, and moved its IPs.
"""

from __future__ import annotations

import os

from egress_agent.cluster.detector import Detector
from egress_agent.cluster.probe_key import Keyring
from helpers.etcd import free_port
from helpers.store_contract import wait_for


def test_a_restarted_agent_answering_before_its_lease_is_seen_is_rejoining_not_gone():
    key = Keyring(os.urandom(32), source="test")
    leader = Detector("a", f"127.0.0.1:{free_port()}", keyring=key, crash_hold=5.0)
    b_address = f"127.0.0.1:{free_port()}"
    b = Detector("b", b_address, keyring=key)
    restarted = None
    leader.set_peers({"b": b_address})
    b.set_peers({"a": leader.address})
    try:
        leader.start()
        b.start()
        wait_for(lambda: leader.is_up("b"), timeout=3, what="b Up")

        b.stop()  # kill -9: nothing bound to its probe port, its kernel refuses the probes
        wait_for(lambda: leader.held("b"), timeout=3, what="b held (refusing)")
        leader.set_peers({})  # its lease expired: kept, probed, as a non-member
        assert leader.held("b") and not leader.rejoining("b")

        restarted = Detector("b", b_address, keyring=key)  # the new agent binds the same port and answers
        restarted.set_peers({"a": leader.address})
        restarted.start()
        wait_for(lambda: leader.is_up("b"), timeout=3, what="the restarted b answering")
        assert leader.rejoining("b") and not leader.held("b")
        assert "b" in leader.peers()  # still probed, not forgotten

        leader.set_peers({"b": b_address})  # its new lease arrives
        assert leader.is_up("b") and not leader.rejoining("b")
    finally:
        for d in (leader, b, restarted):
            if d is not None:
                d.stop()


def test_a_member_that_left_without_being_held_is_not_rejoining():
    """A peer whose lease went while it was answering (not crashed: e.g. it left) is forgotten, as before."""
    key = Keyring(os.urandom(32), source="test")
    leader = Detector("a", f"127.0.0.1:{free_port()}", keyring=key, crash_hold=5.0)
    b = Detector("b", f"127.0.0.1:{free_port()}", keyring=key)
    leader.set_peers({"b": b.address})
    b.set_peers({"a": leader.address})
    try:
        leader.start()
        b.start()
        wait_for(lambda: leader.is_up("b"), timeout=3, what="b Up")
        leader.set_peers({})
        assert not leader.rejoining("b") and "b" not in leader.peers()
    finally:
        leader.stop()
        b.stop()
