"""The edges: Azure Storage tables and queues, git (the one command runner, cached working copies), the Azure
DevOps gateway, Flux receivers, and the pool that keeps blocking calls off the event loop."""

__all__ = [
    "azdo",
    "checkout_targets",
    "cluster_records",
    "deliveries",
    "etag",
    "fleet_source",
    "flux_receivers",
    "git_runner",
    "git_workspace",
    "highwater",
    "offload",
    "promotion_records",
    "pull_requests",
    "queue_batch",
    "review_records",
    "storage",
    "trace",
]
