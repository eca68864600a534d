"""Turn egress errors into Terraform diagnostics that point at the attribute.

Violations carry model locations such as ('egress', 0, 'pod_selector',
'match_labels', 'Bad Key'): field names, list indexes and map keys. `Locator`
is the one place they become tfplugin6 attribute paths, walking the
resource's schema next to the values that were checked:

- an attribute or block name is an attribute-name step;
- a map key is an element-key-string step: Terraform then points at that
  entry of the map expression;
- a list element is an element-key-int step (for list attributes);
- a set has no order Terraform can address: cty sends set elements in its own
  order, while Terraform reads an int step under a block name as "the n-th
  block as written". So a set of blocks with one element is addressed as
  element 0 (exact, whatever the order), a larger one stops at the set, and a
  set of strings stops at the attribute (Terraform underlines the whole list;
  the message names the bad value).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

from tf.schema import NestMode
from tf.types import List, Map, Set
from tf.utils import Diagnostics

from egress_api import errors
from egress_api.models import InvalidObject, Violation

PathStep = str | tuple  # tf's form: "name" is an attribute, ("key",) or (0,) an element


class Locator:
    """Where a model location is in a resource: its tfplugin6 attribute path and a label users read."""

    def __init__(self, schema: Any, values: Optional[dict] = None):
        self.schema = schema  # tf Schema or Block: has .attributes and .block_types
        self.values = values if isinstance(values, dict) else {}

    def locate(self, loc: Sequence[str | int]) -> tuple[list[PathStep], str]:
        """(attribute path, label) for `loc`, e.g. (['egress', (0,), 'pod_selector', 'match_labels', ('Bad',)],
        'egress.pod_selector.match_labels["Bad"]'). The label names the whole location even where the
        path has to stop short (inside a set of several blocks)."""
        path: list[PathStep] = []
        label = ""
        addressable = True  # False once the path has stopped: the rest only goes into the label
        block, value = self.schema, self.values
        steps = list(loc)
        while steps:
            name = str(steps.pop(0))
            label += ("." if label else "") + name
            if addressable:
                path.append(name)
            attr = next((a for a in block.attributes if a.name == name), None)
            nested = next((b for b in block.block_types if b.type_name == name), None)
            if attr is not None:
                if steps and isinstance(attr.type, Map):
                    key = str(steps.pop(0))
                    label += f'["{key}"]'
                    if addressable:
                        path.append((key,))
                elif steps and isinstance(attr.type, List) and not isinstance(attr.type, Set):
                    index = int(steps.pop(0))
                    label += f"[{index}]"
                    if addressable:
                        path.append((index,))
                break  # our attributes hold no objects: nothing deeper to address
            if nested is None:
                break  # not in the schema (an attribute the model does not know): its name is all we have
            value = value.get(name) if isinstance(value, dict) else None
            if nested.nesting_mode != NestMode.Single:  # a set of blocks, the only other mode tf has
                if not steps or not _is_index(steps[0]):
                    break
                index = int(steps.pop(0))
                elements = value if isinstance(value, list) else []
                if len(elements) == 1 and addressable:
                    path.append((0,))
                else:
                    addressable = False  # which block as written this element is cannot be known (see above)
                value = elements[index] if index < len(elements) else None
            block = nested.block
        return path, label


def _is_index(step) -> bool:
    return isinstance(step, int) or (isinstance(step, str) and step.isdigit())


def attribute_path(path: Sequence[str | int]) -> list[str]:
    """Without a schema: attribute names up to the first index (where a violation's object is not at hand)."""
    out: list[str] = []
    for step in path:
        if _is_index(step):
            break
        out.append(str(step))
    return out


def _plain_label(path: Sequence[str | int]) -> str:
    return ".".join(str(step) for step in path if not _is_index(step))


def _where(v: Violation, at: Optional[Locator]) -> tuple[Optional[list[PathStep]], str]:
    if at is not None:
        path, label = at.locate(v.path)
        return path or None, label
    return attribute_path(v.path) or None, _plain_label(v.path)


def add_violations(
    diags: Diagnostics,
    violations: Iterable[Violation],
    *,
    kind: str,
    name: str,
    warning: bool = False,
    note: str = "",
    at: Optional[Locator] = None,
) -> None:
    """One diagnostic per violation, at its attribute path: summary names the attribute, detail is the model's message."""
    for v in violations:
        path, label = _where(v, at)
        label = label or kind
        summary = f"Check {label}" if warning else f"Invalid {label}"
        detail = v.message + (f"\n\n{note}" if note else "")
        (diags.add_warning if warning else diags.add_error)(summary, detail, path=path)


def add_invalid_object(diags: Diagnostics, err: InvalidObject, at: Optional[Locator] = None) -> None:
    add_violations(diags, err.violations, kind=err.kind, name=err.name, at=at)


def add_api_error(
    diags: Diagnostics,
    err: errors.ApiError,
    *,
    action: str,
    kind: str,
    name: str,
    endpoint: str = "",
    at: Optional[Locator] = None,
) -> None:
    """An agent error as an error diagnostic with an actionable summary.

    `action` reads like "create egress_gateway \"default\""; `at` places violations in the resource.
    """
    if err.violations and isinstance(err, (errors.InvalidArgument, errors.FailedPrecondition)):
        note = f"The agent refused to {action}; nothing was changed."
        for v in err.violations:
            path, label = _where(v, at)
            diags.add_error(f"Invalid {label or kind}", f"{v.message}\n\n{note}", path=path)
        return
    if isinstance(err, errors.Conflict):
        diags.add_error(
            f"Conflict: {kind} {name!r} was changed by someone else",
            f"{err.message}\n\nAnother writer changed the object since Terraform last read it, so the agent refused "
            f"to {action} (resource_version is stale). Run `terraform plan` again to see the current state, then apply.",
        )
        return
    if isinstance(err, errors.OutcomeUnknown):
        diags.add_error(
            f"The outcome of {action} is unknown",
            f"{err.message}\n\nThe agent may or may not have applied it, so Terraform records nothing for it now. "
            "Apply again once an agent answers: the provider sends the same request id, so an object the agent "
            "kept is adopted (never created twice, no \"already exists\") and one it did not keep is written. "
            "To wait longer within one apply, raise the resource's `timeouts` (e.g. `timeouts { create = \"5m\" }`).",
        )
        return
    if isinstance(err, errors.Unavailable) and err.agent_answered:
        diags.add_error(
            "The egress agent could not complete the request",
            f"{err.message}\n\nCould not {action}; nothing was changed. The agent answered, but its cluster store "
            "is unavailable or busy: check `egressctl status` (store health), then apply again.",
        )
        return
    if isinstance(err, errors.Unavailable):
        where = f" at {endpoint}" if endpoint else ""
        diags.add_error(
            f"Cannot reach the egress agent{where}",
            f"{err.message}\n\nCould not {action}; nothing was changed. Check that egress-agent is running and "
            "that the provider's `endpoints` (or EGRESS_ENDPOINTS) list it, e.g. unix:///run/egress/agent.sock.",
        )
        return
    if isinstance(err, errors.PermissionDenied):
        diags.add_error(
            f"Not allowed to {action}",
            f"{err.message}\n\nThe agent decides what a caller may do from its client certificate (the provider's "
            "`cert_file`, or EGRESS_CERT_FILE) or, on a unix socket, from the user Terraform runs as. Applying needs "
            "a certificate with role admin; viewer is enough to plan. See docs/security.md.",
        )
        return
    if isinstance(err, errors.AlreadyExists):
        diags.add_error(
            f"{kind} {name!r} already exists",
            f"{err.message}\n\nIt was created outside this Terraform state. Import it with "
            f"`terraform import <address> {name}` (or an `import` block) instead of creating it.",
        )
        return
    if isinstance(err, errors.NotFound):
        diags.add_error(f"{kind} {name!r} not found", f"{err.message}\n\nCould not {action}.")
        return
    diags.add_error(f"Failed to {action}", err.message)


def add_resolved_outcome(diags: Diagnostics, record, *, action: str) -> None:
    """A warning when a write's outcome was unknown for a while and a retry settled it (calls.CallRecord)."""
    if record is not None and record.unknown_outcome and record.resolved:
        diags.add_warning(f"The outcome of {action} was unknown; resolved", record.resolved[0].upper() + record.resolved[1:] + ".")
