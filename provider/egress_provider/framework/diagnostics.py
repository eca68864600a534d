"""Turn egress errors into Terraform diagnostics that point at the attribute.

Violations carry model paths such as ('egress', 0, 'pod_selector', 'match_labels').
Every collection in our schemas is a set, and Terraform cannot address a set
element by index, so a path is cut at its first index: the diagnostic then
points at the set (`egress`) and the message says which element is wrong.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from tf.utils import Diagnostics

from egress_api import errors
from egress_api.models import InvalidObject, Violation


def attribute_path(path: Sequence[str | int]) -> list[str]:
    """A Terraform attribute path for a model path: attribute names up to the first index."""
    out: list[str] = []
    for step in path:
        if _is_index(step):
            break
        out.append(str(step))
    return out


def _is_index(step) -> bool:
    return isinstance(step, int) or (isinstance(step, str) and step.isdigit())


def _label(path: Sequence[str | int]) -> str:
    """The attribute path as a user reads it, set indexes left out: egress.pod_selector.match_labels."""
    return ".".join(str(step) for step in path if not _is_index(step))


def add_violations(
    diags: Diagnostics, violations: Iterable[Violation], *, kind: str, name: str, warning: bool = False, note: str = ""
) -> None:
    """One diagnostic per violation: summary names the attribute, detail is the model's message."""
    for v in violations:
        label = _label(v.path) or kind
        summary = f"Invalid {label}" if not warning else (f"The agent would refuse {label}" if note else f"Check {label}")
        detail = v.message + (f"\n\n{note}" if note else "")
        path = attribute_path(v.path) or None
        (diags.add_warning if warning else diags.add_error)(summary, detail, path=path)


def add_invalid_object(diags: Diagnostics, err: InvalidObject) -> None:
    add_violations(diags, err.violations, kind=err.kind, name=err.name)


def add_api_error(diags: Diagnostics, err: errors.ApiError, *, action: str, kind: str, name: str, endpoint: str = "") -> None:
    """An agent error as an error diagnostic with an actionable summary.

    `action` reads like "create egress_gateway \"default\"".
    """
    if err.violations and isinstance(err, (errors.InvalidArgument, errors.FailedPrecondition)):
        note = f"The agent refused to {action}; nothing was changed."
        for v in err.violations:
            diags.add_error(f"Invalid {_label(v.path) or kind}", f"{v.message}\n\n{note}", path=attribute_path(v.path) or None)
        return
    if isinstance(err, errors.Conflict):
        diags.add_error(
            f"Conflict: {kind} {name!r} was changed by someone else",
            f"{err.message}\n\nAnother writer changed the object since Terraform last read it, so the agent refused "
            f"to {action} (resource_version is stale). Run `terraform plan` again to see the current state, then apply.",
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
            f"{err.message}\n\nCould not {action}. Check that egress-agent is running and that the provider's "
            "`endpoint` (or EGRESS_ENDPOINT) points at its socket, e.g. unix:///run/egress/agent.sock.",
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
