"""What operators use: the admin CLI, replay, health, hook setup and the dashboard."""

__all__ = [
    "cli",
    "dashboard",
    "dashboard_page",
    "health",
    "hook_setup",
    "replay",
]
