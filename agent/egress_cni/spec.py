"""The parts of the CNI specification (1.0.0) the plugin speaks: versions, error codes, error objects."""

from __future__ import annotations

import json

#: Versions whose result format (interfaces, ips, routes) this plugin reads and passes through.
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
CURRENT_VERSION = "1.0.0"
CHECK_SINCE = (0, 4, 0)  # CHECK exists from spec 0.4.0 on

# Well-known error codes (spec "Error codes"); 100+ are this plugin's own.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
CONTAINER_UNKNOWN = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
AGENT_REJECTED = 100  # the agent refused the pod (its message says which attribute)
NOT_PROGRAMMED = 101  # the node could not program the pod's egress


class CniError(Exception):
    """A failure the runtime must see: printed as the spec's error object on stdout, exit status 1."""

    def __init__(self, code: int, msg: str, details: str = ""):
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> str:
        body = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            body["details"] = self.details
        return json.dumps(body)


def version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return ()
