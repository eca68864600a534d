"""The probes' authentication pieces on their own: wire format and MAC, replay windows, the keyring, key files."""

from __future__ import annotations

import os

import pytest

from egress_agent.cluster import probe_wire as wire
from egress_agent.cluster.probe_key import Keyring, KeyFileError, read_key_file
from egress_agent.cluster.replay import SenderWindows, SeqWindow

KEY, OTHER = b"k" * 32, b"o" * 32


def probe(key: bytes = KEY, **kw) -> wire.Message:
    fields = dict(kind=wire.PROBE, key_id=wire.key_id(key), session=b"s" * 8, seq=7, time_ms=1_700_000_000_000,
                  sender="worker1", receiver="worker2")
    return wire.Message(**{**fields, **kw})


def keys(*accepted: bytes):
    by_id = {wire.key_id(k): k for k in accepted}
    return by_id.get


def rejected(data: bytes, key_for) -> str:
    with pytest.raises(wire.Rejected) as info:
        wire.decode(data, key_for)
    return info.value.reason


def test_every_field_round_trips_and_every_byte_is_authenticated():
    answer = probe(kind=wire.ANSWER, echo_session=b"e" * 8, session_age_ms=1234, sender="w" * 253)
    data = wire.encode(answer, KEY)
    assert wire.decode(data, keys(KEY)) == answer
    for i in range(len(data)):
        if 4 <= i < 5 + 8 and i != 4:
            continue  # the key id: changing it names another key (covered below)
        altered = bytearray(data)
        altered[i] ^= 0x01
        assert rejected(bytes(altered), keys(KEY)) in (wire.BAD_MAC, wire.MALFORMED), i


def test_another_key_garbage_and_the_old_text_protocol_are_told_apart():
    assert rejected(wire.encode(probe(OTHER), OTHER), keys(KEY)) == wire.WRONG_KEY
    forged = wire.encode(probe(), OTHER)  # names our key, signed with another
    assert rejected(forged, keys(KEY)) == wire.BAD_MAC
    assert rejected(b"PONG 5 worker2 0", keys(KEY)) == wire.MALFORMED
    assert rejected(b"PING 5 worker2", keys(KEY)) == wire.MALFORMED
    assert rejected(os.urandom(100), keys(KEY)) == wire.MALFORMED
    assert rejected(os.urandom(5000), keys(KEY)) == wire.MALFORMED


def test_seq_window_accepts_each_seq_once_reordered_within_the_window():
    w = SeqWindow(size=8)
    assert [w.accept(s) for s in (1, 3, 2, 3, 2, 10)] == [True, True, True, False, False, True]
    assert not w.accept(2)  # 8 or more below the highest: too old to tell, refused
    assert w.accept(9) and not w.accept(9)
    assert w.accept(4) and not w.accept(4) and not w.accept(3) and not w.accept(0)


def test_a_restarted_sender_is_not_locked_out_and_its_old_session_cannot_be_replayed():
    wins = SenderWindows(forget_after=60)
    old, new = b"A" * 8, b"B" * 8
    assert wins.accept("w1", old, 500, now=0) and not wins.accept("w1", old, 500, now=1)
    assert wins.accept("w1", new, 1, now=2)  # restarted: seq starts again at 1 under a new session
    assert not wins.accept("w1", old, 500, now=3)  # the old session's window is still there
    assert wins.accept("w2", old, 500, now=3)  # windows are per sender
    # Forgotten once nothing came for longer than forget_after (its messages fail the clock check by then).
    assert wins.accept("w1", old, 500, now=100)


def test_rotation_signs_with_the_old_key_for_the_grace_then_drops_it_after_twice_the_grace():
    now = [0.0]
    ring = Keyring(KEY, source="test", grace=10, clock=lambda: now[0])
    assert ring.signing_key() == (wire.key_id(KEY), KEY) and ring.key_for(wire.key_id(OTHER)) is None
    assert ring.rotate(OTHER) and not ring.rotate(OTHER)
    assert ring.key_for(wire.key_id(OTHER)) == OTHER  # new key accepted at once
    assert ring.signing_key()[1] == KEY  # ... but peers may not have it yet: keep signing with the old one
    now[0] = 10.5
    assert ring.signing_key()[1] == OTHER and ring.key_for(wire.key_id(KEY)) == KEY
    assert ring.ids() == [wire.key_id(OTHER).hex(), wire.key_id(KEY).hex()]
    now[0] = 20.5
    assert ring.key_for(wire.key_id(KEY)) is None and ring.ids() == [wire.key_id(OTHER).hex()]


def test_a_key_file_must_be_private_and_long_enough(tmp_path):
    f = tmp_path / "probe.key"
    f.write_bytes(os.urandom(32))
    f.chmod(0o600)
    assert len(read_key_file(str(f))) == 32
    f.chmod(0o640)  # group-readable is the operator's choice (e.g. a Secret's group)
    assert read_key_file(str(f))
    f.chmod(0o644)
    with pytest.raises(KeyFileError, match=r"mode 0644 lets other users read or change.*chmod 600"):
        read_key_file(str(f))
    f.write_bytes(b"short")
    f.chmod(0o600)
    with pytest.raises(KeyFileError, match=r"5 bytes; the cluster key must be 32 to 4096 bytes"):
        read_key_file(str(f))
    with pytest.raises(KeyFileError, match="No such file"):
        read_key_file(str(tmp_path / "missing"))


def test_a_reloaded_key_file_rotates_and_a_bad_one_is_ignored(tmp_path):
    f = tmp_path / "probe.key"
    f.write_bytes(KEY)
    f.chmod(0o600)
    now = [0.0]
    ring = Keyring(read_key_file(str(f)), source="test", reload=lambda: read_key_file(str(f)), clock=lambda: now[0])
    f.write_bytes(b"short")
    now[0] = 2
    ring.tick()
    assert ring.ids() == [wire.key_id(KEY).hex()]  # refused: the current key stays
    f.write_bytes(OTHER)
    now[0] = 4
    ring.tick()
    assert ring.ids()[0] == wire.key_id(OTHER).hex() and ring.rotations == 1
