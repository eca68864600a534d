"""The fault suite: real agents on a real 3-member etcd, each fault injected for real.

Every test injects one fault (SIGSTOP/SIGCONT, kill -9, etcd stopped, a
gateway bigger than one etcd transaction, ...) and asserts the outcome: who
holds what, which events fired, how many leader terms. Each test is bounded
(well under a minute); the matrix is in docs/faults.md.

Timing windows are derived from the agents' detector settings (probes every
20 ms, Down after 10 misses = 200 ms; lease TTL 2 s), never loosened to make
a slow machine pass.
"""

import pytest

pytestmark = pytest.mark.etcd

#: The agents' defaults (cluster/detector.py, cluster/membership.py).
PROBE_WINDOW = 0.2
LEASE_TTL = 2.0
