"""What both resources share: plan-time validation with the models, and agent calls as diagnostics."""

from __future__ import annotations

from typing import Any, Callable, Optional

from tf.utils import Diagnostics

from egress_api import errors, models
from egress_provider.framework.diagnostics import Locator, add_api_error, add_invalid_object
from egress_provider.framework.types import is_known
from egress_provider.framework.unknowns import is_unknown, known_prefix


def model_input(value: Any) -> Any:
    """Terraform values as model input: an unknown becomes `models.Pending` (with what is known of its
    beginning), and a null means "not set", so it is left out and the model applies its default."""
    if is_unknown(value):
        return models.Pending(known_prefix(value))
    if isinstance(value, dict):
        return {k: model_input(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [model_input(v) for v in value]
    return value


def validate_config(
    diags: Diagnostics, kind: str, data: dict[str, Any], at: Optional[Locator] = None
) -> Optional[models.BaseModel]:
    """Check what is known of a config with `models.parse`; report every violation at its attribute path.

    Unknown values are checked once known (a known prefix is checked now).
    Returns the model only when the whole config is known and valid.
    """
    try:
        model = models.parse(kind, model_input(data))
    except models.InvalidObject as err:
        add_invalid_object(diags, err, at)
        return None
    return model if is_known(data) else None


def call(
    diags: Diagnostics,
    fn: Callable,
    *args,
    action: str,
    kind: str,
    name: str,
    endpoint: str = "",
    at: Optional[Locator] = None,
    **kwargs,
):
    """Call the agent; on an agent error add a diagnostic (violations placed by `at`) and return None."""
    try:
        return fn(*args, **kwargs)
    except errors.ApiError as err:
        add_api_error(diags, err, action=action, kind=kind, name=name, endpoint=endpoint, at=at)
        return None
