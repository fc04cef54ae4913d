"""Shapes of what arrives and what is queued: webhook payloads, typed work items, image references."""

__all__ = [
    "fleet",
    "images",
    "payloads",
    "workitems",
]
