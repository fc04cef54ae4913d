"""The demo's desired-state repos (hld/, manifests/), an example fleet.yaml (fleet/), and `demo_workspace`, which
turns them into local bare repos for `make run` and `make demo`."""

__all__ = ["demo_workspace"]
