"""The edges: Azure Storage tables and queues, git working copies, the Azure DevOps gateway, Flux receivers,
and the pool that keeps blocking calls off the event loop."""

__all__ = [
    "azdo",
    "deliveries",
    "flux_receivers",
    "git_workspace",
    "highwater",
    "offload",
    "pull_requests",
    "queue_batch",
    "review_records",
    "storage",
    "trace",
]
