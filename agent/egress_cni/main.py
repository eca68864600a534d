"""`egress-cni`: ADD / DEL / CHECK / VERSION, and `egress-cni install`.

    ADD    pod from CNI_ARGS, IPv4 + host interface from prevResult -> UpsertPod, which returns once the
           node has programmed the pod; then prevResult is printed unchanged.
    DEL    DeletePod; succeeds when the pod, its record or the agent is already gone (idempotent).
    CHECK  the agent knows the pod with the same IP and interface, and its classifier is attached.
    VERSION the versions served.

failurePolicy "closed" (default): an ADD whose egress cannot be guaranteed fails, so the pod does not
start. "open": the pod starts anyway; the failure is logged on stderr and appended (one JSON line per pod)
to failOpenLog (default: fail-open.log next to the agent socket), which counts them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from io import TextIOBase as TextIO

from . import spec
from .request import Request, parse, read_conf
from .spec import CniError

USAGE = """egress-cni: a chained CNI plugin for egress (run by the container runtime with CNI_COMMAND set).

  egress-cni install [--dir /opt/cni/bin]   install this plugin as DIR/egress (the conflist's "type": "egress")
"""


def _version_result(version: str) -> dict:
    return {"cniVersion": version, "supportedVersions": list(spec.SUPPORTED_VERSIONS)}


def _pod_key(req: Request) -> str:
    pod = req.pod
    assert pod is not None
    return f"{pod[0]}/{pod[1]}"


def _calls(req: Request):
    from .agent import AgentCalls

    return AgentCalls(req.agent_socket, req.timeout)


def cmd_add(req: Request, log: TextIO) -> dict:
    from .agent import AgentFailure
    from .request import attachment

    att = attachment(req)  # config errors fail whatever the policy: they are the operator's to fix
    if req.pod is None:
        raise CniError(spec.INVALID_ENV, "CNI_ARGS has no K8S_POD_NAMESPACE and K8S_POD_NAME: "
                       "egress selects pods by their Kubernetes namespace and labels")
    namespace, name, uid = req.pod
    calls = _calls(req)
    try:
        calls.upsert_pod(_pod_key(req), {"ip": att.ip, "interface": att.host_interface, "uid": uid,
                                         "labels": req.labels})
    except AgentFailure as err:
        if err.code == "INVALID_ARGUMENT":
            raise CniError(spec.AGENT_REJECTED, f"the egress-agent rejected pod {namespace}/{name}: {err}") from None
        _fail(req, err, log)
    finally:
        calls.close()
    out = dict(req.prev_result or {})
    out["cniVersion"] = req.cni_version
    return out


def _fail(req: Request, err, log: TextIO) -> None:
    """Apply the failure policy to an agent failure during ADD."""
    if req.failure_policy == "open":
        print(f"egress-cni: failurePolicy open: pod {_pod_key(req)} starts without guaranteed egress: {err}", file=log)
        _record_fail_open(req, str(err))
        return
    code = spec.TRY_AGAIN_LATER if not err.reachable or err.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED") \
        else spec.NOT_PROGRAMMED
    raise CniError(code, f"pod {_pod_key(req)} not started: its egress cannot be guaranteed (failurePolicy closed): {err}")


def _record_fail_open(req: Request, why: str) -> None:
    path = req.conf.get("failOpenLog") or os.path.join(os.path.dirname(req.agent_socket), "fail-open.log")
    entry = {"time": time.time(), "pod": _pod_key(req), "container_id": req.container_id, "reason": why}
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")
    except OSError as err:
        print(f"egress-cni: cannot append to {path}: {err}", file=sys.stderr)


def cmd_del(req: Request, log: TextIO) -> None:
    from .agent import AgentFailure

    if req.pod is None:
        return  # nothing of ours to remove
    calls = _calls(req)
    try:
        calls.delete_pod(_pod_key(req))
    except AgentFailure as err:
        # The spec wants DEL to succeed when things are already gone. The pod's interface is gone with
        # its sandbox; a record left behind steers nothing and the Kubernetes watcher removes it.
        if err.code != "NOT_FOUND":
            print(f"egress-cni: DEL {_pod_key(req)}: {err} (ignored: the pod is going away)", file=log)
    finally:
        calls.close()


def cmd_check(req: Request, log: TextIO) -> None:
    from .agent import AgentFailure
    from .request import attachment

    if spec.version_tuple(req.cni_version) < spec.CHECK_SINCE:
        raise CniError(spec.INCOMPATIBLE_VERSION, f"CHECK needs cniVersion 0.4.0 or later, not {req.cni_version}")
    att = attachment(req)
    if req.pod is None:
        raise CniError(spec.INVALID_ENV, "CNI_ARGS has no K8S_POD_NAMESPACE and K8S_POD_NAME")
    key = _pod_key(req)
    calls = _calls(req)
    try:
        pod = calls.get_pod(key)
    except AgentFailure as err:
        if err.code == "NOT_FOUND":
            raise CniError(spec.CONTAINER_UNKNOWN, f"the egress-agent does not know pod {key}: {err}") from None
        code = spec.TRY_AGAIN_LATER if not err.reachable else spec.NOT_PROGRAMMED
        raise CniError(code, f"CHECK {key}: {err}") from None
    finally:
        calls.close()
    if (pod.get("ip"), pod.get("interface")) != (att.ip, att.host_interface):
        raise CniError(spec.NOT_PROGRAMMED, f"the egress-agent has pod {key} at {pod.get('ip')} on {pod.get('interface') or '-'}, "
                       f"but the chain gave it {att.ip} on {att.host_interface}: delete and re-create the pod")


def run(env: Mapping[str, str], stdin: str, out: TextIO, log: TextIO) -> int:
    """One invocation; returns the exit status (0 success, 1 error object printed)."""
    command = env.get("CNI_COMMAND", "")
    version = spec.CURRENT_VERSION
    try:
        if command == "VERSION":
            conf = read_conf(stdin) if stdin.strip() else {}
            asked = conf.get("cniVersion", spec.CURRENT_VERSION)
            out.write(json.dumps(_version_result(asked if asked in spec.SUPPORTED_VERSIONS else spec.CURRENT_VERSION)))
            return 0
        if command not in ("ADD", "DEL", "CHECK"):
            raise CniError(spec.INVALID_ENV, f"CNI_COMMAND {command!r}: expected ADD, DEL, CHECK or VERSION")
        req = parse(env, stdin)
        version = req.cni_version
        if command == "ADD":
            out.write(json.dumps(cmd_add(req, log)))
        elif command == "DEL":
            cmd_del(req, log)
        else:
            cmd_check(req, log)
        return 0
    except CniError as err:
        if err.code != spec.INCOMPATIBLE_VERSION:
            try:
                version = json.loads(stdin).get("cniVersion") or version
                version = version if version in spec.SUPPORTED_VERSIONS else spec.CURRENT_VERSION
            except (ValueError, AttributeError):
                pass
        out.write(err.to_json(version))
        return 1


def install_plugin(directory: str) -> str:
    """Write DIR/egress, a two-line launcher of this plugin (not a symlink: it survives reinstalls of the venv's
    console scripts). Returns its path.

    The launcher runs Python with -S (no site: no .pth files, no editable-install finders, which cost this
    machine ~100 ms per start) and -I, and puts just the directory holding this package on sys.path: the
    plugin needs nothing else, it imports only the standard library.
    """
    import shlex

    target = os.path.join(directory, "egress")
    home = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = f"import sys; sys.path.insert(0, {json.dumps(home)}); from egress_cni.main import main; main()"
    os.makedirs(directory, exist_ok=True)
    tmp = target + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"#!/bin/sh\nexec {sys.executable} -I -S -c {shlex.quote(code)} \"$@\"\n")
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    return target


def install(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="egress-cni install", description="install egress-cni as DIR/egress")
    ap.add_argument("--dir", default="/opt/cni/bin", help="the runtime's CNI_PATH directory (default /opt/cni/bin)")
    args = ap.parse_args(argv)
    target = install_plugin(args.dir)
    print(f"installed {target} (runs egress_cni with {sys.executable}); use \"type\": \"egress\" as the last plugin "
          "of the conflist")
    return 0


def main() -> None:
    if "CNI_COMMAND" not in os.environ:
        if sys.argv[1:2] == ["install"]:
            sys.exit(install(sys.argv[2:]))
        sys.stderr.write(USAGE)
        sys.exit(2)
    sys.exit(run(os.environ, sys.stdin.read(), sys.stdout, sys.stderr))
