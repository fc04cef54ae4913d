"""The work the functions do: intake at the door, and the queue and timer workers behind it (bump, manifest
update, review, cluster feedback, promotion, waking Flux, the outbox)."""

__all__ = [
    "bump",
    "cluster_feedback",
    "flux_notify",
    "intake",
    "job_stores",
    "manifest_update",
    "outbox",
    "promoter",
    "review_job",
    "reviewer",
    "runners",
    "tenancy",
]
