"""Errors raised by `EgressClient`, one class per gRPC status the agent uses.

Each carries the agent's message and, for INVALID_ARGUMENT, the violations
with their attribute paths, so the provider can turn them into Terraform
diagnostics that point at the right attribute.
"""

from __future__ import annotations

from egress_api.models import Violation


class ApiError(Exception):
    """Base class: `message` is the agent's text; `violations` may be empty."""

    def __init__(self, message: str, violations: list[Violation] | None = None):
        super().__init__(message)
        self.message = message
        self.violations = violations or []


class InvalidArgument(ApiError):
    """Validation failed (INVALID_ARGUMENT); see `violations`."""


class PermissionDenied(ApiError):
    """The caller's role may not call this method (PERMISSION_DENIED), or it has no identity the agent
    accepts (UNAUTHENTICATED). The message names the role and the method; nothing was changed."""


class NotFound(ApiError):
    """No such object (NOT_FOUND)."""


class AlreadyExists(ApiError):
    """Create of an existing name (ALREADY_EXISTS)."""


class Conflict(ApiError):
    """Stale resource_version: a concurrent writer won (ABORTED)."""


class FailedPrecondition(ApiError):
    """A referential rule forbids the write (FAILED_PRECONDITION); see `violations`."""


class ResourceExhausted(ApiError):
    """Over a limit of `egress_api.limits` (RESOURCE_EXHAUSTED): a message, list or cluster total; nothing written."""


class Unavailable(ApiError):
    """The agent, or its cluster store, cannot be reached (UNAVAILABLE / DEADLINE_EXCEEDED).

    `agent_answered` tells the two apart: True when the agent itself replied that its
    store is unavailable or busy (retry later), False when the agent could not be reached.
    """

    def __init__(self, message: str, agent_answered: bool = False):
        super().__init__(message)
        self.agent_answered = agent_answered


class OutcomeUnknown(Unavailable):
    """A write reached an agent but no answer came back, and no retry (same request id) settled it in time.

    The object may or may not have been written. Retrying the same write with the
    same request id is safe: the agent applies it at most once.
    """
