"""The probes' cluster key: created once in etcd and shared, and rotated through key files without a Down.

Real detectors exchanging real UDP probes on loopback, real key files rewritten in place, real etcd.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from egress_agent.cluster.detector import Detector
from egress_agent.cluster.probe_key import ETCD_KIND, ETCD_NAME, Keyring, etcd_key
from egress_agent.cluster.probe_wire import key_id
from egress_agent.store.etcd import EtcdStore
from helpers.etcd import free_port
from helpers.store_contract import wait_for

pytestmark = pytest.mark.etcd


def test_the_first_agent_creates_the_key_once_and_every_agent_reads_the_same(etcd, prefix):
    stores = [EtcdStore([etcd.members[0].url], prefix) for _ in range(4)]
    keys, stop = [None] * 4, threading.Event()

    def fetch(i):
        keys[i] = etcd_key(stores[i], f"n{i}", stop=stop, max_wait=5)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(4)]  # racing, as agents starting together
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    stored = stores[0].snapshot([ETCD_KIND]).of(ETCD_KIND)
    assert list(stored) == [ETCD_NAME] and stored[ETCD_NAME].version == stored[ETCD_NAME].version
    assert etcd_key(stores[0], "n0", stop=stop) == keys[0]  # later agents read it, never replace it
    for s in stores:
        s.close()


def key_file(path, key: bytes) -> str:
    path.write_bytes(key)
    path.chmod(0o600)
    return str(path)


def test_a_key_file_rotated_node_by_node_within_the_grace_keeps_everyone_up(tmp_path, caplog):
    """a and b rotate K1 -> K2 one after the other; c never does and is refused once the old key expires."""
    grace = 1.0
    k1, k2 = os.urandom(32), os.urandom(32)
    files = {n: key_file(tmp_path / f"{n}.key", k1) for n in "abc"}
    dets = {n: Detector(n, f"127.0.0.1:{free_port()}", keyring=Keyring.from_file(files[n], grace=grace)) for n in "abc"}
    downs = []
    for n, d in dets.items():
        d.on_change = lambda peer, up, me=n: downs.append((me, peer, up, time.monotonic()))
        d.set_peers({p: o.address for p, o in dets.items() if p != n})
    caplog.set_level(logging.INFO, logger="egress_agent.cluster")
    try:
        for d in dets.values():
            d.start()
        time.sleep(0.5)
        assert downs == []
        key_file(tmp_path / "a.key", k2)  # the operator rolls the new file out: a first ...
        wait_for(lambda: dets["a"].keyring.rotations == 1, timeout=3, what="a to load the new key")
        time.sleep(0.3)
        key_file(tmp_path / "b.key", k2)  # ... b within the grace (each agent re-reads its file every second)
        # Through both switches to signing with K2 (a grace after each change), a and b never lose each other.
        deadline = time.monotonic() + 8
        while not all(dets[n].keyring.signing_key()[0] == key_id(k2) for n in "ab"):
            assert dets["a"].is_up("b") and dets["b"].is_up("a")
            assert time.monotonic() < deadline, "a and b never both signed with the new key"
            time.sleep(0.01)
        for _ in range(50):
            assert dets["a"].is_up("b") and dets["b"].is_up("a")
            time.sleep(0.01)
        assert not [d for d in downs if d[1] in "ab" and d[0] in "ab"]
        # c, left with K1, cannot check their K2 probes: Down for both; once the old key's second grace
        # is over, c's K1 probes are refused too, and the log says why.
        wait_for(lambda: not dets["a"].is_up("c") and not dets["b"].is_up("c"), timeout=5, what="c Down for a and b")
        wait_for(lambda: dets["a"].rejected_counts().get(("probe", "wrong_key")), timeout=5,
                 what="c's probes refused once K1 is no longer accepted")
        assert "the agents have different cluster keys" in caplog.text
    finally:
        for d in dets.values():
            d.stop()


def test_a_probe_outside_the_clock_window_is_not_answered_and_the_log_says_check_ntp(caplog):
    """Real UDP to a real detector; the test signs probes with the key, as a node with a wrong clock would."""
    import socket

    from egress_agent.cluster import probe_wire as wire

    key = os.urandom(32)
    det = Detector("w2", f"127.0.0.1:{free_port()}", keyring=Keyring(key, source="test"))
    host, port = det.address.rsplit(":", 1)
    caplog.set_level(logging.INFO, logger="egress_agent.cluster")
    det.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(0.5)
            now_ms = time.time_ns() // 1_000_000
            for seq, skew_s in ((1, -45), (2, +45), (3, -25), (4, +25)):  # 30 s window: the last two are answered
                probe = wire.Message(wire.PROBE, key_id(key), b"S" * 8, seq, now_ms + skew_s * 1000, "w1", "w2")
                s.sendto(wire.encode(probe, key), (host, int(port)))
                if abs(skew_s) > det.clock_window:
                    with pytest.raises(socket.timeout):
                        s.recvfrom(2048)
                else:
                    assert wire.decode(s.recvfrom(2048)[0], {key_id(key): key}.get).seq == seq
        assert det.rejected_counts() == {("probe", "stale"): 2}
        assert "45.0 s behind this node's clock" in caplog.text and "check NTP" in caplog.text
    finally:
        det.stop()
