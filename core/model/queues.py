"""The work queues' names: each work item type belongs to one (the adapters create them; poison copies add a suffix)."""

__all__ = ["CLUSTER_EVENTS", "FLUX_NOTIFY", "HLD_CHANGED", "IMAGE_PUSHED", "POISON_SUFFIX", "PR_REVIEW", "WORK_QUEUES"]

IMAGE_PUSHED = "image-pushed"
HLD_CHANGED = "hld-changed"
PR_REVIEW = "pr-review"
FLUX_NOTIFY = "flux-notify"
CLUSTER_EVENTS = "cluster-events"   # Flux events from the clusters (core.workers.cluster_feedback)
WORK_QUEUES = (IMAGE_PUSHED, HLD_CHANGED, PR_REVIEW, FLUX_NOTIFY, CLUSTER_EVENTS)
POISON_SUFFIX = "-poison"
