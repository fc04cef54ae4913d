"""Shapes of what arrives, what is queued and what is recorded: webhook payloads, typed work items, image
references, the deployment trace record."""

__all__ = [
    "fleet",
    "images",
    "payloads",
    "pull_request",
    "queues",
    "trace_record",
    "workitems",
]
