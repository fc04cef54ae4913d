"""One rooted error hierarchy (the httpx habit): every error the project raises is Retryable or Permanent.

- `Retryable`: the same work may succeed later (storage unavailable, git contention or network, Azure DevOps
  429/5xx, timeouts). Queue workers raise it; the host re-delivers after `visibilityTimeout` and poisons after
  `maxDequeueCount`.
- `Permanent`: the same work will fail the same way until someone changes something (a malformed work item, an
  `autopilot.yaml` error, a generation or edit error, refused credentials, a missing git or helm executable).
  Queue workers move the message to `<queue>-poison` at once with the reason; a replay after the fix processes it.

Adapters map third-party exceptions onto these at their boundary. Classes that are also input errors keep
`ValueError` as a second base so existing `except ValueError` callers still work.
"""
from __future__ import annotations

__all__ = ["AutopilotError", "Retryable", "Permanent", "is_permanent"]


class AutopilotError(Exception):
    """Root of every error this project raises on purpose."""


class Retryable(AutopilotError):
    """A retry later can help: let the queue re-deliver."""


class Permanent(AutopilotError):
    """A retry cannot help until something changes: poison at once, with this message as the reason."""


def is_permanent(exc: BaseException) -> bool:
    """True when no retry of the same work can succeed (only `Permanent` says so; anything unknown is retried)."""
    return isinstance(exc, Permanent)
