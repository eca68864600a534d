"""The configuration's gateways and policies, as `terraform validate` saw them, for plan-time decisions.

A resource's PlanResourceChange sees only its own configuration, and
Terraform plans independent resources in any order, so while planning a
policy the provider cannot tell whether a gateway listing its source IP is
still to be planned. But every `terraform plan` (and `apply` without a saved
plan) first runs a *validate walk* in a separate plugin process, which gets
ValidateResourceConfig for every resource block of the configuration before
the plan walk starts. That process records what it saw here, and the plan
walk's process reads it: with it, "no gateway of the configuration lists
this IP" is decidable, so it can be a plan error instead of a warning.

The two processes are children of the same Terraform process; the record is
keyed by that process (pid and start time, so a reused pid never matches).
Only values known in the validate walk count: a block whose name or IPs come
from variables, `count.index` or `each` makes that kind *incomplete*, and the
plan then decides only what it can without it (never a false error). With
several provider configurations (aliases) there are several validate
processes and no single inventory, so none is used.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from egress_api import models
from egress_api.precedence import DEFAULT_PRIORITY

_MAX_AGE_S = 3600  # records of finished runs are removed by later runs


@functools.cache  # the Terraform process that started this plugin process never changes (one /proc read per block was most of a validate call)
def _walk_dir() -> Optional[Path]:
    """This Terraform run's directory: <tmp>/egress-provider-<uid>/<terraform pid>-<its start time>."""
    ppid = os.getppid()
    try:
        start = Path(f"/proc/{ppid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return Path(tempfile.gettempdir()) / f"egress-provider-{os.getuid()}" / f"{ppid}-{start}"


@functools.cache  # the Terraform process that started this plugin process, and so its arguments, never change
def destroy_run() -> bool:
    """Whether this Terraform run destroys (`terraform destroy`, `plan -destroy`, `apply -destroy`).

    A destroy first runs a normal-mode plan of the configuration to refresh the state (Terraform's
    pre-destroy refresh), and an error there would stop the destroy. Nothing a destroy leaves
    behind can be wrong in the configuration's sense, so the cross-object checks stay silent.
    """
    try:
        args = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        args = []
    args += [a for k, v in os.environ.items() if k.startswith("TF_CLI_ARGS") for a in v.split()]
    return any(a in ("destroy", "-destroy", "--destroy") or a.startswith(("-destroy=", "--destroy=")) and
               a.split("=", 1)[1].lower() in ("true", "1") for a in args)


def _string_list(value: Any) -> Optional[list[str]]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


@dataclass
class Inventory:
    """Gateway name -> floating IPs, policy name -> (source IP, gateway), and whether each kind is fully known.

    A policy's source IP is None when it is to be allocated from its gateway; its gateway None when it names none.
    """

    gateways: dict[str, list[str]] = field(default_factory=dict)
    policies: dict[str, tuple[Optional[str], Optional[str]]] = field(default_factory=dict)
    gateways_complete: bool = True
    policies_complete: bool = True
    _objects: Optional[tuple] = field(default=None, repr=False, compare=False)  # objects(), once loaded
    _by_ip: Optional[dict] = field(default=None, repr=False, compare=False)  # policies_using(), once loaded

    def objects(self) -> tuple[dict[str, models.Gateway], dict[str, models.Policy]]:
        """(gateways, policies) as partial models (gateways' IPs, policies' source IP and gateway), built once:
        the plan checks compare every planned object with them."""
        if self._objects is None:
            self._objects = (
                {n: models.Gateway.model_construct(name=n, floating_ips=list(ips)) for n, ips in self.gateways.items()},
                # Every field given: a defaulted one costs pydantic a signature inspection (0.1 ms) per object.
                {n: models.Policy.model_construct(name=n, egress=[], destination_cidrs=[], egress_source_ip=ip,
                                                  gateway=gw, excluded_cidrs=[], priority=DEFAULT_PRIORITY)
                 for n, (ip, gw) in self.policies.items()},
            )
        return self._objects

    def policies_using(self, ip: str) -> list[models.Policy]:
        """The configuration's policies whose source IP is `ip` (partial models, as `objects`)."""
        if self._by_ip is None:
            by_ip: dict[str, list[models.Policy]] = {}
            for p in self.objects()[1].values():
                by_ip.setdefault(p.egress_source_ip, []).append(p)
            self._by_ip = by_ip
        return self._by_ip.get(ip, [])

    def add(self, kind: str, config: dict[str, Any]) -> list:
        """Note one resource block's configuration; returns what it added, as JSON (see `replay`)."""
        if kind == "gateway":
            name = "default" if config.get("name") is None else config.get("name")  # the schema's default
            ips = _string_list(config.get("floating_ips"))
            if not isinstance(name, str) or ips is None:
                return self.replay(["incomplete", kind])
            try:
                return self.replay([kind, name, sorted({models.parse_ipv4(ip) for ip in ips})])
            except ValueError:
                return []  # invalid: validation reports it
        if kind == "policy":
            name, ip, gateway = config.get("name"), config.get("egress_source_ip"), config.get("gateway")
            # Unset is known (None); anything else must be a known string.
            if not isinstance(name, str) or not isinstance(ip, (str, type(None))) or \
                    not isinstance(gateway, (str, type(None))) or ip is None and gateway is None:
                return self.replay(["incomplete", kind])
            try:
                return self.replay([kind, name, [ip and models.parse_ipv4(ip), gateway]])
            except ValueError:
                return []
        return []

    def replay(self, entry: list) -> list:
        """Apply one entry `add` returned: [kind, name, value] or ["incomplete", kind]."""
        if entry and entry[0] == "incomplete":
            if entry[1] == "gateway":
                self.gateways_complete = False
            else:
                self.policies_complete = False
        elif entry:
            if entry[0] == "gateway":
                self.gateways[entry[1]] = entry[2]
            else:
                self.policies[entry[1]] = tuple(entry[2])
        self._objects = self._by_ip = None
        return entry


class ConfigInventory:
    """Records (validate walk) and reads (plan walk) the Inventory of this Terraform run."""

    def __init__(self):
        self._lock = threading.Lock()
        self._recorded = Inventory()
        self._started = False  # this process's record file is open, old runs' records removed
        self._file = None
        self._loaded: Optional[Inventory] = None
        self._load_done = False

    # --- validate walk ---
    def record(self, kind: str, config: dict[str, Any]) -> None:
        """Note a resource block's configuration (called from ValidateResourceConfig before configuration).

        Appends one line per block (a whole-file rewrite per block made the validate walk quadratic)."""
        where = _walk_dir()
        if where is None:
            return
        with self._lock:
            first, self._started = not self._started, True
            entry = self._recorded.add(kind, config)
            if first:
                where.mkdir(parents=True, exist_ok=True)
                self._file = open(where / f"{os.getpid()}.jsonl", "a", encoding="utf-8")
            if entry:
                self._file.write(json.dumps(entry) + "\n")
                self._file.flush()  # the plan walk's process reads it; Terraform may stop this one any time
        if first:  # once per process: the folder holds one entry per past Terraform run
            _remove_old(where.parent)

    # --- plan walk ---
    def load(self) -> Optional[Inventory]:
        """The validate walk's inventory of this run, or None when there is no single one."""
        with self._lock:
            if not self._load_done:
                self._load_done = True
                self._loaded = self._read()
            return self._loaded

    @staticmethod
    def _read() -> Optional[Inventory]:
        where = _walk_dir()
        if where is None or not where.is_dir():
            return None
        files = [f for f in where.glob("*.jsonl") if f.stem != str(os.getpid())]
        if len(files) != 1:
            return None
        inventory = Inventory()
        try:
            for line in files[0].read_text(encoding="utf-8").splitlines():
                inventory.replay(json.loads(line))
        except (OSError, ValueError, TypeError, IndexError, AttributeError):
            return None
        return inventory


def _remove_old(root: Path) -> None:
    now = time.time()
    for d in root.iterdir():
        try:
            if now - d.stat().st_mtime > _MAX_AGE_S:
                for f in d.iterdir():
                    f.unlink()
                d.rmdir()
        except OSError:
            pass
