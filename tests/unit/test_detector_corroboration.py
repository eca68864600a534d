"""What a detector's silence means: someone else's only if another peer still answers
(Detector.hears_others_than), and nothing about a Down peer when the silence was our own pause.

Real detectors on loopback UDP: the Cluster deposes a leader that stops answering only when this holds, so
an agent that is itself cut off (every peer silent at once) does not revoke a healthy leader's lease.
"""

from __future__ import annotations

import os
import time

from egress_agent.cluster.detector import Detector
from egress_agent.cluster.probe_key import Keyring
from helpers.etcd import free_port
from helpers.store_contract import wait_for


def test_one_silent_peer_is_corroborated_by_the_others_and_everyone_silent_is_not():
    key = Keyring(os.urandom(32), source="test")
    dets = {n: Detector(n, f"127.0.0.1:{free_port()}", keyring=key) for n in "abc"}
    for n, d in dets.items():
        d.set_peers({p: o.address for p, o in dets.items() if p != n})
    try:
        for d in dets.values():
            d.start()
        wait_for(lambda: dets["a"].is_up("b") and dets["a"].is_up("c") and dets["a"].peers()["c"][0], timeout=3,
                 what="a hears b and c")
        assert dets["a"].hears_others_than("c")

        dets["c"].stop()  # c falls silent; b still answers: c's silence is c's own
        wait_for(lambda: not dets["a"].is_up("c"), timeout=3, what="c Down for a")
        assert dets["a"].hears_others_than("c")
        assert dets["a"].answering({"b", "c"}) == {"b"}

        dets["b"].stop()  # now nobody answers a: as seen from a cut-off node, nothing says c is the one gone
        wait_for(lambda: not dets["a"].is_up("b"), timeout=3, what="b Down for a")
        assert not dets["a"].hears_others_than("c")
        assert not dets["a"].hears_others_than("b")
        assert dets["a"].answering({"b", "c"}) == set()
    finally:
        for d in dets.values():
            d.stop()  # again for b and c: stopping twice is harmless


def test_with_a_single_peer_there_is_nobody_to_ask_and_its_silence_counts():
    key = Keyring(os.urandom(32), source="test")
    a = Detector("a", f"127.0.0.1:{free_port()}", keyring=key)
    a.set_peers({"b": f"127.0.0.1:{free_port()}"})  # never answers
    assert a.hears_others_than("b")
    a.stop()


def test_a_pause_of_our_own_does_not_bring_a_down_peer_back():
    """After its own pause an agent re-observes its Up peers for a window; a Down one stays Down meanwhile."""
    key = Keyring(os.urandom(32), source="test")
    a, b = (Detector(n, f"127.0.0.1:{free_port()}", keyring=key) for n in "ab")
    a.set_peers({"b": b.address})
    b.set_peers({"a": a.address})
    verdicts = []
    a.on_change = lambda peer, up: verdicts.append((peer, up))
    try:
        a.start()
        b.start()
        wait_for(lambda: a.peers()["b"][0], timeout=3, what="a hears b")
        b.stop()
        wait_for(lambda: ("b", False) in verdicts, timeout=3, what="b Down for a")
        with a._lock:  # a's probe loop cannot run: the agent is starved for 0.4 s
            time.sleep(0.4)
        for _ in range(30):  # through the whole re-observation window
            assert not a.is_up("b")
            time.sleep(0.01)
        assert a.pauses >= 1
        assert verdicts[verdicts.index(("b", False)):] == [("b", False)]
    finally:
        a.stop()
        b.stop()
